package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/policy"
)

func writePolicy(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestServePolicyMistakes(t *testing.T) {
	cases := []struct {
		name string
		text string
		want string // after the file name
	}{
		{"unknown key", "default: []\npeer: {}\n", `:2: unknown key "peer"`},
		{"unknown operation", "default:\n  - ops: [getpub, quote]\n    handles: [0x81000003]\n", `:2: unknown operation "quote"`},
		{"bad handle", "default:\n  - ops: all\n    handles: [0x8100000x]\n", `:3: in handles: invalid handle "0x8100000x"`},
		{"bad peer", "peers:\n  web: []\n", `:2: "web" is not a peer identity`},
		{"empty", "", `: the access policy is empty`},
	}
	for _, c := range cases {
		path := filepath.Join(t.TempDir(), "policy.yaml")
		writePolicy(t, path, c.text)
		var stderr bytes.Buffer
		// The TPM device does not exist: the policy must be checked first.
		code := run([]string{"serve", "--policy", path, "--tpm", "/dev/no-such-tpm", "--listen", "unix://" + filepath.Join(shortTempDir(t), "v.sock")}, io.Discard, &stderr)
		if code != exitUsage {
			t.Errorf("%s: exit status %d; want %d", c.name, code, exitUsage)
		}
		if want := path + c.want; !strings.Contains(stderr.String(), want) {
			t.Errorf("%s: error %q does not contain %q", c.name, stderr.String(), want)
		}
		if n := strings.Count(strings.TrimSpace(stderr.String()), "\n"); n != 0 {
			t.Errorf("%s: error %q is not one line", c.name, stderr.String())
		}
	}

	var stderr bytes.Buffer
	code := run([]string{"serve", "--policy", filepath.Join(t.TempDir(), "missing.yaml")}, io.Discard, &stderr)
	if code != exitUsage || !strings.Contains(stderr.String(), "missing.yaml") {
		t.Errorf("missing policy file: exit status %d, error %q; want %d and the file's name", code, stderr.String(), exitUsage)
	}
}

func TestServeLimitFlagErrors(t *testing.T) {
	cases := [][]string{
		{"--header-timeout", "0s"},
		{"--body-timeout", "-1s"},
		{"--write-timeout", "0s"},
		{"--idle-timeout", "0s"},
		{"--request-timeout", "-5s"},
		{"--max-header-bytes", "0"},
		{"--max-conns-per-peer", "-1"},
		{"--max-conns", "-1"},
		{"--rate", "-0.5"},
		{"--burst", "0"},
		{"--rate", "fast"},
	}
	for _, args := range cases {
		var stderr bytes.Buffer
		code := run(append([]string{"serve"}, args...), io.Discard, &stderr)
		if code != exitUsage {
			t.Errorf("serve %q: exit status %d; want %d", args, code, exitUsage)
		}
		if !strings.Contains(stderr.String(), args[0]) && !strings.Contains(stderr.String(), strings.TrimPrefix(args[0], "-")) {
			t.Errorf("serve %q: error %q does not name the flag", args, stderr.String())
		}
	}
}

// policyGuest is a guest that keeps one connection to the agent and
// reports whether each request reused it.
type policyGuest struct {
	g      *guest
	reused bool
}

func newPolicyGuest(socket string) *policyGuest {
	g := newGuest(socket)
	g.http.Transport.(*http.Transport).MaxConnsPerHost = 1
	return &policyGuest{g: g}
}

// call posts req to path on the guest's connection and returns the status
// and the body.
func (p *policyGuest) call(t *testing.T, path string, req proto.Message) (int, string) {
	t.Helper()
	body, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { p.reused = info.Reused }}
	ctx := httptrace.WithClientTrace(context.Background(), trace)
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://host"+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	rsp, err := p.g.http.Do(r)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer rsp.Body.Close()
	data, err := io.ReadAll(rsp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return rsp.StatusCode, string(data)
}

// waitForLog waits until the agent's log has n lines that contain s.
func waitForLog(t *testing.T, p *agentProcess, s string, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for strings.Count(p.log.String(), s) < n {
		if time.Now().After(deadline) {
			t.Fatalf("the log has no %d lines with %q after a minute:\n%s", n, s, p.log)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestServePolicyReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writePolicy(t, path, `
peers:
  "vm:guest":
    - ops: [getpub]
      handles: [0x81000003]
`)
	p := startServe(t, "--tpm", "simulator", "--policy", path)
	simulatorCA(t, p.log.String()) // removes the CA file the agent wrote
	waitForLog(t, p, "policy="+path, 1)
	g := newPolicyGuest(p.socket)
	readNV := &vcom.TpmRequestReadNv{Index: vcom.HandleEKCert}

	if status, msg := g.call(t, vcom.PathGetPub, &vcom.TpmRequestGetPub{Index: vcom.HandleAIK}); status != http.StatusOK {
		t.Fatalf("getpub granted by the policy: status %d (%s)", status, msg)
	}
	status, msg := g.call(t, vcom.PathReadNV, readNV)
	if status != http.StatusForbidden || !strings.Contains(msg, "grants no readnv") {
		t.Fatalf("readnv not granted: status %d (%s); want 403", status, msg)
	}
	waitForLog(t, p, `msg="request refused" peer=vm:guest op=readnv handle=0x01c00002 status=403`, 1)

	// A reload grants readnv, on the same connection.
	writePolicy(t, path, `
peers:
  "vm:guest":
    - ops: [getpub]
      handles: [0x81000003]
    - ops: [readnv]
      handles: [0x01C00002]
`)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitForLog(t, p, "access policy reloaded", 1)
	if status, msg := g.call(t, vcom.PathReadNV, readNV); status != http.StatusOK {
		t.Fatalf("readnv after the reload granted it: status %d (%s)", status, msg)
	}
	if !g.reused {
		t.Errorf("the request after the reload used a new connection; the reload must keep connections")
	}

	// A file with a mistake keeps the policy in force.
	writePolicy(t, path, "peers:\n  \"vm:guest\":\n    - ops: [readnv]\n      handle: [0x01C00002]\n")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitForLog(t, p, "reloading the access policy failed", 1)
	if !strings.Contains(p.log.String(), path+`:4: unknown key \"handle\"`) {
		t.Errorf("the log does not name the line of the mistake:\n%s", p.log)
	}
	if status, msg := g.call(t, vcom.PathReadNV, readNV); status != http.StatusOK {
		t.Fatalf("readnv after a rejected reload: status %d (%s); want the previous policy's 200", status, msg)
	}
	if status, msg := g.call(t, vcom.PathGetPub, &vcom.TpmRequestGetPub{Index: vcom.HandleAIK}); status != http.StatusOK {
		t.Fatalf("getpub after a rejected reload: status %d (%s)", status, msg)
	}
	if !g.reused {
		t.Errorf("the request after the rejected reload used a new connection")
	}
	if strings.Contains(p.log.String(), "leaves out handles") {
		t.Errorf("a policy that keeps the built-in lists was warned about:\n%s", p.log)
	}

	// A reload that empties the never list is logged with the handles it
	// exposes.
	writePolicy(t, path, "never: []\ndefault: []\n")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitForLog(t, p, "access policy reloaded", 2)
	waitForLog(t, p, `level=WARN msg="the access policy leaves out handles of the built-in never or read_public_only lists; guests granted them may use them" file=`+path+` handles="0x01600000 0x01700000 0x01800000 0x01900000"`, 1)
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit status %d after SIGTERM; want 0\n%s", code, p.log)
	}
}

func TestServeLimitFlagsApply(t *testing.T) {
	p := startServe(t, "--tpm", "simulator", "--rate", "0.1", "--burst", "2")
	simulatorCA(t, p.log.String())
	g := newPolicyGuest(p.socket)
	getPub := &vcom.TpmRequestGetPub{Index: vcom.HandleAIK}
	for i := range 2 {
		if status, msg := g.call(t, vcom.PathGetPub, getPub); status != http.StatusOK {
			t.Fatalf("request %d of the burst: status %d (%s)", i+1, status, msg)
		}
	}
	status, msg := g.call(t, vcom.PathGetPub, getPub)
	if status != http.StatusTooManyRequests || !strings.Contains(msg, "more than 0.1 requests per second") {
		t.Fatalf("request over --rate: status %d (%s); want 429", status, msg)
	}
}

func TestVMMismatches(t *testing.T) {
	example, err := policy.LoadFile("../../examples/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	listens := []string{"unix:///run/vcomlink/wbe.sock?vm=wbe", "unix:///run/vcomlink/sandbox.sock?vm=sandbox", "unix:///run/vcomlink/x.sock", "vsock://:2000"}
	unnamed, unmatched := vmMismatches(example, listens)
	if !slices.Equal(unnamed, []string{"vm:wbe"}) {
		t.Errorf("unnamed = %q; want the misspelt vm:wbe", unnamed)
	}
	if !slices.Contains(unmatched, "vm:web") || slices.Contains(unmatched, "vm:sandbox") {
		t.Errorf("unmatched = %q; want vm:web, which no listener serves, and not vm:sandbox", unmatched)
	}

	if unnamed, unmatched := vmMismatches(policy.NewDefault(), listens); unnamed != nil || unmatched != nil {
		t.Errorf("the built-in policy: %q, %q; want nothing to compare", unnamed, unmatched)
	}
	noVMs, err := policy.Parse([]byte("default: []\npeers:\n  \"cid:5\": []\n"))
	if err != nil {
		t.Fatal(err)
	}
	if unnamed, unmatched := vmMismatches(noVMs, listens); unnamed != nil || unmatched != nil {
		t.Errorf("a policy without vm: entries: %q, %q; want nothing to compare", unnamed, unmatched)
	}
}

func TestServeWarnsOfMisspeltVM(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writePolicy(t, path, "default: []\npeers:\n  \"vm:gust\": []\n")
	p := startServe(t, "--tpm", "simulator", "--policy", path)
	waitForLog(t, p, "vcomlink serving", 1)
	waitForLog(t, p, `msg="the access policy has no entry for these listeners' VMs, so its default entry applies to them; check the spelling of the names" vms=vm:guest`, 1)
	waitForLog(t, p, `msg="the access policy has entries for VMs that no listener serves; check the spelling of the names" vms=vm:gust`, 1)
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit status %d after SIGTERM; want 0\n%s", code, p.log)
	}
}
