//go:build !linux

package load

import "errors"

// PeerPID returns the ID of the process that listens on the Unix socket at
// path. It needs SO_PEERCRED, which only Linux has here.
func PeerPID(path string) (int, error) {
	return 0, errors.New("finding the process behind a Unix socket needs Linux; name the agent's process ID")
}
