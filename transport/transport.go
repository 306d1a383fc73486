// Package transport opens the agent's listeners (AF_VSOCK, Unix sockets and
// loopback TCP) and identifies the peer at the other end of each
// connection.
package transport

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// Peer identifies the other end of a guest connection: a VM by its vsock
// CID, a VM by the name the host bound to a Unix listener, or a local
// process on a development listener.
type Peer struct {
	Network string // "vsock", "unix" or "tcp"
	CID     uint32 // the VM's vsock context ID, for vsock
	VM      string // the VM name bound to the Unix listener, if any
	Addr    string // the remote address as the socket reports it
	Path    string // the Unix listener's socket path, for unix
}

// ID returns the peer's identity as the access policy and the logs name it:
// "cid:5", "vm:NAME", "unix:/path/of/listener" or "tcp:127.0.0.1".
func (p Peer) ID() string {
	switch p.Network {
	case "vsock":
		return "cid:" + strconv.FormatUint(uint64(p.CID), 10)
	case "unix":
		if p.VM != "" {
			return "vm:" + p.VM
		}
		return "unix:" + p.Path
	}
	host, _, err := net.SplitHostPort(p.Addr)
	if err != nil {
		host = p.Addr
	}
	return p.Network + ":" + host
}

// Conn is an accepted connection with its peer's identity.
type Conn struct {
	net.Conn
	Peer Peer

	limiter     *ConnLimiter // the limiter that counts the connection, or nil
	overLimit   *LimitError  // set when the connection is over its peer's limit
	releaseOnce sync.Once
}

// Close closes the connection and gives its place back to the ConnLimiter
// that counts it, if any.
func (c *Conn) Close() error {
	c.releaseOnce.Do(func() {
		if c.limiter != nil {
			c.limiter.release(c.Peer.ID(), c.overLimit != nil)
		}
	})
	return c.Conn.Close()
}

// CloseWrite shuts down the writing side of the connection, where the
// socket supports it, so that the peer reads the end of a last response
// before the connection closes. net/http calls it before it closes a
// connection on an error.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// OverLimit returns a *LimitError if a ConnLimiter accepted the connection
// over its peer's limit, and nil otherwise.
func (c *Conn) OverLimit() error {
	if c.overLimit == nil {
		return nil
	}
	return c.overLimit
}

// PeerOf returns the peer of a connection that a Listener accepted.
func PeerOf(c net.Conn) (Peer, bool) {
	pc, ok := c.(*Conn)
	if !ok {
		return Peer{}, false
	}
	return pc.Peer, true
}

// Listener is a listener for guest connections. Accept returns *Conn values
// that carry the peer's identity.
type Listener struct {
	net.Listener
	spec    string
	network string
	vm      string
	path    string
}

// Spec returns the --listen value the listener was opened from.
func (l *Listener) Spec() string { return l.spec }

// Accept waits for the next connection and identifies its peer.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	peer := Peer{Network: l.network, VM: l.vm, Path: l.path, Addr: c.RemoteAddr().String()}
	if l.network == "vsock" {
		peer.CID = vsockCID(c.RemoteAddr())
	}
	return &Conn{Conn: c, Peer: peer}, nil
}

// Address is a parsed --listen value.
type Address struct {
	Network  string // "vsock", "unix" or "tcp"
	CID      uint32 // vsock: the local CID to bind, or AnyCID
	Port     uint32 // vsock: the port
	Path     string // unix: the socket path
	VM       string // unix: the VM name for the policy
	HostPort string // tcp: host:port
	Force    bool   // tcp: allow a non-loopback address
}

// maxVMName is the longest VM name, in bytes.
const maxVMName = 64

// CheckVMName returns an error unless name can name a VM: 1 to 64 letters,
// digits, dots, hyphens and underscores, so that it reads the same in the
// policy file, the logs and the metrics.
func CheckVMName(name string) error {
	if name == "" || len(name) > maxVMName {
		return fmt.Errorf("the VM name %q must be 1 to %d characters", name, maxVMName)
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_'
		if !ok {
			return fmt.Errorf("the VM name %q may contain only letters, digits, '.', '-' and '_'", name)
		}
	}
	return nil
}

// AnyCID binds a vsock listener to every local context ID
// (VMADDR_CID_ANY).
const AnyCID = 0xFFFFFFFF

// ParseAddress parses a --listen value: vsock://:PORT or vsock://CID:PORT,
// unix:///path?vm=NAME, or tcp://127.0.0.1:PORT (tcp://HOST:PORT?force=true
// for a non-loopback address).
func ParseAddress(s string) (Address, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Address{}, fmt.Errorf("invalid listen address %q: %v", s, err)
	}
	q := u.Query()
	switch u.Scheme {
	case "vsock":
		return parseVsock(s, u)
	case "unix":
		if u.Host != "" || !strings.HasPrefix(u.Path, "/") {
			return Address{}, fmt.Errorf("invalid listen address %q: write a Unix socket as unix:///absolute/path", s)
		}
		for key, values := range q {
			if key != "vm" {
				return Address{}, fmt.Errorf("invalid listen address %q: unknown option %q; the only option is vm=NAME", s, key)
			}
			if len(values) > 1 {
				return Address{}, fmt.Errorf("invalid listen address %q: vm= is given %d times", s, len(values))
			}
		}
		if vm, ok := q["vm"]; ok {
			if err := CheckVMName(vm[0]); err != nil {
				return Address{}, fmt.Errorf("invalid listen address %q: %v", s, err)
			}
		}
		// The path is cleaned, so that the peer identity of a listener
		// without a VM name has one spelling.
		return Address{Network: "unix", Path: filepath.Clean(u.Path), VM: q.Get("vm")}, nil
	case "tcp":
		if _, _, err := net.SplitHostPort(u.Host); err != nil {
			return Address{}, fmt.Errorf("invalid listen address %q: write TCP as tcp://127.0.0.1:PORT", s)
		}
		a := Address{Network: "tcp", HostPort: u.Host, Force: q.Get("force") == "true"}
		if !a.Force && !isLoopback(u.Hostname()) {
			return Address{}, fmt.Errorf("listen address %q is not a loopback address: guests must reach the agent over vsock or a Unix socket; add ?force=true to serve TCP on it anyway", s)
		}
		return a, nil
	}
	return Address{}, fmt.Errorf("invalid listen address %q: use vsock://:2000, unix:///path?vm=NAME or tcp://127.0.0.1:PORT", s)
}

func parseVsock(s string, u *url.URL) (Address, error) {
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		return Address{}, fmt.Errorf("invalid listen address %q: write vsock as vsock://:PORT or vsock://CID:PORT", s)
	}
	p, err := strconv.ParseUint(port, 10, 32)
	if err != nil {
		return Address{}, fmt.Errorf("invalid listen address %q: port %q is not a number", s, port)
	}
	a := Address{Network: "vsock", CID: AnyCID, Port: uint32(p)}
	if host != "" {
		cid, err := strconv.ParseUint(host, 10, 32)
		if err != nil {
			return Address{}, fmt.Errorf("invalid listen address %q: CID %q is not a number", s, host)
		}
		a.CID = uint32(cid)
	}
	return a, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Listen opens a listener for a --listen value.
func Listen(spec string) (*Listener, error) {
	a, err := ParseAddress(spec)
	if err != nil {
		return nil, err
	}
	l := &Listener{spec: spec, network: a.Network, vm: a.VM, path: a.Path}
	switch a.Network {
	case "vsock":
		l.Listener, err = listenVsock(a.CID, a.Port)
	case "unix":
		l.Listener, err = listenUnix(a.Path)
	case "tcp":
		l.Listener, err = net.Listen("tcp", a.HostPort)
	}
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", spec, err)
	}
	return l, nil
}
