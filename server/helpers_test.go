package server

import (
	"bufio"
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/internal/simtest"
	"github.com/vcomlink/vcomlink/policy"
	"github.com/vcomlink/vcomlink/transport"
)

// agent is a server with Unix listeners in front of a TPM service. Its
// client and socket are those of peer vm:guest; as returns the same agent
// seen by another peer.
type agent struct {
	sim    *simtest.TPM // nil unless the service runs on the simulator
	srv    *Server
	log    *logBuffer
	dir    string
	client *http.Client
	socket string
}

// newAgent serves svc with the server configuration that configure
// changes, if not nil, on a Unix listener for peer vm:guest. The server
// logs into a.log at info level.
func newAgent(t *testing.T, svc TPM, configure func(*Config)) *agent {
	t.Helper()
	logs := &logBuffer{}
	return newLoggedAgent(t, svc, logs, configure)
}

// newLoggedAgent is newAgent with the log buffer of the caller, which may
// also receive the TPM service's log.
func newLoggedAgent(t *testing.T, svc TPM, logs *logBuffer, configure func(*Config)) *agent {
	t.Helper()
	dir, err := os.MkdirTemp("", "vcomlink")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })

	cfg := Config{
		TPM:    svc,
		Policy: policy.NewDefault(),
		Logger: logs.logger(),
	}
	if configure != nil {
		configure(&cfg)
	}
	a := &agent{srv: New(cfg), log: logs, dir: dir}
	t.Cleanup(func() { a.srv.Shutdown(context.Background()) })
	a.socket = a.listen(t, "guest")
	a.client = unixClient(a.socket)
	return a
}

// listen adds a Unix listener for peer vm:NAME and returns its socket path.
func (a *agent) listen(t *testing.T, vm string) string {
	t.Helper()
	socket := filepath.Join(a.dir, vm+".sock")
	l, err := transport.Listen("unix://" + socket + "?vm=" + vm)
	if err != nil {
		t.Fatal(err)
	}
	go a.srv.Serve(l)
	return socket
}

// as returns a view of the agent for peer vm:NAME, with a listener of its
// own.
func (a *agent) as(t *testing.T, vm string) *agent {
	t.Helper()
	other := *a
	other.socket = a.listen(t, vm)
	other.client = unixClient(other.socket)
	return &other
}

func unixClient(socket string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		},
	}}
}

// mustServe checks that a getpub of the attestation key gets 200, as a
// well-behaved peer's request should while another peer misbehaves.
func (a *agent) mustServe(t *testing.T, when string) {
	t.Helper()
	r := a.postNoFatal(vcom.PathGetPub, &vcom.TpmRequestGetPub{Index: vcom.HandleAIK})
	if r.status != http.StatusOK {
		t.Errorf("%s: a well-behaved peer's getpub got status %d (%s); want 200", when, r.status, r.body)
	}
}

// dial opens a raw connection to the agent's listener.
func (a *agent) dial(t *testing.T) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", a.socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// rawRequest returns an HTTP/1.1 request for path with body, as bytes.
func rawRequest(path string, body []byte) []byte {
	var b bytes.Buffer
	b.WriteString("POST " + path + " HTTP/1.1\r\nHost: vcomlink\r\n")
	b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n")
	b.Write(body)
	return b.Bytes()
}

// readResponse reads one response from c, waiting at most a minute.
func readResponse(t *testing.T, c net.Conn, br *bufio.Reader) (*http.Response, []byte) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(time.Minute))
	rsp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	defer rsp.Body.Close()
	var body bytes.Buffer
	if _, err := body.ReadFrom(rsp.Body); err != nil {
		t.Fatalf("read response body: %v", err)
	}
	return rsp, body.Bytes()
}

// logBuffer collects log output for a test to inspect.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// logger returns a logger that writes text lines at info level and above
// into b.
func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the log lines that contain every one of parts.
func (b *logBuffer) lines(parts ...string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, line := range strings.Split(b.buf.String(), "\n") {
		all := line != ""
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			out = append(out, line)
		}
	}
	return out
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
