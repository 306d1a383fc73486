package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/vcomlink/vcomlink/client"
)

// guestFlags are the flags that every guest command takes.
type guestFlags struct {
	connect string
	format  *choiceFlag
	timeout durationFlag
}

// addGuestFlags adds --connect, --format and --timeout to c. formats are the
// values of --format, the first being the default, and formatHelp describes
// each of them.
func addGuestFlags(c *cli, formatHelp string, formats ...string) *guestFlags {
	g := &guestFlags{format: newChoiceFlag(formats...), timeout: durationFlag(client.DefaultTimeout)}
	c.fs.StringVar(&g.connect, "connect", client.DefaultAddress,
		"`URL` of the agent: vsock://CID:PORT (the host is CID 2), unix:///PATH (or unix:/PATH) or tcp://HOST:PORT")
	c.fs.Var(g.format, "format", "`FORMAT` of the output: "+joinChoices(formats)+". "+formatHelp)
	c.fs.Var(&g.timeout, "timeout",
		"time limit of the call to the agent, from the dial to the end of the response, as a `DURATION` such as 30s or 2m. 0 means no limit")
	return g
}

// dial returns a client of the agent at --connect. It does not connect yet.
func (g *guestFlags) dial() (*client.Client, error) {
	if g.timeout < 0 {
		return nil, usagef("invalid --timeout %s: it must be 0 (no limit) or more", time.Duration(g.timeout))
	}
	c, err := client.New(g.connect, client.WithTimeout(time.Duration(g.timeout)))
	if errors.Is(err, client.ErrInvalidAddress) {
		return nil, usagef("--connect: %v", err)
	}
	return c, err
}

// call dials the agent, runs one operation, and closes the client. A
// failure to connect says what to check.
func (g *guestFlags) call(operation func(ctx context.Context, c *client.Client) error) error {
	c, err := g.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	err = operation(context.Background(), c)

	var transportErr *client.TransportError
	var netErr *net.OpError
	if errors.As(err, &transportErr) && errors.As(err, &netErr) && netErr.Op == "dial" {
		return fmt.Errorf("%w; check that the agent runs and that --connect %s is its address", err, g.connect)
	}
	return err
}

// writeMessage writes a response message as JSON, in the form of
// marshalJSON.
func writeMessage(w io.Writer, m proto.Message) error {
	data, err := marshalJSON(m)
	if err != nil {
		return err
	}
	_, err = w.Write(data)
	return err
}
