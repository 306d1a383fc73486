package client

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
)

// DefaultAddress is the agent's address as a guest dials it: the host
// (vsock CID 2) on port 2000.
const DefaultAddress = "vsock://2:2000"

// ErrInvalidAddress is wrapped by the errors of ParseAddress and New for an
// address that cannot be dialed.
var ErrInvalidAddress = errors.New("invalid address")

// maxUnixPathLength is the longest socket path that fits in the 108-byte
// sun_path of a Linux sockaddr_un, which also holds a terminating NUL.
const maxUnixPathLength = 107

// vsock CIDs and ports that only a listener can use.
const (
	vsockCIDAny  = 0xFFFFFFFF
	vsockPortAny = 0xFFFFFFFF
)

// Address is a parsed agent address.
type Address struct {
	// Network is "vsock", "unix" or "tcp".
	Network string
	// CID is the vsock context ID of the host, for vsock.
	CID uint32
	// Port is the vsock port, for vsock.
	Port uint32
	// Path is the socket path, for unix.
	Path string
	// HostPort is the host and port, for tcp.
	HostPort string
}

// String returns the address in the form that ParseAddress accepts.
func (a Address) String() string {
	switch a.Network {
	case "vsock":
		return fmt.Sprintf("vsock://%d:%d", a.CID, a.Port)
	case "unix":
		return (&url.URL{Scheme: "unix", Path: a.Path}).String()
	case "tcp":
		return (&url.URL{Scheme: "tcp", Host: a.HostPort}).String()
	default:
		return ""
	}
}

// ParseAddress parses an agent address in one of three forms:
//
//	vsock://CID:PORT   vsock, with decimal CID and port (DefaultAddress)
//	unix:///PATH       a Unix socket at an absolute path
//	tcp://HOST:PORT    TCP, for development
//
// unix:/PATH, with one slash, is the same Unix address, as the agent's
// listen addresses accept it too. Errors wrap ErrInvalidAddress and
// describe the problem.
func ParseAddress(addr string) (Address, error) {
	invalid := func(format string, args ...any) (Address, error) {
		return Address{}, fmt.Errorf("%w %q: %s", ErrInvalidAddress, addr, fmt.Sprintf(format, args...))
	}

	const forms = "vsock://CID:PORT, unix:///PATH or tcp://HOST:PORT"
	u, err := url.Parse(addr)
	if err != nil {
		return invalid("%v, expected %s", errors.Unwrap(err), forms)
	}
	if u.Scheme == "" {
		return invalid("missing scheme, expected %s", forms)
	}
	if u.Opaque != "" {
		if u.Scheme == "unix" {
			return invalid("socket path %q is not absolute, expected unix:///absolute/path", u.Opaque)
		}
		return invalid("missing // after %s:, expected %s", u.Scheme, forms)
	}
	if u.User != nil {
		return invalid("unexpected user %q before the host, expected %s", u.User.Username(), forms)
	}
	if u.RawQuery != "" || u.ForceQuery {
		if u.Scheme == "unix" && u.Query().Has("vm") {
			return invalid("unexpected query %q: vm=NAME belongs to the agent's --listen address, "+
				"and a client address takes no query", "?"+u.RawQuery)
		}
		return invalid("unexpected query %q: a client address takes no query", "?"+u.RawQuery)
	}
	if u.Fragment != "" {
		return invalid("unexpected fragment %q", "#"+u.Fragment)
	}

	switch u.Scheme {
	case "vsock":
		return parseVsock(u, invalid)
	case "unix":
		if u.Host != "" {
			return invalid("unexpected host %q, expected unix:///PATH with an absolute path", u.Host)
		}
		if u.Path == "" {
			return invalid("missing socket path, expected unix:///PATH")
		}
		if len(u.Path) > maxUnixPathLength {
			return invalid("socket path is %d bytes, longer than the maximum of %d", len(u.Path), maxUnixPathLength)
		}
		return Address{Network: "unix", Path: u.Path}, nil
	case "tcp":
		return parseTCP(u, invalid)
	default:
		return invalid("unknown scheme %q, expected vsock, unix or tcp", u.Scheme)
	}
}

func parseVsock(u *url.URL, invalid func(string, ...any) (Address, error)) (Address, error) {
	if u.Path != "" {
		return invalid("unexpected path %q, expected vsock://CID:PORT", u.Path)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		return invalid("expected vsock://CID:PORT")
	}
	if host == "" {
		return invalid("missing CID, expected vsock://CID:PORT (the host is CID 2)")
	}

	cid, err := strconv.ParseUint(host, 10, 32)
	if err != nil {
		return invalid("CID %q is not a decimal number below 2^32", host)
	}
	if cid == vsockCIDAny {
		return invalid("CID %d (VMADDR_CID_ANY) can only be listened on, not dialed", cid)
	}
	portNumber, err := strconv.ParseUint(port, 10, 32)
	if err != nil {
		return invalid("port %q is not a decimal number below 2^32", port)
	}
	if portNumber == vsockPortAny {
		return invalid("port %d (VMADDR_PORT_ANY) can only be listened on, not dialed", portNumber)
	}
	return Address{Network: "vsock", CID: uint32(cid), Port: uint32(portNumber)}, nil
}

func parseTCP(u *url.URL, invalid func(string, ...any) (Address, error)) (Address, error) {
	if u.Path != "" {
		return invalid("unexpected path %q, expected tcp://HOST:PORT", u.Path)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil || host == "" {
		return invalid("expected tcp://HOST:PORT")
	}
	portNumber, err := strconv.ParseUint(port, 10, 16)
	if err != nil || portNumber == 0 {
		return invalid("port %q is not a number from 1 to 65535", port)
	}
	return Address{Network: "tcp", HostPort: u.Host}, nil
}
