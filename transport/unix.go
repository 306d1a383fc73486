package transport

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
)

// socketMode is the permission of a Unix listener's socket file: the agent's
// user and group may connect, nobody else.
const socketMode = 0o660

// ListenUnix listens on a Unix socket at path, as a unix:// listener of
// Listen does, but with no peer identity: for the host's own endpoints.
func ListenUnix(path string) (net.Listener, error) {
	return listenUnix(path)
}

// listenUnix listens on a Unix socket at path. A socket file left by an
// earlier run is removed; a file that is not a socket, or a socket that
// another process still serves, is an error.
func listenUnix(path string) (net.Listener, error) {
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, socketMode); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket; remove it or choose another path", path)
	}
	c, err := net.Dial("unix", path)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s is in use by another process", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("check whether %s is in use: %w", path, err)
	}
	return os.Remove(path)
}
