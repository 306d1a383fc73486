package backend

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// maxResponseSize bounds a TPM response read from a socket. TPMs report
// TPM_PT_MAX_RESPONSE_SIZE of 4096 or so; a larger size field means the
// stream is corrupt.
const maxResponseSize = 64 << 10

// readBufferSize is the size of the buffer a socket connection reads
// responses into; TPMs report a TPM_PT_MAX_RESPONSE_SIZE of about 4096.
const readBufferSize = 8 << 10

// responseHeaderSize is the size of a TPM response header: tag (2 bytes),
// size (4 bytes) and response code (4 bytes).
const responseHeaderSize = 10

// socketTPM is one long-lived connection to a TPM that takes raw commands
// over a stream socket. swtpm serves one connection at a time, so the agent
// keeps this one open instead of dialing per command.
type socketTPM struct {
	conn     net.Conn
	buf      []byte    // read buffer, reused for every response
	deadline time.Time // the deadline set on conn, zero for none
}

// OpenSocket connects to a raw TPM command socket at path and sends
// TPM2_Startup(TPM_SU_CLEAR), to which a TPM that is already started
// responds with TPM_RC_INITIALIZE. timeout bounds the connection and the Startup
// command each.
func OpenSocket(path string, timeout time.Duration) (transport.TPMCloser, error) {
	if fi, err := os.Stat(path); err == nil && fi.Mode()&os.ModeSocket == 0 {
		return nil, fmt.Errorf("%s is not a socket; --tpm unix:///PATH takes the command socket of a TPM such as swtpm's", path)
	}
	conn, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		return nil, fmt.Errorf("connect to the TPM socket: %w", err)
	}
	t := &socketTPM{conn: conn, buf: make([]byte, readBufferSize)}

	// A TPM process that accepts but is stopped would hold Startup forever.
	conn.SetDeadline(time.Now().Add(timeout))
	_, err = tpm2.Startup{StartupType: tpm2.TPMSUClear}.Execute(t)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		conn.Close()
		return nil, fmt.Errorf("the TPM at %s accepted the connection but did not answer TPM2_Startup within %s; swtpm serves one connection at a time, so another process, such as another vcomlink, may hold it", path, timeout)
	}
	if err != nil && !errors.Is(err, tpm2.TPMRCInitialize) {
		conn.Close()
		return nil, fmt.Errorf("TPM2_Startup on %s: %w", path, err)
	}
	conn.SetDeadline(time.Time{})
	return t, nil
}

// Send writes one command and reads its whole response.
func (t *socketTPM) Send(cmd []byte) ([]byte, error) {
	if _, err := t.conn.Write(cmd); err != nil {
		return nil, fmt.Errorf("write TPM command: %w", err)
	}

	// A response usually arrives in one piece, so one read into the
	// buffer takes the header and the body together.
	n := 0
	for n < responseHeaderSize {
		m, err := t.conn.Read(t.buf[n:])
		if err != nil {
			return nil, fmt.Errorf("read TPM response header: %w", err)
		}
		n += m
	}
	size := int(binary.BigEndian.Uint32(t.buf[2:6]))
	if size < responseHeaderSize || size > maxResponseSize {
		return nil, fmt.Errorf("TPM response size field is %d bytes; the stream is corrupt", size)
	}
	if n > size {
		return nil, fmt.Errorf("TPM sent %d bytes after its response; the stream is corrupt", n-size)
	}

	rsp := make([]byte, size)
	copied := copy(rsp, t.buf[:n])
	if _, err := io.ReadFull(t.conn, rsp[copied:]); err != nil {
		return nil, fmt.Errorf("read TPM response body: %w", err)
	}
	return rsp, nil
}

// SendDeadline is Send, failing with an error that wraps
// os.ErrDeadlineExceeded if the whole response has not arrived by deadline.
// A connection that timed out is out of step with the TPM and must be
// closed.
//
// Moving a socket's deadline updates a runtime timer and can wake the
// network poller, which took a tenth of the agent's CPU under a getpub load
// when it happened for every command. So the deadline set before is kept
// while it is earlier than the one asked for by no more than a tenth of the
// time left: a command then times out within 90% to 100% of its bound.
func (t *socketTPM) SendDeadline(cmd []byte, deadline time.Time) ([]byte, error) {
	slack := time.Until(deadline) / 10
	if t.deadline.After(deadline) || t.deadline.Before(deadline.Add(-slack)) {
		if err := t.conn.SetDeadline(deadline); err != nil {
			return nil, err
		}
		t.deadline = deadline
	}
	return t.Send(cmd)
}

// Close closes the connection.
func (t *socketTPM) Close() error {
	return t.conn.Close()
}
