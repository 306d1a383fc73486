package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vcomlink/vcomlink/internal/swtpmtest"
)

// TestSWTPMProvisionAdvice runs the commands that scripts/swtpm-provision
// prints, as a user who copies them would: swtpm on the new state,
// tpm2_getcap through the swtpm TCTI, and vcomlink serve, which a guest
// command then calls. The state directory's name has a space, so the
// commands must quote it.
func TestSWTPMProvisionAdvice(t *testing.T) {
	for _, p := range []struct{ name, packageName string }{
		{"swtpm", "swtpm"}, {"swtpm_cert", "swtpm-tools"}, {"tpm2_getcap", "tpm2-tools"}, {"openssl", "openssl"},
	} {
		swtpmtest.RequireProgram(t, p.name, p.packageName)
	}

	stateDir := filepath.Join(shortTempDir(t), "state dir")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	script := exec.CommandContext(ctx, "bash", filepath.Join("..", "..", "scripts", "swtpm-provision"), stateDir)
	var stderr strings.Builder
	script.Stderr = &stderr
	out, err := script.Output()
	if err != nil {
		t.Fatalf("swtpm-provision: %v\n%s", err, stderr.String())
	}
	advice := string(out)

	swtpmCommand := commandAfter(t, advice, "Run swtpm on this state with:")
	getcapCommand := commandAfter(t, advice, "tpm2-tools reach it, while no agent is connected to it, with:")
	serveCommand := commandAfter(t, advice, "and the agent serves it to guests on a Unix socket with:")
	if !strings.Contains(serveCommand, "--listen unix:///") {
		t.Errorf("the serve command has no --listen unix:///PATH, so it would listen on vsock: %s", serveCommand)
	}

	socket := filepath.Join(stateDir, "swtpm.sock")
	startShellCommand(t, swtpmCommand, nil, socket)

	capabilities := runShellCommand(t, getcapCommand)
	if !strings.Contains(capabilities, "TPM2_PT_MANUFACTURER") {
		t.Errorf("tpm2_getcap printed no TPM2_PT_MANUFACTURER:\n%s", capabilities)
	}

	// The command names vcomlink, which a directory on PATH provides here.
	binDir := t.TempDir()
	if err := os.Symlink(os.Args[0], filepath.Join(binDir, "vcomlink")); err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=" + binDir + string(os.PathListSeparator) + os.Getenv("PATH"), "VCOMLINK_RUN_MAIN=1"}
	agentSocket := filepath.Join(stateDir, "vcomlink.sock")
	agent := startShellCommand(t, serveCommand, env, agentSocket)

	mustRunCLI(t, nil, "getpub", "0x81000003", "--connect", "unix://"+agentSocket)

	if err := agent.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-agent.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("vcomlink serve did not exit within 30s of SIGTERM\n%s", agent.output.String())
	}
	if agent.err != nil {
		t.Errorf("vcomlink serve after SIGTERM: %v\n%s", agent.err, agent.output.String())
	}
}

// shellProcess is a command that startShellCommand started.
type shellProcess struct {
	cmd    *exec.Cmd
	output *syncBuffer   // standard output and standard error
	exited chan struct{} // closed when the process has exited
	err    error         // the result of Wait, once exited is closed
}

// commandAfter returns the command on the lines after heading in the
// output of swtpm-provision, with its continuation lines.
func commandAfter(t *testing.T, output, heading string) string {
	t.Helper()
	_, after, found := strings.Cut(output, heading+"\n")
	if !found {
		t.Fatalf("swtpm-provision printed no %q:\n%s", heading, output)
	}

	var lines []string
	for _, line := range strings.Split(after, "\n") {
		lines = append(lines, line)
		if !strings.HasSuffix(line, `\`) {
			break
		}
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}

// runShellCommand runs command with bash and returns its standard output.
func runShellCommand(t *testing.T, command string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", command)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", command, err, stderr.String())
	}
	return string(out)
}

// startShellCommand starts command with bash, with extra environment
// variables, and waits until it listens on the Unix socket. The process is
// killed, if it still runs, when the test ends.
func startShellCommand(t *testing.T, command string, env []string, socket string) *shellProcess {
	t.Helper()
	cmd := exec.Command("bash", "-c", "exec "+command)
	cmd.Env = append(os.Environ(), env...)
	p := &shellProcess{cmd: cmd, output: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.output, p.output
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.exited
	})

	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.Dial("unix", socket)
		if err == nil {
			conn.Close()
			return p
		}
		select {
		case <-p.exited:
			t.Fatalf("%s exited before listening on %s: %v\n%s", command, socket, p.err, p.output.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not listen on %s within 30s\n%s", command, socket, p.output.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
