package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"google.golang.org/protobuf/proto"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/policy"
)

// dribble writes data one byte each interval until it is all written, a
// write fails, or stop is closed. It returns the number of bytes written.
func dribble(c net.Conn, data []byte, interval time.Duration, stop <-chan struct{}) int {
	for i := range data {
		if _, err := c.Write(data[i : i+1]); err != nil {
			return i
		}
		select {
		case <-stop:
			return i + 1
		case <-time.After(interval):
		}
	}
	return len(data)
}

// waitClosed waits up to a minute for the agent to close c, reading and
// returning whatever arrives before the close.
func waitClosed(t *testing.T, c net.Conn) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(time.Minute))
	data, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("waiting for the agent to close the connection: %v", err)
	}
	return data
}

func TestSlowHeaderCutOff(t *testing.T) {
	a := startAgentWith(t, func(c *Config) { c.ReadHeaderTimeout = 2 * time.Second })
	well := a.as(t, "well")
	well.mustServe(t, "before the slow header")

	request := rawRequest(vcom.PathGetPub, mustMarshal(t, &vcom.TpmRequestGetPub{Index: vcom.HandleAIK}))
	c := a.dial(t)
	stop := make(chan struct{})
	sent := make(chan int, 1)
	go func() { sent <- dribble(c, request, time.Second, stop) }()

	well.mustServe(t, "while the header arrives one byte a second")
	if got := waitClosed(t, c); len(got) != 0 {
		t.Errorf("the agent sent %q to a guest whose header never ended; want a close", got)
	}
	close(stop)
	if n := <-sent; n >= len(request) {
		t.Fatalf("the whole request of %d bytes went out before the cut-off", n)
	}
	well.mustServe(t, "after the cut-off")

	// A connection that sends nothing is closed without a response.
	if got := waitClosed(t, a.dial(t)); len(got) != 0 {
		t.Errorf("the agent sent %q on a connection that sent nothing; want a close", got)
	}
}

func TestSlowBodyCutOff(t *testing.T) {
	a := startAgentWith(t, func(c *Config) { c.BodyTimeout = 2 * time.Second })
	well := a.as(t, "well")
	well.mustServe(t, "before the slow body")

	body := mustMarshal(t, &vcom.TpmRequestSign{Index: vcom.HandleECDHKey, Data: make([]byte, 32)})
	request := rawRequest(vcom.PathSign, body)
	header := request[:len(request)-len(body)]

	c := a.dial(t)
	if _, err := c.Write(header); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go dribble(c, body, time.Second, stop)

	well.mustServe(t, "while the body arrives one byte a second")
	rsp, text := readResponse(t, c, bufio.NewReader(c))
	if rsp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("status %d (%s); want 408", rsp.StatusCode, text)
	}
	checkOneLine(t, "slow body", string(text), "sign: the body did not arrive within 2s")
	if !rsp.Close {
		t.Errorf("the 408 response keeps the connection open; want Connection: close")
	}
	if n := a.sim.Sent(tpm2.TPMCCSign); n != 0 {
		t.Errorf("TPM2_Sign was sent %d times for a request whose body never arrived", n)
	}
	well.mustServe(t, "after the cut-off")
}

// TestSlowBodyOnRefusedRequest sends a slow body with a request that is
// refused before its body is read, which net/http then drains.
func TestSlowBodyOnRefusedRequest(t *testing.T) {
	a := startAgentWith(t, func(c *Config) { c.BodyTimeout = 2 * time.Second })
	well := a.as(t, "well")

	body := make([]byte, 64)
	request := rawRequest("/tpm/quote", body)
	header := request[:len(request)-len(body)]
	c := a.dial(t)
	if _, err := c.Write(header); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go dribble(c, body, time.Second, stop)

	br := bufio.NewReader(c)
	rsp, text := readResponse(t, c, br)
	if rsp.StatusCode != http.StatusNotFound {
		t.Fatalf("status %d (%s); want 404", rsp.StatusCode, text)
	}
	well.mustServe(t, "while the refused request's body arrives one byte a second")
	if rest, _ := io.ReadAll(br); len(rest) != 0 {
		t.Errorf("the agent sent %q after the 404; want a close", rest)
	}
	waitClosed(t, c)
	well.mustServe(t, "after the cut-off")
}

func TestIdleConnectionClosed(t *testing.T) {
	a := startAgentWith(t, func(c *Config) { c.IdleTimeout = time.Second })
	well := a.as(t, "well")
	// The agent closes the well-behaved peer's idle connections too, and a
	// POST on a connection that closes under it is not retried.
	well.client.Transport.(*http.Transport).DisableKeepAlives = true

	c := a.dial(t)
	request := rawRequest(vcom.PathGetPub, mustMarshal(t, &vcom.TpmRequestGetPub{Index: vcom.HandleAIK}))
	if _, err := c.Write(request); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	if rsp, text := readResponse(t, c, br); rsp.StatusCode != http.StatusOK {
		t.Fatalf("status %d (%s); want 200", rsp.StatusCode, text)
	}
	well.mustServe(t, "while the connection idles")
	if rest, _ := io.ReadAll(br); len(rest) != 0 {
		t.Errorf("the agent sent %q on an idle connection; want a close", rest)
	}
	well.mustServe(t, "after the idle connection closed")
}

func TestHeaderTooLarge(t *testing.T) {
	a := startAgent(t)
	well := a.as(t, "well")

	c := a.dial(t)
	request := "POST /tpm/getpub HTTP/1.1\r\nHost: vcomlink\r\nX-Pad: " + strings.Repeat("a", 20<<10) + "\r\nContent-Length: 0\r\n\r\n"
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	rsp, text := readResponse(t, c, bufio.NewReader(c))
	if rsp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status %d (%s); want 431", rsp.StatusCode, text)
	}
	checkOneLine(t, "large header", string(text), "request headers are larger than the limit of 8192 bytes")
	well.mustServe(t, "after the large header")
}

// checkOneLine checks that a response body is one line that contains want.
func checkOneLine(t *testing.T, name, body, want string) {
	t.Helper()
	text := strings.TrimSuffix(body, "\n")
	if text == "" || strings.Contains(text, "\n") {
		t.Errorf("%s: body %q is not one line", name, body)
	}
	if !strings.Contains(text, want) {
		t.Errorf("%s: body %q does not contain %q", name, text, want)
	}
}

// openServed opens a raw connection and runs one getpub on it, so that
// the agent has accepted and counted it.
func openServed(t *testing.T, a *agent) (net.Conn, *bufio.Reader) {
	t.Helper()
	c := a.dial(t)
	br := bufio.NewReader(c)
	request := rawRequest(vcom.PathGetPub, mustMarshal(t, &vcom.TpmRequestGetPub{Index: vcom.HandleAIK}))
	if _, err := c.Write(request); err != nil {
		t.Fatal(err)
	}
	if rsp, text := readResponse(t, c, br); rsp.StatusCode != http.StatusOK {
		t.Fatalf("a connection within the limit: status %d (%s); want 200", rsp.StatusCode, text)
	}
	return c, br
}

func TestConnLimitPerPeer(t *testing.T) {
	a := startAgentWith(t, func(c *Config) { c.MaxConnsPerPeer = 2 })
	well := a.as(t, "well")
	request := rawRequest(vcom.PathGetPub, mustMarshal(t, &vcom.TpmRequestGetPub{Index: vcom.HandleAIK}))

	first, _ := openServed(t, a)
	openServed(t, a)

	// Two connections over the limit are accepted and marked; a fifth is
	// closed at once.
	over := []net.Conn{a.dial(t), a.dial(t)}
	waitForConns(t, a, "vm:guest", 4)
	if got := waitClosed(t, a.dial(t)); len(got) != 0 {
		t.Errorf("the agent sent %q on a connection beyond twice the limit; want a close", got)
	}
	if lines := a.log.lines("connection closed at once", "peer=vm:guest", "twice the limit"); len(lines) != 1 {
		t.Errorf("log has %d lines about the closed connection; want 1:\n%s", len(lines), a.log)
	}
	well.mustServe(t, "while vm:guest is over its connection limit")

	for i, c := range over {
		if _, err := c.Write(request); err != nil {
			t.Fatal(err)
		}
		rsp, text := readResponse(t, c, bufio.NewReader(c))
		if rsp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("connection %d over the limit: status %d (%s); want 429", i+3, rsp.StatusCode, text)
		}
		if ra := rsp.Header.Get("Retry-After"); ra != "1" {
			t.Errorf("Retry-After %q; want 1", ra)
		}
		if !rsp.Close {
			t.Errorf("the 429 response keeps the connection open; want Connection: close")
		}
		checkOneLine(t, "connection over the limit", string(text), "getpub: peer vm:guest already has 2 connections open")
	}

	first.Close()
	waitForConns(t, a, "vm:guest", 1)
	openServed(t, a)
	well.mustServe(t, "after vm:guest closed a connection")
}

func TestConnLimitTotal(t *testing.T) {
	a := startAgentWith(t, func(c *Config) { c.MaxConns = 3 })
	well := a.as(t, "well")
	well.mustServe(t, "before the agent is full") // opens the peer's one keep-alive connection

	openServed(t, a)
	openServed(t, a)
	if got := waitClosed(t, a.dial(t)); len(got) != 0 {
		t.Errorf("the agent sent %q on a connection over the total limit; want a close", got)
	}
	if lines := a.log.lines("connection closed at once", "peer=vm:guest", "limit for all peers"); len(lines) != 1 {
		t.Errorf("log has %d lines about the closed connection; want 1:\n%s", len(lines), a.log)
	}
	well.mustServe(t, "while the agent is at its total limit")
}

// waitForConns waits until peer has n connections open in the agent.
func waitForConns(t *testing.T, a *agent, peer string, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for a.srv.conns.Open(peer) != n {
		if time.Now().After(deadline) {
			t.Fatalf("peer %s has %d connections open; want %d", peer, a.srv.conns.Open(peer), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRequestRateLimit(t *testing.T) {
	// One request each ten seconds after a burst of three, so that no
	// token comes back while the test runs.
	a := startAgentWith(t, func(c *Config) {
		c.RequestRate = 0.1
		c.RequestBurst = 3
	})
	well := a.as(t, "well")

	for i := range 3 {
		if r := a.post(t, vcom.PathGetPub, &vcom.TpmRequestGetPub{Index: vcom.HandleAIK}); r.status != http.StatusOK {
			t.Fatalf("request %d of the burst: status %d (%s)", i+1, r.status, r.body)
		}
	}
	r := a.post(t, vcom.PathSign, &vcom.TpmRequestSign{Index: vcom.HandleECDHKey, Data: make([]byte, 32)})
	checkError(t, "over the rate", r, http.StatusTooManyRequests, "sign: peer vm:guest sent more than 0.1 requests per second (at most 3 at once)")
	seconds, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || seconds < 1 || seconds > 10 {
		t.Errorf("Retry-After %q; want 1 to 10 seconds", r.header.Get("Retry-After"))
	}
	if n := a.sim.Sent(tpm2.TPMCCSign); n != 0 {
		t.Errorf("TPM2_Sign was sent %d times for a request over the rate", n)
	}
	well.mustServe(t, "while vm:guest is over its rate")
	if lines := a.log.lines("request refused", "peer=vm:guest", "status=429"); len(lines) != 1 {
		t.Errorf("log has %d lines about the refusal; want 1:\n%s", len(lines), a.log)
	}
}

// TestRateLimitPausesPeer checks that after a 429 for its rate, the peer's
// connections, old and new, wait for the Retry-After before the agent
// reads their next request, so that a peer that ignores Retry-After cannot
// make the agent send 429s as fast as it can send or reconnect.
func TestRateLimitPausesPeer(t *testing.T) {
	a := startAgentWith(t, func(c *Config) {
		c.RequestRate = 0.1
		c.RequestBurst = 1
	})
	request := rawRequest(vcom.PathGetPub, mustMarshal(t, &vcom.TpmRequestGetPub{Index: vcom.HandleAIK}))
	c := a.dial(t)
	br := bufio.NewReader(c)
	if _, err := c.Write(request); err != nil {
		t.Fatal(err)
	}
	if rsp, text := readResponse(t, c, br); rsp.StatusCode != http.StatusOK {
		t.Fatalf("first request: status %d (%s)", rsp.StatusCode, text)
	}

	for i, conn := range []string{"the same connection", "a new connection"} {
		// Each well-behaved peer sends one request, within its burst.
		well := a.as(t, fmt.Sprintf("well%d", i))
		if _, err := c.Write(request); err != nil {
			t.Fatal(err)
		}
		rsp, _ := readResponse(t, c, br)
		if rsp.StatusCode != http.StatusTooManyRequests || rsp.Close {
			t.Fatalf("request over the rate: status %d, close %v; want 429 on an open connection", rsp.StatusCode, rsp.Close)
		}
		seconds, _ := strconv.Atoi(rsp.Header.Get("Retry-After"))
		pause := min(time.Duration(seconds)*time.Second, maxPause)

		next, nextReader := c, br
		if conn == "a new connection" {
			next = a.dial(t)
			nextReader = bufio.NewReader(next)
		}
		sent := time.Now()
		if _, err := next.Write(request); err != nil {
			t.Fatal(err)
		}
		well.mustServe(t, "while vm:guest pauses")
		if rsp, text := readResponse(t, next, nextReader); rsp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("%s: status %d (%s); want 429", conn, rsp.StatusCode, text)
		}
		if waited := time.Since(sent); waited < pause {
			t.Errorf("%s: the request was answered %s after it was sent; want at least the pause of %s", conn, waited, pause)
		}
	}
}

func TestRefusalLogLimited(t *testing.T) {
	grants, err := policy.Parse([]byte("default:\n  - ops: [getpub]\n    handles: [0x81000003]\n"))
	if err != nil {
		t.Fatal(err)
	}
	a := startAgentWith(t, func(c *Config) { c.Policy = grants })
	well := a.as(t, "well")

	// The same refusal fifty times, then sixteen refusals on other handles.
	for range 50 {
		r := a.post(t, vcom.PathSign, &vcom.TpmRequestSign{Index: vcom.HandleAIK, Data: []byte("x")})
		checkError(t, "repeated refusal", r, http.StatusForbidden, "grants no sign")
	}
	for h := uint32(0x81000010); h < 0x81000020; h++ {
		r := a.post(t, vcom.PathSign, &vcom.TpmRequestSign{Index: h, Data: []byte("x")})
		checkError(t, "refusal on another handle", r, http.StatusForbidden, "grants no sign")
	}
	r := well.post(t, vcom.PathReadNV, &vcom.TpmRequestReadNv{Index: vcom.HandleEKCert})
	checkError(t, "another peer's refusal", r, http.StatusForbidden, "grants no readnv")
	well.mustServe(t, "while vm:guest is refused")

	repeated := a.log.lines("request refused", "peer=vm:guest", "op=sign", "handle=0x81000003", "status=403")
	if len(repeated) != 1 {
		t.Errorf("log has %d lines for the repeated refusal; want 1:\n%s", len(repeated), a.log)
	}
	if lines := a.log.lines("request refused", "peer=vm:guest"); len(lines) != refusalLinesPerPeer {
		t.Errorf("log has %d refusal lines of vm:guest; want %d:\n%s", len(lines), refusalLinesPerPeer, a.log)
	}
	if lines := a.log.lines("request refused", "peer=vm:well", "op=readnv", "handle=0x01c00002"); len(lines) != 1 {
		t.Errorf("log has %d lines for the other peer's refusal; want 1:\n%s", len(lines), a.log)
	}

	// 66 refusals, of which 10 were logged.
	a.srv.refusals.flush()
	if lines := a.log.lines("further refusals were not logged", "peer=vm:guest", "count=56"); len(lines) != 1 {
		t.Errorf("log has %d lines with the count of 56 refusals left out; want 1:\n%s", len(lines), a.log)
	}
	// The 49 repeats and the last 7 handles, which had no line of their own.
	omitted := `omitted="403 sign 0x81000003: 49, 403 sign 0x81000019: 1, 403 sign 0x8100001a: 1, 403 sign 0x8100001b: 1, ` +
		`403 sign 0x8100001c: 1, 403 sign 0x8100001d: 1, 403 sign 0x8100001e: 1, 403 sign 0x8100001f: 1"`
	if lines := a.log.lines("further refusals were not logged", omitted); len(lines) != 1 {
		t.Errorf("the count line does not name the refusals left out as %s:\n%s", omitted, a.log)
	}
	if lines := a.log.lines("further refusals were not logged", "peer=vm:well"); len(lines) != 0 {
		t.Errorf("log counts left-out refusals of vm:well, which had none:\n%s", a.log)
	}

	// A new interval logs the refusal again.
	r = a.post(t, vcom.PathSign, &vcom.TpmRequestSign{Index: vcom.HandleAIK, Data: []byte("x")})
	checkError(t, "refusal in a new interval", r, http.StatusForbidden, "grants no sign")
	if lines := a.log.lines("request refused", "peer=vm:guest", "handle=0x81000003"); len(lines) != 2 {
		t.Errorf("log has %d lines for the refusal after a new interval began; want 2", len(lines))
	}
}

// gatedTPM is a TPM service whose GetPub waits until the test opens the
// gate; every other operation fails.
type gatedTPM struct {
	entered chan struct{}
	gate    chan struct{}
}

func (g *gatedTPM) GetPub(ctx context.Context, peer string, h uint32) (*vcom.TpmResponseGetPub, error) {
	g.entered <- struct{}{}
	select {
	case <-g.gate:
		return &vcom.TpmResponseGetPub{Public: []byte{1}}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

var errGated = errors.New("not served by the gated TPM")

func (g *gatedTPM) Sign(context.Context, string, uint32, []byte) (*vcom.TpmResponseSign, error) {
	return nil, errGated
}
func (g *gatedTPM) ReadNV(context.Context, string, uint32) (*vcom.TpmResponseReadNv, error) {
	return nil, errGated
}
func (g *gatedTPM) ActivateCredParams(context.Context, string, uint32) (*vcom.TpmResponseActivateCredParams, error) {
	return nil, errGated
}
func (g *gatedTPM) ActivateCredential(context.Context, string, uint32, []byte, []byte) (*vcom.TpmResponseActivatedCred, error) {
	return nil, errGated
}
func (g *gatedTPM) Certify(context.Context, string, uint32, []byte) (*vcom.TpmResponseCertify, error) {
	return nil, errGated
}

// TestWaitOutlastsBodyTimeout checks that a request may wait for the TPM
// longer than the body's read deadline. net/http cancels the context of a
// request whose read deadline passes, so the deadline must be gone once
// the body is in.
func TestWaitOutlastsBodyTimeout(t *testing.T) {
	g := &gatedTPM{entered: make(chan struct{}, 1), gate: make(chan struct{})}
	const bodyTimeout = 200 * time.Millisecond
	a := newAgent(t, g, func(c *Config) { c.BodyTimeout = bodyTimeout })

	done := make(chan response, 1)
	go func() { done <- a.postNoFatal(vcom.PathGetPub, &vcom.TpmRequestGetPub{Index: vcom.HandleAIK}) }()
	<-g.entered
	time.Sleep(5 * bodyTimeout)
	close(g.gate)

	r := <-done
	if r.status != http.StatusOK {
		t.Fatalf("status %d (%s) after a wait longer than the body timeout; want 200", r.status, r.body)
	}
	var m vcom.TpmResponseGetPub
	if err := proto.Unmarshal(r.body, &m); err != nil {
		t.Fatal(err)
	}
}

// TestPausedConnectionClosedByGuest checks that a connection the guest
// closes during the pause after a 429 stops counting against the peer's
// connection limit before the pause ends.
func TestPausedConnectionClosedByGuest(t *testing.T) {
	a := startAgentWith(t, func(c *Config) {
		c.RequestRate = 0.01
		c.RequestBurst = 1
	})
	a.mustServe(t, "within the burst")
	a.client.CloseIdleConnections()
	waitFor(t, "the client's connection closes", func() bool { return a.srv.openConns() == 0 })

	c := a.dial(t)
	br := bufio.NewReader(c)
	if _, err := c.Write(rawRequest(vcom.PathGetPub, mustMarshal(t, &vcom.TpmRequestGetPub{Index: vcom.HandleAIK}))); err != nil {
		t.Fatal(err)
	}
	rsp, _ := readResponse(t, c, br)
	if rsp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("request over the rate: status %d; want 429", rsp.StatusCode)
	}
	pauseEnd := time.Now().Add(maxPause)
	c.Close()
	waitFor(t, "the closed connection is released", func() bool { return a.srv.openConns() == 0 })
	if time.Now().After(pauseEnd) {
		t.Errorf("the connection closed by the guest was released only after the pause of %s", maxPause)
	}
}
