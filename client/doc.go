// Package client is the Go client that guests use to call the vcomlink
// agent on their host, which serves the host's TPM over vsock.
//
// A Client posts one protobuf request per HTTP/1.1 exchange and keeps
// connections alive between calls. It is safe for concurrent use:
//
//	c, err := client.New(client.DefaultAddress)
//	if err != nil {
//		return err
//	}
//	defer c.Close()
//	pub, err := c.GetPub(ctx, vcom.HandleAIK)
//
// Each operation returns a typed result with the raw protobuf response
// beside the parsed TPM structures. An error is a *StatusError when the
// agent responded with a status other than 200, and a *TransportError when
// the exchange failed. It wraps ErrInvalidResponse or ErrResponseTooLarge
// when a 200 response could not be used.
package client
