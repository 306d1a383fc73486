package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/vcomlink/vcomlink/internal/simtest"
	"github.com/vcomlink/vcomlink/policy"
	"github.com/vcomlink/vcomlink/provision"
	"github.com/vcomlink/vcomlink/server"
	"github.com/vcomlink/vcomlink/tpm"
	"github.com/vcomlink/vcomlink/transport"
)

// cliTimeout bounds one run of the vcomlink process.
const cliTimeout = time.Minute

// guestCommands are the commands that call the agent. Tests always give
// them --connect, so that none dials the host's vsock CID.
var guestCommands = []string{"getpub", "sign", "readnv", "activatecredparams", "activatecred", "certify"}

// cliResult is the outcome of one vcomlink process.
type cliResult struct {
	stdout, stderr []byte
	code           int
}

// runCLI runs the test binary as vcomlink with args, as a separate process,
// with stdin as its standard input.
func runCLI(t *testing.T, stdin []byte, args ...string) cliResult {
	t.Helper()
	help := slices.Contains(args, "--help") || slices.Contains(args, "-h")
	if len(args) > 0 && slices.Contains(guestCommands, args[0]) && !help && !slices.Contains(args, "--connect") {
		t.Fatalf("vcomlink %q: a guest command without --connect would dial the host's vsock CID", args)
	}

	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = agentEnv(t)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr

	err := cmd.Run()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("vcomlink %q: %v", args, err)
	}
	return cliResult{stdout: stdout.Bytes(), stderr: stderr.Bytes(), code: cmd.ProcessState.ExitCode()}
}

// mustRunCLI runs vcomlink and fails the test unless it exits with 0.
func mustRunCLI(t *testing.T, stdin []byte, args ...string) []byte {
	t.Helper()
	r := runCLI(t, stdin, args...)
	if r.code != exitOK {
		t.Fatalf("vcomlink %q: exit status %d: %s", args, r.code, r.stderr)
	}
	return r.stdout
}

// testAgent is the agent's server and TPM service in the test process, on a
// provisioned simulator, serving a Unix socket.
type testAgent struct {
	// connect is the --connect value that reaches the agent.
	connect string
	sim     *simtest.TPM
	p       *provision.Result
}

func startTestAgent(t *testing.T) *testAgent {
	t.Helper()
	sim := simtest.Start(t)
	svc, err := tpm.New(sim.Opener(t), tpm.DefaultConfig())
	if err != nil {
		t.Fatalf("start the TPM service: %v", err)
	}
	t.Cleanup(func() { svc.Close() })

	socket := filepath.Join(shortTempDir(t), "agent.sock")
	l, err := transport.Listen("unix://" + socket + "?vm=guest")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := server.New(server.Config{TPM: svc, Policy: policy.NewDefault(), Logger: log})
	go srv.Serve(l)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })

	return &testAgent{connect: "unix://" + socket, sim: sim, p: sim.Result}
}

// writeTemp writes data to a new file in dir and returns its path.
func writeTemp(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// decodeJSON decodes the JSON output of a command into a map of its fields.
func decodeJSON(t *testing.T, out []byte) map[string]any {
	t.Helper()
	var fields map[string]any
	if err := json.Unmarshal(out, &fields); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	return fields
}

// hexField returns the bytes of a hex field of JSON output.
func hexField(t *testing.T, fields map[string]any, name string) []byte {
	t.Helper()
	s, ok := fields[name].(string)
	if !ok {
		t.Fatalf("JSON field %q is %v, want a hex string", name, fields[name])
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("JSON field %q: %v", name, err)
	}
	return b
}
