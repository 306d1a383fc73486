package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/vcomlink/vcomlink/client"
	"github.com/vcomlink/vcomlink/internal/swtpmtest"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/verify"
)

// TestMain runs the test binary as vcomlink itself when VCOMLINK_RUN_MAIN
// is set, so that tests can start the agent as a separate process and
// signal it.
func TestMain(m *testing.M) {
	if os.Getenv("VCOMLINK_RUN_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// agentProcess is vcomlink serve running in a child process.
type agentProcess struct {
	cmd    *exec.Cmd
	socket string
	log    *syncBuffer
	done   chan struct{} // closed when the process has exited
	err    error         // the result of Wait, once done is closed
}

// syncBuffer is a bytes.Buffer that the child's output and the test may use
// at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "vcl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// startServe starts vcomlink serve with args and a Unix listener, and waits
// until the listener accepts connections.
func startServe(t *testing.T, args ...string) *agentProcess {
	t.Helper()
	socket := filepath.Join(shortTempDir(t), "v.sock")
	args = append([]string{"serve", "--listen", "unix://" + socket + "?vm=guest"}, args...)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = agentEnv(t)
	p := &agentProcess{cmd: cmd, socket: socket, log: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout = p.log
	cmd.Stderr = p.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
	})

	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := net.Dial("unix", socket)
		if err == nil {
			c.Close()
			return p
		}
		select {
		case <-p.done:
			t.Fatalf("vcomlink serve exited before listening: %v\n%s", p.err, p.log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("vcomlink serve did not listen within a minute\n%s", p.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// agentEnv is the environment of an agent that a test starts: its
// temporary files, such as the simulator's CA, go to a directory that the
// test removes, even when the test kills the agent.
func agentEnv(t *testing.T) []string {
	return append(os.Environ(), "VCOMLINK_RUN_MAIN=1", "TMPDIR="+shortTempDir(t))
}

// stop sends SIGTERM and returns the exit code.
func (p *agentProcess) stop(t *testing.T) int {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("vcomlink serve did not exit within 30s of SIGTERM\n%s", p.log)
	}
	return p.cmd.ProcessState.ExitCode()
}

// guest is a client written only from the wire contract: a POST of a
// protobuf body over HTTP/1.1 on the agent's Unix socket.
type guest struct {
	http *http.Client
}

func newGuest(socket string) *guest {
	return &guest{http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		},
		MaxIdleConnsPerHost: 16,
	}}}
}

// call posts req to path and decodes a 200 response into rsp. It returns
// the status and, for other statuses, the message.
func (g *guest) call(path string, req, rsp proto.Message) (int, string, error) {
	body, err := proto.Marshal(req)
	if err != nil {
		return 0, "", err
	}
	r, err := g.http.Post("http://host"+path, "application/x-protobuf", bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	defer r.Body.Close()
	data, err := io.ReadAll(r.Body)
	if err != nil {
		return 0, "", err
	}
	if r.StatusCode != http.StatusOK {
		return r.StatusCode, strings.TrimSpace(string(data)), nil
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-proto-binary" {
		return r.StatusCode, "", fmt.Errorf("Content-Type %q", ct)
	}
	return r.StatusCode, "", proto.Unmarshal(data, rsp)
}

// must calls path and fails the test unless the status is 200.
func (g *guest) must(t *testing.T, path string, req, rsp proto.Message) {
	t.Helper()
	status, msg, err := g.call(path, req, rsp)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if status != http.StatusOK {
		t.Fatalf("%s: status %d: %s", path, status, msg)
	}
}

// checkSixOperations runs every operation against the agent on socket and
// verifies each result as a remote verifier would, the EK certificate
// against ca.
func checkSixOperations(t *testing.T, socket string, ca *x509.Certificate) {
	t.Helper()
	g := newGuest(socket)

	var aik vcom.TpmResponseGetPub
	g.must(t, vcom.PathGetPub, &vcom.TpmRequestGetPub{Index: vcom.HandleAIK}, &aik)
	aikPub, err := verify.ParsePublic(aik.Public)
	if err != nil {
		t.Fatal(err)
	}

	message := bytes.Repeat([]byte("long message "), 200) // over one TPM input buffer
	var sig vcom.TpmResponseSign
	g.must(t, vcom.PathSign, &vcom.TpmRequestSign{Index: vcom.HandleAIK, Data: message}, &sig)
	if err := verify.VerifySignature(aikPub, message, &sig); err != nil {
		t.Errorf("AIK signature: %v", err)
	}

	var ecdh vcom.TpmResponseGetPub
	g.must(t, vcom.PathGetPub, &vcom.TpmRequestGetPub{Index: vcom.HandleECDHKey}, &ecdh)
	ecdhPub, err := verify.ParsePublic(ecdh.Public)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("digest"))
	var ecdhSig vcom.TpmResponseSign
	g.must(t, vcom.PathSign, &vcom.TpmRequestSign{Index: vcom.HandleECDHKey, Data: digest[:]}, &ecdhSig)
	if err := verify.VerifySignature(ecdhPub, digest[:], &ecdhSig); err != nil {
		t.Errorf("ECDH key signature: %v", err)
	}

	var nv vcom.TpmResponseReadNv
	g.must(t, vcom.PathReadNV, &vcom.TpmRequestReadNv{Index: vcom.HandleEKCert}, &nv)
	if len(nv.Data) <= 1024 {
		t.Errorf("EK certificate is %d bytes; want more than one 1024-byte NV buffer", len(nv.Data))
	}

	var params vcom.TpmResponseActivateCredParams
	g.must(t, vcom.PathActivateCredParams, &vcom.TpmRequestActivateCredParams{Index: vcom.HandleAIK}, &params)
	ekPub, err := verify.ParsePublic(params.Ek)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := client.ParseCertificate(nv.Data)
	if err != nil {
		t.Fatalf("EK certificate: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if err := verify.VerifyEKCert(ekPub, cert, roots); err != nil {
		t.Errorf("EK certificate: %v", err)
	}
	tpm, err := verify.ParseTPMIdentity(cert)
	if err != nil {
		t.Fatalf("EK certificate: %v", err)
	}
	if !strings.HasPrefix(tpm.Manufacturer, "id:") {
		t.Errorf("EK certificate names the TPM manufacturer %q, want id: and hex digits", tpm.Manufacturer)
	}
	if tpm.Model == "" {
		t.Error("EK certificate names no TPM model")
	}
	if !strings.HasPrefix(tpm.Version, "id:") {
		t.Errorf("EK certificate names the TPM version %q, want id: and hex digits", tpm.Version)
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	cred, encSecret, err := verify.MakeCredential(rand.Reader, ekPub, params.AikName, secret)
	if err != nil {
		t.Fatal(err)
	}
	var activated vcom.TpmResponseActivatedCred
	g.must(t, vcom.PathActivateCredential, &vcom.TpmRequestGeneratedCred{Cred: cred, Secret: encSecret, AikIndex: vcom.HandleAIK}, &activated)
	if !bytes.Equal(activated.Secret, secret) {
		t.Errorf("activatecred recovered %x; want %x", activated.Secret, secret)
	}

	for _, nonce := range [][]byte{nil, []byte("verifier nonce")} {
		var certified vcom.TpmResponseCertify
		g.must(t, vcom.PathCertifyKey, &vcom.TpmRequestCertify{Index: vcom.HandleECDHKey, QualifyingData: nonce}, &certified)
		if _, err := verify.VerifyCertify(aikPub, nonce, &certified); err != nil {
			t.Errorf("certification with nonce %q: %v", nonce, err)
		}
	}

	refusals := []struct {
		path   string
		req    proto.Message
		status int
	}{
		{vcom.PathReadNV, &vcom.TpmRequestReadNv{Index: vcom.HandleDeviceKeyCredential}, 403},
		{vcom.PathReadNV, &vcom.TpmRequestReadNv{Index: vcom.HandleDiskKey1}, 403},
		{vcom.PathSign, &vcom.TpmRequestSign{Index: vcom.HandleQuoteKey, Data: digest[:]}, 403},
		{vcom.PathGetPub, &vcom.TpmRequestGetPub{Index: 0x40000001}, 400},
		{vcom.PathGetPub, &vcom.TpmRequestGetPub{Index: 0x81000099}, 404},
		{vcom.PathSign, &vcom.TpmRequestSign{Index: vcom.HandleECDHKey, Data: []byte("short")}, 400},
	}
	for _, r := range refusals {
		status, msg, err := g.call(r.path, r.req, nil)
		if err != nil {
			t.Fatal(err)
		}
		if status != r.status {
			t.Errorf("%s %v: status %d (%s); want %d", r.path, r.req, status, msg, r.status)
		}
	}
}

// checkConcurrentGuests has sixteen guests call at once and expects no
// errors.
func checkConcurrentGuests(t *testing.T, socket string) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := newGuest(socket)
			for j := range 10 {
				var rsp vcom.TpmResponseSign
				status, msg, err := g.call(vcom.PathSign, &vcom.TpmRequestSign{Index: vcom.HandleAIK, Data: []byte(fmt.Sprintf("guest %d call %d", i, j))}, &rsp)
				if err == nil && status != http.StatusOK {
					err = fmt.Errorf("status %d: %s", status, msg)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestServeSimulator(t *testing.T) {
	p := startServe(t, "--tpm", "simulator")
	checkSixOperations(t, p.socket, simulatorCA(t, p.log.String()))
	checkConcurrentGuests(t, p.socket)
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit status %d after SIGTERM; want 0\n%s", code, p.log)
	}
	if !strings.Contains(p.log.String(), "vcomlink stopped") {
		t.Errorf("log does not record the stop:\n%s", p.log)
	}
}

// simulatorCA reads the CA certificate whose path the agent logged when it
// started the simulator.
func simulatorCA(t *testing.T, log string) *x509.Certificate {
	t.Helper()
	_, after, ok := strings.Cut(log, "ek_cert_ca=")
	if !ok {
		t.Fatalf("the log names no CA file:\n%s", log)
	}
	path := strings.Fields(after)[0]
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(path)
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s holds no PEM block", path)
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestServeSWTPM(t *testing.T) {
	sw := swtpmtest.Start(t)
	p := startServe(t, "--tpm", "unix://"+sw.SocketPath)
	checkSixOperations(t, p.socket, sw.CA)
	checkConcurrentGuests(t, p.socket)
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit status %d after SIGTERM; want 0\n%s", code, p.log)
	}
}

func TestServeWithoutTPMDevice(t *testing.T) {
	var stderr bytes.Buffer
	code := run([]string{"serve", "--tpm", "/dev/no-such-tpm", "--listen", "unix://" + filepath.Join(shortTempDir(t), "v.sock")}, io.Discard, &stderr)
	if code != exitFailure {
		t.Fatalf("exit status %d; want %d", code, exitFailure)
	}
	for _, want := range []string{"/dev/no-such-tpm", "--tpm simulator"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("error %q does not mention %q", stderr.String(), want)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	cases := [][]string{
		nil,
		{"no-such-command"},
		{"serve", "--listen", "tcp://0.0.0.0:80"},
		{"serve", "--tpm", "relative/path"},
		{"serve", "--ek-handle", "nope"},
		{"serve", "--ek-handle", "81000001"},
		{"serve", "--auth", "81000005=/dev/null"},
		{"serve", "--auth", "0x81000005"},
		{"serve", "--log-level", "loud"},
		{"serve", "extra"},
	}
	for _, args := range cases {
		var stderr bytes.Buffer
		if code := run(args, io.Discard, &stderr); code != exitUsage {
			t.Errorf("vcomlink %q: exit status %d; want %d", args, code, exitUsage)
		}
		if stderr.Len() == 0 {
			t.Errorf("vcomlink %q: no message on standard error", args)
		}
	}
}

func TestDemo(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"demo"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("demo exit status %d\n%s\n%s", code, stdout.String(), stderr.String())
	}
	out := stdout.String()
	if !strings.Contains(out, "All steps verified.") {
		t.Errorf("demo output lacks the final verdict:\n%s", out)
	}
	if !strings.Contains(out, `to the TPM of manufacturer id:`) {
		t.Errorf("demo output does not name the TPM of the EK certificate:\n%s", out)
	}
	if strings.Contains(out, `certificate ""`) {
		t.Errorf("demo output prints the EK certificate's empty subject:\n%s", out)
	}
	scanner := bufio.NewScanner(strings.NewReader(out))
	steps := 0
	for scanner.Scan() {
		if strings.HasPrefix(strings.TrimSpace(scanner.Text()), "verified") {
			steps++
		}
	}
	if steps != 5 {
		t.Errorf("demo printed %d verified results; want 5:\n%s", steps, out)
	}
}

func TestVersion(t *testing.T) {
	var stdout bytes.Buffer
	if code := run([]string{"version"}, &stdout, io.Discard); code != exitOK {
		t.Fatalf("exit status %d", code)
	}
	if !strings.HasPrefix(stdout.String(), "vcomlink ") {
		t.Errorf("version output %q", stdout.String())
	}
}
