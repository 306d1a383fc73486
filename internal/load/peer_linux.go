package load

import (
	"fmt"
	"net"
	"syscall"
)

// PeerPID returns the ID of the process that listens on the Unix socket at
// path, from the SO_PEERCRED credentials of a connection to it.
func PeerPID(path string) (int, error) {
	conn, err := net.Dial("unix", path)
	if err != nil {
		return 0, fmt.Errorf("find the process behind %s: %w", path, err)
	}
	defer conn.Close()

	raw, err := conn.(*net.UnixConn).SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("find the process behind %s: %w", path, err)
	}
	var cred *syscall.Ucred
	var credErr error
	err = raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	})
	if err == nil {
		err = credErr
	}
	if err != nil {
		return 0, fmt.Errorf("find the process behind %s: SO_PEERCRED: %w", path, err)
	}
	return int(cred.Pid), nil
}
