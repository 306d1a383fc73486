package client

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// ErrInvalidResponse is wrapped by the errors for a 200 response whose body
// is not the expected protobuf message or whose TPM structures do not parse.
var ErrInvalidResponse = errors.New("invalid response from the agent")

// ErrResponseTooLarge is wrapped by the error for a response body larger
// than the client's limit (DefaultMaxResponseSize unless set with
// WithMaxResponseSize).
var ErrResponseTooLarge = errors.New("response from the agent is too large")

// StatusError is a response with a status other than 200 OK. Its body is
// one line of text that describes the failure.
type StatusError struct {
	// Op is the operation, such as "getpub", and Handle the TPM handle it
	// was called on.
	Op     string
	Handle uint32
	// StatusCode is the HTTP status code, such as 403 or 404.
	StatusCode int
	// Message is the first line of the response body, with control
	// characters replaced and cut to at most 512 bytes.
	Message string
	// RetryAfter is the delay from a Retry-After header in seconds, sent
	// with 429 and 503. It is 0 when the header is absent.
	RetryAfter time.Duration
}

// Error returns the operation, handle, status and the agent's message. The
// agent's message starts with the same operation and handle, which Error
// writes once.
func (e *StatusError) Error() string {
	prefix := fmt.Sprintf("%s 0x%08x: ", e.Op, e.Handle)
	msg := fmt.Sprintf("%sagent returned %d %s", prefix, e.StatusCode, http.StatusText(e.StatusCode))
	if e.Message != "" {
		msg += ": " + strings.TrimPrefix(e.Message, prefix)
	}
	return msg
}

// TransportError is a failure to exchange a request and response with the
// agent: the dial, the write or the read failed, or the context ended.
// errors.Is finds the cause, such as context.DeadlineExceeded.
type TransportError struct {
	// Op is the operation, such as "getpub", and Handle the TPM handle it
	// was called on.
	Op     string
	Handle uint32
	// Address is the agent's address.
	Address string
	// Err is the cause.
	Err error
}

// Error returns the operation, handle, address and cause.
func (e *TransportError) Error() string {
	return fmt.Sprintf("%s 0x%08x: %s: %v", e.Op, e.Handle, e.Address, e.Err)
}

// Unwrap returns the cause.
func (e *TransportError) Unwrap() error {
	return e.Err
}
