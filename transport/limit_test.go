package transport

import (
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// limitedUnix is a Unix listener for one VM behind a ConnLimiter, with its
// accepted connections delivered on a channel.
type limitedUnix struct {
	path     string
	accepted chan net.Conn
}

func listenLimited(t *testing.T, lim *ConnLimiter, vm string) *limitedUnix {
	t.Helper()
	path := filepath.Join(shortTempDir(t), vm+".sock")
	l, err := Listen("unix://" + path + "?vm=" + vm)
	if err != nil {
		t.Fatal(err)
	}
	limited := lim.Listener(l)
	t.Cleanup(func() { limited.Close() })

	u := &limitedUnix{path: path, accepted: make(chan net.Conn, 16)}
	go func() {
		for {
			c, err := limited.Accept()
			if err != nil {
				return
			}
			u.accepted <- c
		}
	}()
	return u
}

// dial connects and waits until the limited listener returns the
// connection.
func (u *limitedUnix) dial(t *testing.T) (client net.Conn, server *Conn) {
	t.Helper()
	client, err := net.Dial("unix", u.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	select {
	case c := <-u.accepted:
		t.Cleanup(func() { c.Close() })
		return client, c.(*Conn)
	case <-time.After(10 * time.Second):
		t.Fatal("the limited listener returned no connection within 10s")
	}
	return nil, nil
}

// dialDropped connects and checks that the listener closes the connection
// without returning it.
func (u *limitedUnix) dialDropped(t *testing.T, drops chan string, want string) {
	t.Helper()
	client, err := net.Dial("unix", u.path)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := client.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("read on a connection over the limit = %v; want EOF", err)
	}
	select {
	case reason := <-drops:
		if !strings.Contains(reason, want) {
			t.Errorf("drop reason %q does not contain %q", reason, want)
		}
	case <-time.After(10 * time.Second):
		t.Error("onDrop was not called")
	}
	select {
	case c := <-u.accepted:
		t.Errorf("the listener returned a connection over the limit from %s", c.(*Conn).Peer.ID())
	default:
	}
}

func TestConnLimiterPerPeer(t *testing.T) {
	drops := make(chan string, 4)
	lim := NewConnLimiter(2, 0, func(p Peer, reason string) { drops <- p.ID() + ": " + reason })
	a := listenLimited(t, lim, "a")

	for i := range 2 {
		if _, c := a.dial(t); c.OverLimit() != nil {
			t.Fatalf("connection %d within the limit is marked: %v", i+1, c.OverLimit())
		}
	}
	for i := range 2 {
		_, c := a.dial(t)
		var le *LimitError
		if !errors.As(c.OverLimit(), &le) {
			t.Fatalf("connection %d over the limit: OverLimit = %v; want a *LimitError", i+3, c.OverLimit())
		}
		if le.Peer != "vm:a" || le.Limit != 2 {
			t.Errorf("LimitError = %+v; want peer vm:a and limit 2", le)
		}
	}
	if n := lim.Open("vm:a"); n != 4 {
		t.Errorf("Open(vm:a) = %d; want 4", n)
	}
	a.dialDropped(t, drops, "vm:a: the peer has 4 connections open")

	// Another peer is not affected.
	b := listenLimited(t, lim, "b")
	if _, c := b.dial(t); c.OverLimit() != nil {
		t.Errorf("the first connection of another peer is marked: %v", c.OverLimit())
	}
}

func TestConnLimiterReleasesOnClose(t *testing.T) {
	lim := NewConnLimiter(1, 0, nil)
	a := listenLimited(t, lim, "a")

	_, first := a.dial(t)
	_, second := a.dial(t)
	if second.OverLimit() == nil {
		t.Fatal("the second connection is not marked with a limit of 1")
	}
	first.Close()
	first.Close() // a second Close must not release twice
	second.Close()
	if n := lim.Open("vm:a"); n != 0 {
		t.Fatalf("Open(vm:a) = %d after closing every connection; want 0", n)
	}
	if _, third := a.dial(t); third.OverLimit() != nil {
		t.Errorf("a connection after the others closed is marked: %v", third.OverLimit())
	}
}

func TestConnLimiterTotal(t *testing.T) {
	drops := make(chan string, 4)
	lim := NewConnLimiter(0, 3, func(p Peer, reason string) { drops <- p.ID() + ": " + reason })
	a := listenLimited(t, lim, "a")
	b := listenLimited(t, lim, "b")

	a.dial(t)
	a.dial(t)
	_, last := b.dial(t)
	a.dialDropped(t, drops, "vm:a: the agent has 3 connections open")
	b.dialDropped(t, drops, "vm:b: the agent has 3 connections open")

	last.Close()
	if _, c := b.dial(t); c.OverLimit() != nil {
		t.Errorf("a connection after one closed is marked: %v", c.OverLimit())
	}
}

func TestConnLimiterForeignListener(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	limited := NewConnLimiter(1, 0, nil).Listener(l)
	defer limited.Close()
	go func() {
		c, err := net.Dial("tcp", l.Addr().String())
		if err == nil {
			defer c.Close()
			c.Read(make([]byte, 1))
		}
	}()
	c, err := limited.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	peer, ok := PeerOf(c)
	if !ok {
		t.Fatal("PeerOf found no peer on a connection of a plain TCP listener")
	}
	if peer.ID() != "tcp:127.0.0.1" {
		t.Errorf("peer %q; want tcp:127.0.0.1", peer.ID())
	}
}
