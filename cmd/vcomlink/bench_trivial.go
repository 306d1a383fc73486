package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/vcomlink/vcomlink/client"
	"github.com/vcomlink/vcomlink/internal/load"
	"github.com/vcomlink/vcomlink/server"
	"github.com/vcomlink/vcomlink/transport"
)

// trivialCommand returns the command that runs vcomlink with args. Tests
// replace it, because there the test binary runs as vcomlink.
var trivialCommand = func(args ...string) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the vcomlink binary to start the trivial server: %w", err)
	}
	return exec.Command(exe, args...), nil
}

// trivialStartTimeout bounds the wait for the trivial server to listen.
const trivialStartTimeout = 30 * time.Second

// measureTrivial starts the trivial server on the same kind of socket as
// the agent and measures it as it measured the agent.
func measureTrivial(ctx context.Context, f *benchFlags, requests []*load.Request, bodies map[string][]byte, stderr io.Writer) ([]load.Result, error) {
	address, stop, err := startTrivial(f.connect, bodies, stderr)
	if err != nil {
		return nil, err
	}
	defer stop()
	return measureTarget(ctx, f, load.TargetTrivial, address, requests, stderr)
}

// startTrivial runs vcomlink bench --serve-trivial as a child process and
// returns its address and a function that stops it.
func startTrivial(agent string, bodies map[string][]byte, stderr io.Writer) (string, func(), error) {
	a, err := client.ParseAddress(agent)
	if err != nil {
		return "", nil, err
	}
	var listen, dir string
	switch a.Network {
	case "unix":
		if dir, err = os.MkdirTemp("", "vcomlink-bench"); err != nil {
			return "", nil, err
		}
		listen = "unix://" + filepath.Join(dir, "trivial.sock")
	case "tcp":
		listen = "tcp://127.0.0.1:0"
	default:
		return "", nil, fmt.Errorf("--trivial needs an agent on a Unix socket or loopback TCP, not %s", a.Network)
	}
	removeDir := func() {
		if dir != "" {
			os.RemoveAll(dir)
		}
	}

	cmd, err := trivialCommand("bench", "--serve-trivial", listen)
	if err != nil {
		removeDir()
		return "", nil, err
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		removeDir()
		return "", nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		removeDir()
		return "", nil, err
	}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		removeDir()
		return "", nil, fmt.Errorf("start the trivial server: %w", err)
	}
	stop := func() {
		stdin.Close()
		waitOrKill(cmd, 5*time.Second)
		removeDir()
	}

	if err := json.NewEncoder(stdin).Encode(bodies); err != nil {
		stop()
		return "", nil, fmt.Errorf("send the responses to the trivial server: %w", err)
	}
	address, err := readListening(stdout)
	if err != nil {
		stop()
		return "", nil, err
	}
	go io.Copy(io.Discard, stdout)
	return address, stop, nil
}

// readListening reads the trivial server's first line, "listening
// ADDRESS", and returns the address.
func readListening(stdout io.Reader) (string, error) {
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		lines <- line
	}()
	select {
	case line := <-lines:
		address, ok := strings.CutPrefix(strings.TrimSpace(line), "listening ")
		if !ok {
			return "", fmt.Errorf("the trivial server did not start: its first line is %q", line)
		}
		return address, nil
	case <-time.After(trivialStartTimeout):
		return "", fmt.Errorf("the trivial server did not listen within %s", trivialStartTimeout)
	}
}

// waitOrKill waits for cmd to exit and kills it if it has not within
// grace.
func waitOrKill(cmd *exec.Cmd, grace time.Duration) {
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(grace):
		cmd.Process.Kill()
		<-done
	}
}

// serveTrivial serves load.TrivialHandler on listen with the responses
// that it reads as JSON from stdin, prints "listening ADDRESS" on stdout,
// and stops when stdin ends or ctx ends. Its HTTP server has the agent's
// default limits, so that it sets the same deadlines on each connection.
func serveTrivial(ctx context.Context, listen string, stdin io.Reader, stdout io.Writer) error {
	var bodies map[string][]byte
	decoder := json.NewDecoder(stdin)
	if err := decoder.Decode(&bodies); err != nil {
		return fmt.Errorf("read the responses from standard input: %w", err)
	}
	l, err := transport.Listen(listen)
	if err != nil {
		return err
	}
	address := listen
	if strings.HasPrefix(listen, "tcp:") {
		address = "tcp://" + l.Addr().String()
	}

	var protocols http.Protocols
	protocols.SetHTTP1(true)
	srv := &http.Server{
		Handler:           load.TrivialHandler(bodies),
		ReadHeaderTimeout: server.DefaultReadHeaderTimeout,
		ReadTimeout:       server.DefaultReadTimeout,
		IdleTimeout:       server.DefaultIdleTimeout,
		MaxHeaderBytes:    server.DefaultMaxHeaderBytes,
		Protocols:         &protocols,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	fmt.Fprintf(stdout, "listening %s\n", address)

	ended := make(chan struct{})
	go func() {
		io.Copy(io.Discard, io.MultiReader(decoder.Buffered(), stdin))
		close(ended)
	}()
	select {
	case <-ended:
	case <-ctx.Done():
	case err := <-served:
		return fmt.Errorf("trivial server on %s: %w", listen, err)
	}
	srv.Close()
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
