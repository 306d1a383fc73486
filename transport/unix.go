package transport

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// socketMode is the permission of a Unix listener's socket file: the
// socket's owner and group may connect, and no other user.
const socketMode = 0o660

// ListenUnix listens on a Unix socket at path, as a unix:// listener of
// Listen does, but with no peer identity: for the host's own endpoints.
func ListenUnix(path string) (net.Listener, error) {
	return listenUnix(path)
}

// SetSocketGroup gives the socket file of a unix:// listener to the group
// gid, so that processes in that group, such as a hypervisor that runs
// unprivileged, may connect. The file keeps mode 0660. Changing the group
// needs CAP_CHOWN or membership of the group. A listener of another
// network has no socket file and is left as it is.
func (l *Listener) SetSocketGroup(gid int) error {
	if l.network != "unix" {
		return nil
	}
	if err := os.Chown(l.path, -1, gid); err != nil {
		return fmt.Errorf("set the group of %s to %d: %w; the agent needs CAP_CHOWN, or membership of that group", l.path, gid, err)
	}
	return nil
}

// LookupGroup returns the ID of a group given by name, or by number as
// chown(1) accepts it. A number is taken as it is, because a hypervisor
// sandbox often runs under a group ID that has no name on the host.
func LookupGroup(group string) (int, error) {
	if id, err := strconv.ParseUint(group, 10, 32); err == nil {
		if id == 1<<32-1 {
			return 0, fmt.Errorf("invalid group ID %s: chown reads it as -1, which leaves the group unchanged", group)
		}
		return int(id), nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return 0, fmt.Errorf("group %q not found: give a group that exists on this host, by name or numeric ID", group)
	}
	id, err := strconv.Atoi(g.Gid)
	if err != nil {
		return 0, fmt.Errorf("group %q has the group ID %q, which is not a number", group, g.Gid)
	}
	return id, nil
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
		if dir := filepath.Dir(path); errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w; create the directory %s first", err, dir)
		}
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
