package server

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vcomlink/vcomlink/tpm"
)

// The guest API serves each connection with its own HTTP/1.1 loop around
// net/http's request parser (http.ReadRequest), instead of http.Server.
// http.Server starts a goroutine and moves the read deadline twice for
// every request, to notice a client that goes away; for a getpub on a
// swtpm that doubled the time the HTTP exchange took (BENCHMARKS.md). The
// agent needs little of that: a request's body is read whole before it
// waits for the TPM, and its wait is bounded by the request timeout. Only a
// request that queues behind others has its connection watched
// (watchHangup), so that a guest that goes away gives up its turn.

// Buffer sizes of a connection. Requests and responses are small: a request
// body is at most vcom.MaxBodySize, and a response a few KiB.
const (
	readBufferSize  = 4 << 10
	writeBufferSize = 4 << 10
)

// maxDiscard is how much a connection that closes after an error response
// reads of what the guest still sends.
const maxDiscard = 256 << 10

// headerSlack is the number of bytes a request may read past
// MaxHeaderBytes before it gets 431, for the request line and what the
// reader buffered of the body.
const headerSlack = readBufferSize

// conn is one guest connection.
type conn struct {
	s      *Server
	rwc    net.Conn
	info   connInfo
	ctx    context.Context
	limit  *limitedReader
	br     *bufio.Reader
	bw     *bufio.Writer
	idle   bool // waiting for a request; guarded by s.mu
	closed bool // guarded by s.mu
}

// limitedReader reads from a connection, at most remaining bytes while
// remaining is not negative, so that a request's headers cannot grow
// without bound.
type limitedReader struct {
	r         io.Reader
	remaining int64 // negative for no limit
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.remaining == 0 {
		return 0, errHeaderTooLarge
	}
	if l.remaining > 0 && int64(len(p)) > l.remaining {
		p = p[:l.remaining]
	}
	n, err := l.r.Read(p)
	if l.remaining > 0 {
		l.remaining -= int64(n)
	}
	return n, err
}

var errHeaderTooLarge = errors.New("request headers too large")

// serveConn runs the HTTP/1.1 exchanges of one connection until the guest
// closes it, a limit closes it, or the server shuts down.
func (s *Server) serveConn(rwc net.Conn) {
	c := &conn{s: s, rwc: rwc, info: connInfoOf(rwc)}
	c.ctx = context.WithValue(context.Background(), connKey{}, c.info)
	c.ctx = tpm.WithHangupWatch(c.ctx, c.watchHangup)
	c.limit = &limitedReader{r: rwc, remaining: -1}
	c.br = bufio.NewReaderSize(c.limit, readBufferSize)
	c.bw = bufio.NewWriterSize(rwc, writeBufferSize)
	if !s.track(c) {
		rwc.Close()
		return
	}
	defer s.untrack(c)
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.ConnectionOpened()
		defer s.cfg.Metrics.ConnectionClosed()
	}
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("a request handler panicked; its connection is closed", "peer", c.info.peer.ID(), "panic", p, "stack", string(debug.Stack()))
		}
	}()

	wait := s.cfg.ReadHeaderTimeout
	for {
		if !c.serveRequest(wait) {
			return
		}
		wait = s.cfg.IdleTimeout
	}
}

// serveRequest waits at most wait for the next request, then reads it and
// writes its response. It returns false when the connection must close.
func (c *conn) serveRequest(wait time.Duration) bool {
	s := c.s
	s.setIdle(c, true)
	if pause := s.rates.paused(c.info.peer.ID(), time.Now()); pause > 0 && !c.pause(pause) {
		return false
	}
	c.rwc.SetReadDeadline(time.Now().Add(wait))
	first, err := c.br.Peek(1)
	if err != nil {
		return false
	}
	if !s.setIdle(c, false) {
		return false
	}

	headerDeadline := time.Now().Add(s.cfg.ReadHeaderTimeout)
	c.rwc.SetReadDeadline(headerDeadline)
	if first[0] == '\r' || first[0] == '\n' {
		c.skipEmptyLines()
	}
	c.limit.remaining = int64(s.cfg.MaxHeaderBytes + headerSlack)
	req, err := http.ReadRequest(c.br)
	c.limit.remaining = -1
	if err != nil {
		// A line cut off by the deadline reaches the parser as a whole
		// line, which it reports as malformed.
		if !time.Now().Before(headerDeadline) {
			err = fmt.Errorf("%w: %v", os.ErrDeadlineExceeded, err)
		}
		c.rejectRequest(err)
		return false
	}
	body := &countingBody{ReadCloser: req.Body}
	req.Body = body
	for name := range req.Header {
		// RFC 9112 §5.1: a space before the colon makes a header that no
		// one reads, such as a Content-Length that would go unseen.
		if strings.ContainsAny(name, " \t") {
			c.rejectRequest(fmt.Errorf("the header name %q has white space before its colon", name))
			return false
		}
	}
	if req.ProtoMajor != 1 {
		c.writeError(http.StatusHTTPVersionNotSupported, fmt.Sprintf("%s is not supported; send HTTP/1.1", req.Proto))
		return false
	}
	req = req.WithContext(c.ctx)
	req.RemoteAddr = c.rwc.RemoteAddr().String()

	if expect := req.Header.Get("Expect"); expect != "" {
		if !strings.EqualFold(expect, "100-continue") {
			c.writeError(http.StatusExpectationFailed, fmt.Sprintf("Expect: %q is not supported; send the request without it", expect))
			return false
		}
		c.rwc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
		c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
		if c.bw.Flush() != nil {
			return false
		}
	}

	w := &responseWriter{conn: c, header: make(http.Header), status: http.StatusOK}
	s.handler.ServeHTTP(w, req)
	keep := w.finish(req, body)
	return keep && !s.draining.Load()
}

// countingBody counts what the handler read of a request body.
type countingBody struct {
	io.ReadCloser
	n   int64
	eof bool
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

// unread returns the number of body bytes that the handler left unread, or
// -1 if that is unknown, as for a chunked body.
func (b *countingBody) unread(req *http.Request) int64 {
	switch {
	case b.eof || req.ContentLength == 0:
		return 0
	case req.ContentLength > 0:
		return req.ContentLength - b.n
	}
	return -1
}

// maxEmptyLines is the number of empty lines before a request line that a
// connection skips.
const maxEmptyLines = 4

// skipEmptyLines skips the empty lines that a client may send before a
// request line (RFC 9112 §2.2), as after the body of a previous request.
// More than maxEmptyLines are left for the request parser to reject.
func (c *conn) skipEmptyLines() {
	for range maxEmptyLines {
		b, _ := c.br.Peek(2)
		switch {
		case len(b) >= 2 && b[0] == '\r' && b[1] == '\n':
			c.br.Discard(2)
		case len(b) >= 1 && b[0] == '\n':
			c.br.Discard(1)
		default:
			return
		}
	}
}

// pause waits d before the connection reads its next request, and reports
// false if the guest closed the connection meanwhile, so that it stops
// counting against the peer's connection limit at once, or the server shut
// down. Bytes of a next request that arrive meanwhile stay in the buffer.
func (c *conn) pause(d time.Duration) bool {
	end := time.Now().Add(d)
	c.rwc.SetReadDeadline(end)
	if _, err := c.br.Peek(1); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	if rest := time.Until(end); rest > 0 {
		t := time.NewTimer(rest)
		defer t.Stop()
		select {
		case <-t.C:
		case <-c.s.stop:
			return false
		}
	}
	return true
}

// watchHangup watches the connection while its request waits in the TPM's
// queue, and calls gone if the guest closes it, or shuts down its sending
// side as http.Server also takes for a hang-up. Bytes of a next request
// end the watch and stay in the buffer. The connection's goroutine waits
// for the TPM meanwhile, so only the watch reads the connection; stop
// returns once the watch has stopped reading.
func (c *conn) watchHangup(gone func()) (stop func()) {
	c.rwc.SetReadDeadline(time.Time{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := c.br.Peek(1); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			gone()
		}
	}()
	return func() {
		c.rwc.SetReadDeadline(aLongTimeAgo)
		<-done
		c.rwc.SetReadDeadline(time.Now().Add(c.s.cfg.BodyTimeout))
	}
}

// aLongTimeAgo is a read deadline in the past, which ends a read at once.
var aLongTimeAgo = time.Unix(1, 0)

// rejectRequest responds to a request whose line or headers could not be
// read. A connection that broke or timed out gets no response.
func (c *conn) rejectRequest(err error) {
	var netErr net.Error
	switch {
	case errors.Is(err, errHeaderTooLarge):
		c.writeError(http.StatusRequestHeaderFieldsTooLarge, fmt.Sprintf("the request headers are larger than the limit of %d bytes", c.s.cfg.MaxHeaderBytes))
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.As(err, &netErr):
	default:
		c.writeError(http.StatusBadRequest, "the request is not valid HTTP/1.1: "+oneLine(err.Error()))
	}
	if c.s.cfg.Metrics != nil {
		c.s.cfg.Metrics.Refused("invalid_http")
	}
	c.s.log.Debug("rejected a malformed HTTP request", "peer", c.info.peer.ID(), "err", err)
}

// writeError writes a one-line error response on a connection that then
// closes. The guest may still be sending, so the write side closes first
// and what arrives is read for a moment: closing a TCP socket with unread
// input resets it, and the guest would lose the response.
func (c *conn) writeError(status int, msg string) {
	h := http.Header{}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Connection", "close")
	c.rwc.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
	writeResponse(c.bw, status, h, []byte(msg+"\n"))
	if c.bw.Flush() != nil {
		return
	}
	c.linger()
}

// linger closes the write side of a connection that is about to close
// after a response, and reads what the guest still sends for a moment. A
// close with unread input resets the connection, and the guest could lose
// the response.
func (c *conn) linger() {
	if cw, ok := c.rwc.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		c.rwc.SetReadDeadline(time.Now().Add(lingerTime))
		io.Copy(io.Discard, io.LimitReader(c.rwc, maxDiscard))
	}
}

// lingerTime is how long a connection closed after an error response reads
// what the guest still sends.
const lingerTime = 500 * time.Millisecond

// responseWriter is the http.ResponseWriter of one exchange. It keeps the
// body, which is small, and writes the response with its Content-Length
// when the handler returns.
type responseWriter struct {
	conn        *conn
	header      http.Header
	status      int
	wroteHeader bool
	body        bytes.Buffer
}

func (w *responseWriter) Header() http.Header { return w.header }

func (w *responseWriter) WriteHeader(status int) {
	if w.wroteHeader {
		return
	}
	w.wroteHeader = true
	w.status = status
}

func (w *responseWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(p)
}

// SetReadDeadline and SetWriteDeadline serve http.ResponseController.
func (w *responseWriter) SetReadDeadline(t time.Time) error {
	return w.conn.rwc.SetReadDeadline(t)
}

func (w *responseWriter) SetWriteDeadline(t time.Time) error {
	return w.conn.rwc.SetWriteDeadline(t)
}

// finish reads what the handler left of the request body, writes the
// response, and reports whether the connection can carry another request.
func (w *responseWriter) finish(req *http.Request, body *countingBody) bool {
	c := w.conn
	// A response written once Shutdown has begun closes its connection, so
	// that the guest does not send another request on it.
	keep := !req.Close && w.header.Get("Connection") != "close" && !c.s.draining.Load()
	// The rest of a body that has arrived is skipped, and the connection
	// kept. A body that is still on its way, as a refused request's may
	// be, is not waited for: the response goes out at once, and the
	// connection closes.
	linger := false
	if unread := body.unread(req); keep && unread != 0 {
		if unread > 0 && unread <= int64(c.br.Buffered()) {
			io.CopyN(io.Discard, req.Body, unread)
		} else {
			keep, linger = false, true
		}
	}
	if !keep {
		w.header.Set("Connection", "close")
	}
	out := w.body.Bytes()
	if req.Method == http.MethodHead {
		// A response to HEAD has headers only.
		out = nil
	}
	if err := writeHead(c.bw, w.status, w.header, w.body.Len()); err != nil {
		return false
	}
	if _, err := c.bw.Write(out); err != nil {
		return false
	}
	if err := c.bw.Flush(); err != nil {
		return false
	}
	if linger {
		c.linger()
	}
	return keep
}

// writeResponse writes an HTTP/1.1 response with a Content-Length.
func writeResponse(bw *bufio.Writer, status int, header http.Header, body []byte) error {
	if err := writeHead(bw, status, header, len(body)); err != nil {
		return err
	}
	_, err := bw.Write(body)
	return err
}

// writeHead writes the status line and the headers of a response whose
// body is length bytes.
func writeHead(bw *bufio.Writer, status int, header http.Header, length int) error {
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(strconv.Itoa(status))
	bw.WriteByte(' ')
	bw.WriteString(http.StatusText(status))
	bw.WriteString("\r\n")

	keys := make([]string, 0, len(header))
	for k := range header {
		if k != "Content-Length" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range header[k] {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(headerValue(v))
			bw.WriteString("\r\n")
		}
	}
	bw.WriteString("Content-Length: ")
	bw.WriteString(strconv.Itoa(length))
	_, err := bw.WriteString("\r\n\r\n")
	return err
}

// headerValue removes the line breaks that would end a header early.
func headerValue(v string) string {
	if !strings.ContainsAny(v, "\r\n") {
		return v
	}
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
}

// track records c; it returns false if the server is shutting down.
func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.open[c] = struct{}{}
	return true
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.open, c)
	c.closed = true
	s.mu.Unlock()
	c.rwc.Close()
}

// setIdle marks c as waiting for a request or not. Marking it busy fails
// once the server closes its idle connections.
func (s *Server) setIdle(c *conn, idle bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !idle && s.closing {
		return false
	}
	c.idle = idle
	return true
}
