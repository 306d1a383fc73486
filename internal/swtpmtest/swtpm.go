// Package swtpmtest runs swtpm for tests. swtpm is a TPM 2.0 that serves
// the raw TPM command stream on a Unix socket, as the agent's unix://
// backend expects. Start gives a swtpm whose state scripts/swtpm-provision
// has provisioned with the host layout, and StartCleared gives one with a
// new, empty state.
//
// The tests skip when swtpm, swtpm-tools, tpm2-tools or openssl is missing,
// and fail instead when VCOMLINK_REQUIRE_SWTPM=1 is set.
package swtpmtest

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Timeouts of the swtpm process.
const (
	// readyTimeout bounds the wait for a new swtpm to accept connections.
	readyTimeout = 10 * time.Second
	// exitTimeout bounds the wait for swtpm to exit after a signal.
	exitTimeout = 10 * time.Second
)

// SWTPM is a swtpm process that serves a TPM 2.0 state on a Unix socket.
// The test that started it stops it when it ends.
type SWTPM struct {
	// SocketPath is the Unix socket of the TPM command stream
	// (swtpm --server type=unixio).
	SocketPath string
	// CtrlPath is the Unix socket of swtpm's control channel
	// (swtpm --ctrl type=unixio). It is SocketPath with ".ctrl" appended,
	// because the swtpm TCTI of tpm2-tools (swtpm:path=SocketPath) looks
	// for it there.
	CtrlPath string
	// StateDir is the TPM state directory. After Start, it also contains
	// ca.pem, ca-key.pem, ek-cert.pem and device-cert.pem from
	// scripts/swtpm-provision.
	StateDir string
	// CA is the CA certificate that issued the EK and device certificates,
	// from StateDir/ca.pem, or nil after StartCleared.
	CA *x509.Certificate

	logPath string

	mu     sync.Mutex
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	exited chan struct{}
}

// Start starts swtpm on a copy of a state that scripts/swtpm-provision has
// provisioned with the host layout, and waits until it accepts
// connections. The first Start in a test binary runs the script, and later
// ones copy its result. swtpm stops when the test ends.
func Start(t testing.TB) *SWTPM {
	t.Helper()
	requirePrograms(t, provisionPrograms...)

	files := provisionedFiles(t)
	s := newSWTPM(t)
	if err := writeStateFiles(s.StateDir, files); err != nil {
		t.Fatal(err)
	}

	ca, err := parseCertificate(files["ca.pem"])
	if err != nil {
		t.Fatalf("CA certificate of the provisioned swtpm state: %v", err)
	}
	s.CA = ca

	s.startOrFail(t)
	return s
}

// StartCleared starts swtpm on a new, empty state, as a cleared TPM with
// empty hierarchy auth values, and waits until it accepts connections.
// swtpm stops when the test ends.
func StartCleared(t testing.TB) *SWTPM {
	t.Helper()
	requirePrograms(t, swtpmProgram)

	s := newSWTPM(t)
	s.startOrFail(t)
	return s
}

// newSWTPM creates the state directory in the test's temporary directory
// and a directory with a short path for the sockets, because a Unix socket
// path has at most 107 bytes on Linux and t.TempDir paths can be longer.
func newSWTPM(t testing.TB) *SWTPM {
	t.Helper()

	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state")
	if err := os.Mkdir(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}

	socketDir, err := os.MkdirTemp("", "swtpm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(socketDir) })

	socket := filepath.Join(socketDir, "tpm.sock")
	return &SWTPM{
		SocketPath: socket,
		CtrlPath:   socket + ".ctrl",
		StateDir:   stateDir,
		logPath:    filepath.Join(dir, "swtpm.log"),
	}
}

// startOrFail starts swtpm and registers its stop at the end of the test.
func (s *SWTPM) startOrFail(t testing.TB) {
	t.Helper()

	s.mu.Lock()
	err := s.start()
	s.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}

	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("stop swtpm: %v", err)
		}
	})
}

// Dial opens a connection to the TPM command socket. The caller closes it.
func (s *SWTPM) Dial() (*Conn, error) {
	return Dial(s.SocketPath)
}

// Kill stops swtpm with SIGKILL, as a crash would, and waits for it to
// exit. Connections to it fail from then on. The TPM state keeps what
// swtpm had written, which includes every persistent object and NV index.
// Kill does nothing when swtpm is not running.
func (s *SWTPM) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.kill()
}

// Pause stops swtpm with SIGSTOP, as a TPM that hangs would stop: its
// sockets stay open and accept connections, but no command gets a
// response until Resume.
func (s *SWTPM) Pause() error {
	return s.signal(syscall.SIGSTOP)
}

// Resume continues swtpm after Pause with SIGCONT.
func (s *SWTPM) Resume() error {
	return s.signal(syscall.SIGCONT)
}

// signal sends signal to swtpm, when it runs.
func (s *SWTPM) signal(signal syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return errors.New("swtpm is not running")
	}
	if err := s.cmd.Process.Signal(signal); err != nil {
		return fmt.Errorf("send %v to swtpm: %w", signal, err)
	}
	return nil
}

// Restart kills swtpm if it is running, starts it again on the same state
// directory and socket paths, and waits until it accepts connections. The
// TPM starts with TPM2_Startup(CLEAR), so transient objects and sessions
// are gone and persistent ones stay.
func (s *SWTPM) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()

	if err := s.kill(); err != nil {
		return err
	}
	return s.start()
}

// start starts swtpm and waits until its command socket accepts a
// connection. The caller holds s.mu.
func (s *SWTPM) start() error {
	for _, path := range []string{s.SocketPath, s.CtrlPath} {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove old swtpm socket: %w", err)
		}
	}

	cmd := exec.Command("swtpm", "socket", "--tpm2",
		"--tpmstate", "dir="+s.StateDir,
		"--server", "type=unixio,path="+s.SocketPath,
		"--ctrl", "type=unixio,path="+s.CtrlPath,
		"--flags", "not-need-init,startup-clear",
		"--log", "file="+s.logPath)
	stderr := new(bytes.Buffer)
	cmd.Stdout = stderr
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start swtpm: %w", err)
	}

	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	s.cmd, s.stderr, s.exited = cmd, stderr, exited

	deadline := time.Now().Add(readyTimeout)
	for {
		select {
		case <-exited:
			s.cmd = nil
			return fmt.Errorf("swtpm exited at start with %v: %s%s", cmd.ProcessState, stderr, s.readLog())
		default:
		}

		conn, err := net.Dial("unix", s.SocketPath)
		if err == nil {
			conn.Close()
			return nil
		}

		if time.Now().After(deadline) {
			s.kill()
			return fmt.Errorf("swtpm did not accept connections on %s within %v: %v%s",
				s.SocketPath, readyTimeout, err, s.readLog())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill sends SIGKILL to swtpm and waits for it to exit. The caller holds
// s.mu.
func (s *SWTPM) kill() error {
	return s.signalAndWait(syscall.SIGKILL)
}

// stop sends SIGTERM to swtpm, and kills it when it does not exit in time.
func (s *SWTPM) stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()

	err := s.signalAndWait(syscall.SIGTERM)
	if err != nil {
		return errors.Join(err, s.kill())
	}
	return nil
}

// signalAndWait sends signal to swtpm, when it runs, and waits for it to
// exit. The caller holds s.mu.
func (s *SWTPM) signalAndWait(signal syscall.Signal) error {
	if s.cmd == nil {
		return nil
	}

	if err := s.cmd.Process.Signal(signal); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("send %v to swtpm: %w", signal, err)
	}
	// A paused swtpm acts on SIGTERM only once it continues.
	s.cmd.Process.Signal(syscall.SIGCONT)

	select {
	case <-s.exited:
		s.cmd = nil
		return nil
	case <-time.After(exitTimeout):
		return fmt.Errorf("swtpm (pid %d) did not exit within %v of %v", s.cmd.Process.Pid, exitTimeout, signal)
	}
}

// readLog returns swtpm's log file for an error message, or nothing when
// the log is empty or missing.
func (s *SWTPM) readLog() string {
	data, err := os.ReadFile(s.logPath)
	if err != nil || len(data) == 0 {
		return ""
	}
	return "\nswtpm log:\n" + string(data)
}

// parseCertificate parses the first PEM CERTIFICATE block of data.
func parseCertificate(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return x509.ParseCertificate(block.Bytes)
}
