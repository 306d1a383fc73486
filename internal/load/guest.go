package load

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
	"time"

	"github.com/mdlayher/vsock"
	"google.golang.org/protobuf/proto"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/client"
)

// ClientKind chooses how a guest talks to the agent.
type ClientKind string

const (
	// WireClient sends prepared HTTP/1.1 requests on one connection and
	// reads each response with net/http's parser. It checks the status,
	// the Content-Type and that the body decodes as the response message,
	// and does little else, so that a load on few cores measures the agent
	// more than the guest.
	WireClient ClientKind = "wire"
	// GoClient is this project's client.Client, which also parses and
	// checks every TPM structure in a response, as a Go guest does.
	GoClient ClientKind = "go"
)

// ParseClientKind parses a ClientKind.
func ParseClientKind(s string) (ClientKind, error) {
	switch ClientKind(s) {
	case WireClient, GoClient:
		return ClientKind(s), nil
	}
	return "", fmt.Errorf("unknown client %q; use wire or go", s)
}

// guestClient is one guest's connection to the agent.
type guestClient interface {
	do(ctx context.Context) error
	close()
}

func newGuestClient(kind ClientKind, address string, r *Request, timeout time.Duration) (guestClient, error) {
	if kind == GoClient {
		var opts []client.Option
		if timeout > 0 {
			opts = append(opts, client.WithTimeout(timeout))
		}
		c, err := client.New(address, opts...)
		if err != nil {
			return nil, err
		}
		return &goGuest{client: c, request: r}, nil
	}
	return newWireGuest(address, r, timeout)
}

type goGuest struct {
	client  *client.Client
	request *Request
}

func (g *goGuest) do(ctx context.Context) error {
	_, err := g.request.Do(ctx, g.client)
	return err
}

func (g *goGuest) close() { g.client.Close() }

// wireGuest holds one connection and sends the same prepared request on it
// again and again. After a failure it dials a new connection for the next
// call, as net/http's client does.
type wireGuest struct {
	address client.Address
	op      Op
	handle  uint32
	request []byte // the whole HTTP request: head and body
	newRsp  func() proto.Message
	timeout time.Duration

	conn   net.Conn
	reader *bufio.Reader
}

// maxWireResponse bounds a response body that a wire guest reads, in
// bytes, as client.DefaultMaxResponseSize does for the Go client.
const maxWireResponse = client.DefaultMaxResponseSize

func newWireGuest(address string, r *Request, timeout time.Duration) (*wireGuest, error) {
	a, err := client.ParseAddress(address)
	if err != nil {
		return nil, err
	}
	req, rsp := r.Messages()
	body, err := proto.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode the %s request: %w", r.Op, err)
	}
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: vcomlink\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n",
		r.Op.Path(), vcom.ContentType, len(body))
	return &wireGuest{
		address: a,
		op:      r.Op,
		handle:  r.Handle,
		request: append([]byte(head), body...),
		newRsp:  func() proto.Message { return rsp.ProtoReflect().New().Interface() },
		timeout: timeout,
	}, nil
}

func (g *wireGuest) dial(ctx context.Context) (net.Conn, error) {
	switch g.address.Network {
	case "vsock":
		return vsock.DialContext(ctx, g.address.CID, g.address.Port, nil)
	case "unix":
		var d net.Dialer
		return d.DialContext(ctx, "unix", g.address.Path)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", g.address.HostPort)
}

// do sends the request once. It returns a *client.StatusError for a status
// other than 200 and a *client.TransportError when the exchange failed, as
// the Go client does.
func (g *wireGuest) do(ctx context.Context) error {
	err := g.exchange(ctx)
	if err == nil {
		return nil
	}
	g.close()
	var status *client.StatusError
	var transport *client.TransportError
	if errors.As(err, &status) || errors.As(err, &transport) {
		return err
	}
	return fmt.Errorf("%s 0x%08x: %w", g.op, g.handle, err)
}

func (g *wireGuest) exchange(ctx context.Context) error {
	if g.conn == nil {
		conn, err := g.dial(ctx)
		if err != nil {
			return g.transportError(err)
		}
		g.conn = conn
		g.reader = bufio.NewReader(conn)
	}
	if g.timeout > 0 {
		if err := g.conn.SetDeadline(time.Now().Add(g.timeout)); err != nil {
			return g.transportError(err)
		}
	}
	if _, err := g.conn.Write(g.request); err != nil {
		return g.transportError(err)
	}

	rsp, err := http.ReadResponse(g.reader, nil)
	if err != nil {
		return g.transportError(err)
	}
	body, err := io.ReadAll(io.LimitReader(rsp.Body, maxWireResponse+1))
	rsp.Body.Close()
	if err != nil {
		return g.transportError(err)
	}
	if rsp.Close {
		g.close()
	}

	if rsp.StatusCode != http.StatusOK {
		return g.statusError(rsp, body)
	}
	if len(body) > maxWireResponse {
		return errors.New("the response body is over " + strconv.Itoa(maxWireResponse) + " bytes")
	}
	if ct := rsp.Header.Get("Content-Type"); ct != vcom.ContentType {
		return fmt.Errorf("the response has Content-Type %q, not %q", ct, vcom.ContentType)
	}
	if err := proto.Unmarshal(body, g.newRsp()); err != nil {
		return fmt.Errorf("the response body does not decode: %w", err)
	}
	return nil
}

func (g *wireGuest) transportError(err error) error {
	return &client.TransportError{Op: string(g.op), Handle: g.handle, Address: g.address.String(), Err: err}
}

// statusError returns the error of a response other than 200, with the
// first line of its body as the message.
func (g *wireGuest) statusError(rsp *http.Response, body []byte) error {
	line, _, _ := strings.Cut(string(body), "\n")
	e := &client.StatusError{Op: string(g.op), Handle: g.handle, StatusCode: rsp.StatusCode, Message: strings.TrimSpace(line)}
	if seconds, err := strconv.Atoi(rsp.Header.Get("Retry-After")); err == nil && seconds > 0 {
		e.RetryAfter = time.Duration(seconds) * time.Second
	}
	return e
}

func (g *wireGuest) close() {
	if g.conn != nil {
		g.conn.Close()
		g.conn = nil
		g.reader = nil
	}
}
