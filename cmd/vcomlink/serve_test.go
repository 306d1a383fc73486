package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/internal/swtpmtest"
)

// adminGet fetches path from the admin endpoints on the Unix socket.
func adminGet(t *testing.T, socket, path string) (int, string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		},
	}}
	rsp, err := c.Get("http://admin" + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer rsp.Body.Close()
	body, _ := io.ReadAll(rsp.Body)
	return rsp.StatusCode, string(body)
}

func TestServeAdminEndpoints(t *testing.T) {
	adminSocket := filepath.Join(shortTempDir(t), "admin.sock")
	p := startServe(t, "--tpm", "simulator", "--admin", "unix://"+adminSocket)
	simulatorCA(t, p.log.String())
	g := newGuest(p.socket)
	var rsp vcom.TpmResponseGetPub
	g.must(t, vcom.PathGetPub, &vcom.TpmRequestGetPub{Index: vcom.HandleAIK}, &rsp)
	g.call(vcom.PathReadNV, &vcom.TpmRequestReadNv{Index: vcom.HandleDiskKey1}, nil)

	if code, body := adminGet(t, adminSocket, "/healthz"); code != 200 {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body := adminGet(t, adminSocket, "/readyz"); code != 200 {
		t.Errorf("/readyz = %d %q", code, body)
	}
	code, body := adminGet(t, adminSocket, "/metrics")
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		`vcomlink_requests_total{op="getpub",status="200"} 1`,
		`vcomlink_requests_total{op="readnv",status="403"} 1`,
		`vcomlink_refusals_total{reason="policy"} 1`,
		`vcomlink_tpm_responses_total{command="ReadPublic",rc="0x000"}`,
		`vcomlink_tpm_command_duration_seconds_bucket{command="ReadPublic"`,
		`vcomlink_request_duration_seconds_bucket{op="getpub"`,
		`vcomlink_open_connections`,
		`vcomlink_tpm_up 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit status %d after SIGTERM; want 0\n%s", code, p.log)
	}
	if _, err := os.Stat(adminSocket); err == nil {
		t.Errorf("the admin socket is left after the agent stopped")
	}
}

func TestServeConfigFile(t *testing.T) {
	dir := shortTempDir(t)
	config := filepath.Join(dir, "config.yaml")
	socket := filepath.Join(dir, "from-config.sock")
	writeTestFile(t, config, `# vcomlink serve settings
tpm: simulator
listen:
  - unix://`+socket+`?vm=configured
rate: 0.1
burst: 1
log-level: debug
`)
	// startServe adds a --listen of its own, which takes precedence over
	// the file's; --rate on the command line does too.
	p := startServe(t, "--config", config, "--rate", "0")
	simulatorCA(t, p.log.String())
	if _, err := os.Stat(socket); err == nil {
		t.Errorf("the file's listen was used although the command line set --listen")
	}
	g := newGuest(p.socket)
	for i := range 3 {
		var rsp vcom.TpmResponseGetPub
		status, msg, err := g.call(vcom.PathGetPub, &vcom.TpmRequestGetPub{Index: vcom.HandleAIK}, &rsp)
		if err != nil || status != http.StatusOK {
			t.Fatalf("request %d: status %d (%s), %v; want 200 because --rate 0 overrides the file", i, status, msg, err)
		}
	}
	waitForLog(t, p, "level=DEBUG", 1)
}

func writeTestFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestServeConfigMistakes(t *testing.T) {
	cases := []struct {
		content string
		want    string
	}{
		{"tpm: simulator\nlisen: unix:///tmp/x\n", `:2: unknown setting "lisen"`},
		{"tpm: [a, b]\n", ":1: tpm: takes one value, not a list"},
		{"rate: fast\n", `:1: invalid rate "fast"`},
		{"- tpm\n", ":1: the file must be a mapping"},
		{"tpm: simulator\ntpm: /dev/tpm0\n", `:2: "tpm" is set again; it was set on line 1`},
		{"config: other.yaml\n", `:1: unknown setting "config"`},
		{"listen: []\n", ":1: listen: the list is empty"},
		{"tpm: {a: b}\n", ":1: tpm: must be a value or a list of values"},
		{"ek-handle: 81000001\n", "read as decimal"},
		{"command-timeout: 5\n", `:1: invalid command-timeout "5": a duration needs a unit, such as 10s or 1m`},
		{"max-conns: many\n", `:1: invalid max-conns "many": it must be a whole number`},
		{"log-level: loud\n", `:1: invalid log-level "loud": use info, debug, warn or error`},
		{"log-format: xml\n", `:1: invalid log-format "xml": use text or json`},
		{"auth: [\"0x81000005=/nonexistent\"]\n", `:1: invalid auth "0x81000005=/nonexistent": read the auth value: open /nonexistent: no such file or directory`},
		{"tpm: [unclosed\n", "config.yaml"},
	}
	for _, c := range cases {
		path := filepath.Join(t.TempDir(), "config.yaml")
		writeTestFile(t, path, c.content)
		var stderr bytes.Buffer
		code := run([]string{"serve", "--config", path}, io.Discard, &stderr)
		if code != exitUsage {
			t.Errorf("config %q: exit status %d; want %d", c.content, code, exitUsage)
		}
		if !strings.Contains(stderr.String(), c.want) {
			t.Errorf("config %q: error %q does not contain %q", c.content, stderr.String(), c.want)
		}
	}
}

func TestServeRejectsWrongHostKeys(t *testing.T) {
	var stderr bytes.Buffer
	code := run([]string{"serve", "--tpm", "simulator", "--aik-handle", "0x81000005", "--listen", "unix://" + filepath.Join(shortTempDir(t), "v.sock")}, io.Discard, &stderr)
	if code != exitFailure {
		t.Fatalf("exit status %d; want %d\n%s", code, exitFailure, stderr.String())
	}
	if !strings.Contains(stderr.String(), "not a restricted signing key") {
		t.Errorf("log %q does not say why the attestation key is wrong", stderr.String())
	}
	if strings.Contains(stderr.String(), "vcomlink serving") {
		t.Errorf("the agent served with an unrestricted attestation key")
	}
}

func TestServeUsageErrorsOnStandardError(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--admin", "vsock://:2001"}, "guests must never reach the admin endpoints"},
		{[]string{"serve", "--admin", "tcp://0.0.0.0:9100"}, "not a loopback address; the admin endpoints are for the host only, so use unix:///PATH or tcp://127.0.0.1:PORT, and reach them from another host through a proxy on this host"},
		{[]string{"serve", "--no-such-flag"}, "--no-such-flag"},
		{[]string{"serve", "--ek-handle", "0x01c00002"}, "not a persistent key handle"},
		{[]string{"serve", "--listen", "unix:///tmp/a.sock?vm=x", "--listen", "unix:///tmp/b.sock?vm=x"}, `both name VM "x"`},
		{[]string{"serve", "--listen", "unix:///tmp/a.sock?vm=x", "--listen", "unix:///tmp/a.sock?vm=y"}, "name the same address"},
		{[]string{"serve", "--listen", "unix:///tmp/a.sock?vm=x", "--admin", "unix:///tmp/a.sock"}, "name the same socket"},
		{[]string{"serve", "--listen", "tcp://127.0.0.1:9000", "--admin", "tcp://127.0.0.1:9000"}, "name the same socket"},
		{[]string{"serve", "--listen", "unix:///tmp/a.sock?vm=a%20b"}, "may contain only letters"},
	}
	for _, c := range cases {
		var stderr bytes.Buffer
		if code := run(c.args, io.Discard, &stderr); code != exitUsage {
			t.Errorf("%q: exit status %d; want %d", c.args, code, exitUsage)
		}
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		if len(lines) != 1 || !strings.Contains(lines[0], c.want) {
			t.Errorf("%q: stderr %q; want one line containing %q", c.args, stderr.String(), c.want)
		}
	}
}

func TestServeHelpOnStandardOutput(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"serve", "--help"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit status %d", code)
	}
	for _, flag := range []string{"--config", "--listen", "--tpm", "--admin", "--policy", "--rate", "--shutdown-grace"} {
		if !strings.Contains(stdout.String(), "  "+flag+" ") {
			t.Errorf("serve --help lacks %s", flag)
		}
	}
	if stderr.Len() != 0 {
		t.Errorf("serve --help wrote to standard error: %q", stderr.String())
	}
}

// TestServeStopsDuringStartUp signals the agent while it may still be
// provisioning the simulator. It must exit 0 and remove what it made.
func TestServeStopsDuringStartUp(t *testing.T) {
	socket := filepath.Join(shortTempDir(t), "v.sock")
	cmd, log := startServeProcess(t, "serve", "--tpm", "simulator", "--listen", "unix://"+socket)
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(log.String(), "vcomlink starting") {
		if time.Now().After(deadline) {
			t.Fatalf("no start line within a minute:\n%s", log)
		}
		time.Sleep(time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM during start-up: %v\n%s", err, log)
	}
	out := log.String()
	if !strings.Contains(out, "stopping during start-up") && !strings.Contains(out, "vcomlink stopped") {
		t.Errorf("the log does not record the stop:\n%s", out)
	}
	if _, after, ok := strings.Cut(out, "ek_cert_ca="); ok {
		if _, err := os.Stat(strings.Fields(after)[0]); err == nil {
			t.Errorf("the simulator's CA file is left after the agent stopped")
		}
	}
	if _, err := os.Stat(socket); err == nil {
		t.Errorf("the listener's socket is left after the agent stopped")
	}
}

// startServeProcess starts the test binary as vcomlink with args, with its
// output in the returned buffer, and kills it at the end of the test if it
// still runs.
func startServeProcess(t *testing.T, args ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = agentEnv(t)
	log := &syncBuffer{}
	cmd.Stdout = log
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	return cmd, log
}

func TestJSONLogDurations(t *testing.T) {
	var out bytes.Buffer
	log, err := newLogger(&out, "info", "json")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("shutting down", "grace", 1500*time.Millisecond)
	if !strings.Contains(out.String(), `"grace":"1.5s"`) {
		t.Errorf("JSON log %q does not write the duration as text", out.String())
	}
}

// TestServeShutdownCutsOffHungTPM stops the agent while its TPM does not
// respond and a request waits for it. The command timeout is longer than
// stop waits, so only the cut-off at the end of the grace period lets the
// agent exit in time.
func TestServeShutdownCutsOffHungTPM(t *testing.T) {
	sw := swtpmtest.Start(t)
	adminSocket := filepath.Join(shortTempDir(t), "admin.sock")
	p := startServe(t, "--tpm", "unix://"+sw.SocketPath, "--shutdown-grace", "1s", "--command-timeout", "5m", "--admin", "unix://"+adminSocket)
	g := newGuest(p.socket)
	g.must(t, vcom.PathGetPub, &vcom.TpmRequestGetPub{Index: vcom.HandleAIK}, &vcom.TpmResponseGetPub{})

	if err := sw.Pause(); err != nil {
		t.Fatal(err)
	}
	defer sw.Resume()
	answered := make(chan int, 2)
	for range 2 {
		go func() {
			status, _, _ := g.call(vcom.PathSign, &vcom.TpmRequestSign{Index: vcom.HandleECDHKey, Data: make([]byte, 32)}, &vcom.TpmResponseSign{})
			answered <- status
		}()
	}
	// One request waits for the TPM and the other in the queue.
	deadline := time.Now().Add(time.Minute)
	for {
		_, metrics := adminGet(t, adminSocket, "/metrics")
		if strings.Contains(metrics, `vcomlink_queue_depth{peer="vm:guest"} 1`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no request queued behind the hung TPM within a minute:\n%s", metrics)
		}
		time.Sleep(10 * time.Millisecond)
	}

	if code := p.stop(t); code != 0 {
		t.Errorf("exit status %d after SIGTERM with a hung TPM; want 0\n%s", code, p.log)
	}
	if !strings.Contains(p.log.String(), "requests still in flight at the end of the grace period are cut off") {
		t.Errorf("the log does not say that requests were cut off:\n%s", p.log)
	}
	if strings.Contains(p.log.String(), "lost the connection to the TPM") {
		t.Errorf("the cut-off is logged as a lost TPM connection:\n%s", p.log)
	}
	for range 2 {
		if status := <-answered; status == http.StatusOK {
			t.Errorf("a request to the hung TPM got 200")
		}
	}
}
