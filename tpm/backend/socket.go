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

// responseHeaderSize is the size of a TPM response header: tag (2 bytes),
// size (4 bytes) and response code (4 bytes).
const responseHeaderSize = 10

// socketTPM is one long-lived connection to a TPM that takes raw commands
// over a stream socket. swtpm serves one connection at a time, so the agent
// keeps this one open instead of dialing per command.
type socketTPM struct {
	conn net.Conn
}

// OpenSocket connects to a raw TPM command socket at path and sends
// TPM2_Startup(TPM_SU_CLEAR), which a TPM that is already started answers
// with TPM_RC_INITIALIZE. timeout bounds the connection and the Startup
// command each.
func OpenSocket(path string, timeout time.Duration) (transport.TPMCloser, error) {
	if fi, err := os.Stat(path); err == nil && fi.Mode()&os.ModeSocket == 0 {
		return nil, fmt.Errorf("%s is not a socket; --tpm unix:///PATH takes the command socket of a TPM such as swtpm's", path)
	}
	conn, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		return nil, fmt.Errorf("connect to the TPM socket: %w", err)
	}
	t := &socketTPM{conn: conn}

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
	var header [responseHeaderSize]byte
	if _, err := io.ReadFull(t.conn, header[:]); err != nil {
		return nil, fmt.Errorf("read TPM response header: %w", err)
	}
	size := binary.BigEndian.Uint32(header[2:6])
	if size < responseHeaderSize || size > maxResponseSize {
		return nil, fmt.Errorf("TPM response size field is %d bytes; the stream is corrupt", size)
	}
	rsp := make([]byte, size)
	copy(rsp, header[:])
	if _, err := io.ReadFull(t.conn, rsp[responseHeaderSize:]); err != nil {
		return nil, fmt.Errorf("read TPM response body: %w", err)
	}
	return rsp, nil
}

// Close closes the connection.
func (t *socketTPM) Close() error {
	return t.conn.Close()
}
