package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/mdlayher/vsock"
	"google.golang.org/protobuf/proto"

	"github.com/vcomlink/vcomlink/api/vcom"
)

const (
	// DefaultMaxResponseSize is the largest response body, in bytes, that
	// a Client reads unless WithMaxResponseSize sets another limit.
	// Responses are small: the largest is usually the data of an NV index,
	// such as an EK certificate of a few KiB.
	DefaultMaxResponseSize = 1 << 20

	// DefaultTimeout is the time limit of one exchange, from the dial to
	// the end of the response body, unless WithTimeout sets another. A
	// context deadline that comes earlier takes precedence.
	DefaultTimeout = 60 * time.Second
)

const (
	// maxIdleConns is the number of idle connections kept for reuse.
	maxIdleConns = 4
	// idleConnTimeout is how long an idle connection is kept.
	idleConnTimeout = 90 * time.Second
	// maxResponseHeaderBytes limits the response headers.
	maxResponseHeaderBytes = 64 << 10
	// maxMessageSize is how much of an error body is read for the message.
	maxMessageSize = 512
	// maxDrainSize is how much of an unread body is read so that the
	// connection can be reused. Larger bodies close the connection.
	maxDrainSize = 64 << 10
)

// Client calls the vcomlink agent. It is safe for concurrent use by several
// goroutines, and keeps connections alive between calls. Call Close to
// release idle connections.
type Client struct {
	addr            Address
	baseURL         string
	httpClient      *http.Client
	transport       *http.Transport
	timeout         time.Duration
	maxResponseSize int64
}

// Option configures a Client in New.
type Option func(*Client)

// WithTimeout sets the time limit of one exchange, from the dial to the end
// of the response body. Zero or less removes the limit, so that only the
// context ends an exchange.
func WithTimeout(d time.Duration) Option {
	return func(c *Client) { c.timeout = d }
}

// WithMaxResponseSize sets the largest response body, in bytes, that the
// client reads. Values of zero or less keep DefaultMaxResponseSize.
func WithMaxResponseSize(n int64) Option {
	return func(c *Client) {
		if n > 0 {
			c.maxResponseSize = n
		}
	}
}

// New returns a client for the agent at addr, in one of the forms that
// ParseAddress describes. DefaultAddress reaches the host over vsock. New
// does not dial, so an unreachable agent shows in the first call.
func New(addr string, opts ...Option) (*Client, error) {
	a, err := ParseAddress(addr)
	if err != nil {
		return nil, err
	}

	c := &Client{
		addr:            a,
		timeout:         DefaultTimeout,
		maxResponseSize: DefaultMaxResponseSize,
	}
	for _, opt := range opts {
		opt(c)
	}

	// The agent does not check the Host header. For TCP it names the
	// agent; for vsock and Unix sockets there is no host name to send.
	host := "vcomlink"
	if a.Network == "tcp" {
		host = a.HostPort
	}
	c.baseURL = (&url.URL{Scheme: "http", Host: host}).String()

	// The transport has no proxy, because the agent is reached directly,
	// and no compression, so that the size limit applies to what is read.
	c.transport = &http.Transport{
		DialContext:            c.dial,
		MaxIdleConns:           maxIdleConns,
		MaxIdleConnsPerHost:    maxIdleConns,
		IdleConnTimeout:        idleConnTimeout,
		DisableCompression:     true,
		MaxResponseHeaderBytes: maxResponseHeaderBytes,
	}
	c.httpClient = &http.Client{
		Transport: c.transport,
		// A redirect is an error status like any other.
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	return c, nil
}

// Address returns the agent's address.
func (c *Client) Address() Address {
	return c.addr
}

// Close closes the idle connections. Calls in progress finish, and the
// Client stays usable: a later call dials again.
func (c *Client) Close() error {
	c.transport.CloseIdleConnections()
	return nil
}

// dial connects to the agent. It ignores the address that net/http derives
// from the URL and dials the Client's address.
func (c *Client) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	switch c.addr.Network {
	case "vsock":
		return vsock.DialContext(ctx, c.addr.CID, c.addr.Port, nil)
	case "unix":
		var d net.Dialer
		return d.DialContext(ctx, "unix", c.addr.Path)
	default:
		var d net.Dialer
		return d.DialContext(ctx, "tcp", c.addr.HostPort)
	}
}

// call posts req to the agent's path and decodes a 200 response into rsp.
// op and handle name the operation in errors.
func (c *Client) call(ctx context.Context, op string, handle uint32, path string, req, rsp proto.Message) error {
	body, err := proto.Marshal(req)
	if err != nil {
		return fmt.Errorf("%s 0x%08x: encoding the request: %w", op, handle, err)
	}
	if len(body) > vcom.MaxBodySize {
		return fmt.Errorf("%s 0x%08x: request is %d bytes, over the agent's limit of %d",
			op, handle, len(body), vcom.MaxBodySize)
	}

	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}

	httpReq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.baseURL+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s 0x%08x: %w", op, handle, err)
	}
	httpReq.Header.Set("Content-Type", vcom.ContentType)

	httpRsp, err := c.httpClient.Do(httpReq)
	if err != nil {
		return c.transportError(op, handle, err)
	}
	defer drainAndClose(httpRsp.Body)

	if httpRsp.StatusCode != http.StatusOK {
		return statusError(op, handle, httpRsp)
	}

	// The Content-Type of a 200 response is not checked, so that agents
	// that omit it still work.
	data, err := c.readBody(httpRsp)
	if errors.Is(err, ErrResponseTooLarge) {
		return fmt.Errorf("%s 0x%08x: %w", op, handle, err)
	}
	if err != nil {
		return c.transportError(op, handle, err)
	}

	if err := proto.Unmarshal(data, rsp); err != nil {
		return fmt.Errorf("%s 0x%08x: %w: %w", op, handle, ErrInvalidResponse, err)
	}
	return nil
}

// readBody reads a 200 response body of at most c.maxResponseSize bytes.
func (c *Client) readBody(rsp *http.Response) ([]byte, error) {
	if rsp.ContentLength > c.maxResponseSize {
		return nil, fmt.Errorf("%w: Content-Length is %d bytes, over the limit of %d",
			ErrResponseTooLarge, rsp.ContentLength, c.maxResponseSize)
	}

	data, err := io.ReadAll(io.LimitReader(rsp.Body, c.maxResponseSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading the response: %w", err)
	}
	if int64(len(data)) > c.maxResponseSize {
		return nil, fmt.Errorf("%w: body is over the limit of %d bytes", ErrResponseTooLarge, c.maxResponseSize)
	}
	return data, nil
}

func (c *Client) transportError(op string, handle uint32, err error) error {
	// net/http wraps the cause in a *url.Error that repeats the URL,
	// which names no real host for vsock and Unix sockets.
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		err = urlErr.Err
	}
	return &TransportError{Op: op, Handle: handle, Address: c.addr.String(), Err: err}
}

// statusError reads the agent's message from a response other than 200.
func statusError(op string, handle uint32, rsp *http.Response) *StatusError {
	e := &StatusError{Op: op, Handle: handle, StatusCode: rsp.StatusCode}

	// The body is text even if it happens to decode as protobuf.
	body, _ := io.ReadAll(io.LimitReader(rsp.Body, maxMessageSize))
	line, _, _ := strings.Cut(string(body), "\n")
	e.Message = sanitize(line)

	if seconds, err := strconv.Atoi(rsp.Header.Get("Retry-After")); err == nil && seconds > 0 {
		e.RetryAfter = time.Duration(seconds) * time.Second
	}
	return e
}

// sanitize makes a message from the agent safe to print in a terminal or
// log: valid UTF-8 with no control characters and no surrounding space.
func sanitize(s string) string {
	s = strings.TrimSpace(strings.ToValidUTF8(s, "\uFFFD"))
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '\uFFFD'
		}
		return r
	}, s)
	return s
}

// drainAndClose reads what is left of a body, up to maxDrainSize, so that
// the connection can be reused, and closes it.
func drainAndClose(body io.ReadCloser) {
	io.Copy(io.Discard, io.LimitReader(body, maxDrainSize))
	body.Close()
}
