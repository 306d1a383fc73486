package transport

import (
	"fmt"
	"net"
	"sync"
)

// ConnLimiter counts the open connections of each peer, by Peer.ID, and of
// all peers together, across any number of listeners.
//
// A peer at its limit may open as many connections again, which Accept
// still returns but marks with a *LimitError (see Conn.OverLimit), so that
// the server can answer their first request with 429 instead of a bare
// close. A peer beyond twice its limit, and any peer once the total limit
// is reached, has its new connections closed at once.
type ConnLimiter struct {
	perPeer int
	total   int
	onDrop  func(peer Peer, reason string)

	mu     sync.Mutex
	open   int // all counted connections, marked ones included
	byPeer map[string]*peerConns
}

type peerConns struct {
	admitted int // connections within the limit
	marked   int // connections over the limit, marked with a *LimitError
}

// LimitError marks a connection that is over its peer's connection limit.
type LimitError struct {
	Peer  string // the peer's identity, as Peer.ID returns it
	Limit int    // the peer's connection limit
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("peer %s already has %d connections open, which is the limit per peer", e.Peer, e.Limit)
}

// NewConnLimiter returns a limiter that admits at most perPeer connections
// of each peer and total connections in all; zero or less means no limit.
// onDrop, if not nil, is called for each connection closed at once, with
// the reason; it must not block.
func NewConnLimiter(perPeer, total int, onDrop func(peer Peer, reason string)) *ConnLimiter {
	return &ConnLimiter{perPeer: perPeer, total: total, onDrop: onDrop, byPeer: make(map[string]*peerConns)}
}

// Listener returns l with the limits applied to every connection it
// accepts. Accept returns *Conn values; a connection from a listener of
// another package gets a Peer made from its remote address.
func (lim *ConnLimiter) Listener(l net.Listener) net.Listener {
	return &limitedListener{Listener: l, limiter: lim}
}

// Open returns the number of connections that peer has open, marked ones
// included.
func (lim *ConnLimiter) Open(peer string) int {
	lim.mu.Lock()
	defer lim.mu.Unlock()
	pc := lim.byPeer[peer]
	if pc == nil {
		return 0
	}
	return pc.admitted + pc.marked
}

type limitedListener struct {
	net.Listener
	limiter *ConnLimiter
}

// Accept waits for the next connection that the limits let through.
func (l *limitedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		conn := asConn(c)
		if l.limiter.admit(conn) {
			return conn, nil
		}
	}
}

// asConn returns c as a *Conn, with a Peer made from its remote address if
// c came from a listener of another package.
func asConn(c net.Conn) *Conn {
	if pc, ok := c.(*Conn); ok {
		return pc
	}
	addr := c.RemoteAddr()
	return &Conn{Conn: c, Peer: Peer{Network: addr.Network(), Addr: addr.String()}}
}

// admit counts c, marks it if it is over its peer's limit, or closes it and
// returns false if it is over twice that or over the total.
func (lim *ConnLimiter) admit(c *Conn) bool {
	id := c.Peer.ID()

	lim.mu.Lock()
	reason := ""
	pc := lim.byPeer[id]
	if pc == nil {
		pc = &peerConns{}
	}
	switch {
	case lim.total > 0 && lim.open >= lim.total:
		reason = fmt.Sprintf("the agent has %d connections open, which is the limit for all peers", lim.open)
	case lim.perPeer > 0 && pc.admitted >= lim.perPeer && pc.marked >= lim.perPeer:
		reason = fmt.Sprintf("the peer has %d connections open, twice the limit per peer", pc.admitted+pc.marked)
	case lim.perPeer > 0 && pc.admitted >= lim.perPeer:
		pc.marked++
		c.overLimit = &LimitError{Peer: id, Limit: lim.perPeer}
	default:
		pc.admitted++
	}
	if reason == "" {
		lim.byPeer[id] = pc
		lim.open++
		c.limiter = lim
	}
	lim.mu.Unlock()

	if reason != "" {
		// onDrop runs first, so that the peer sees the close only once the
		// drop is on record.
		if lim.onDrop != nil {
			lim.onDrop(c.Peer, reason)
		}
		c.Conn.Close()
		return false
	}
	return true
}

// release uncounts a connection of peer id.
func (lim *ConnLimiter) release(id string, marked bool) {
	lim.mu.Lock()
	defer lim.mu.Unlock()
	lim.open--
	pc := lim.byPeer[id]
	if pc == nil {
		return
	}
	if marked {
		pc.marked--
	} else {
		pc.admitted--
	}
	if pc.admitted == 0 && pc.marked == 0 {
		delete(lim.byPeer, id)
	}
}
