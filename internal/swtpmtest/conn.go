package swtpmtest

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// responseHeaderSize is the size of a TPM response header: tag (2 bytes),
// responseSize (4 bytes) and responseCode (4 bytes).
const responseHeaderSize = 10

// maxResponseSize bounds the responseSize field that Conn accepts. A TPM
// response fits into TPM_PT_MAX_RESPONSE_SIZE bytes, which is 4096 on swtpm
// 0.7 and on the reference simulator of go-tpm-tools v0.4.11, so a value
// above this bound means a broken stream.
const maxResponseSize = 64 * 1024

// Conn sends raw TPM commands to swtpm over one Unix socket connection that
// stays open for all of them, as swtpm's --server type=unixio expects. It
// implements go-tpm's transport.TPM. It is safe for concurrent use, and
// sends one command at a time.
type Conn struct {
	// Timeout bounds each command and its response. Zero means no limit.
	Timeout time.Duration

	mu   sync.Mutex
	conn net.Conn
}

// Dial connects to the swtpm server socket at path, with a Timeout of 30
// seconds. The caller closes the Conn.
func Dial(path string) (*Conn, error) {
	conn, err := net.Dial("unix", path)
	if err != nil {
		return nil, err
	}
	return &Conn{Timeout: 30 * time.Second, conn: conn}, nil
}

// Send writes command and returns the whole response: the 10-byte header,
// then as many bytes as its responseSize field gives. The TPM response code
// stays in the response for go-tpm to decode. After an error the stream may
// be out of step, so close the Conn and dial again.
func (c *Conn) Send(command []byte) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()

	if c.Timeout > 0 {
		if err := c.conn.SetDeadline(time.Now().Add(c.Timeout)); err != nil {
			return nil, fmt.Errorf("set deadline on TPM connection: %w", err)
		}
	}

	if _, err := c.conn.Write(command); err != nil {
		return nil, fmt.Errorf("write TPM command: %w", err)
	}

	header := make([]byte, responseHeaderSize)
	if _, err := io.ReadFull(c.conn, header); err != nil {
		return nil, fmt.Errorf("read TPM response header: %w", err)
	}

	size := binary.BigEndian.Uint32(header[2:6])
	if size < responseHeaderSize || size > maxResponseSize {
		return nil, fmt.Errorf("invalid TPM response size %d, expected %d to %d bytes",
			size, responseHeaderSize, maxResponseSize)
	}

	response := make([]byte, size)
	copy(response, header)
	if _, err := io.ReadFull(c.conn, response[responseHeaderSize:]); err != nil {
		return nil, fmt.Errorf("read TPM response body of %d bytes: %w", size-responseHeaderSize, err)
	}
	return response, nil
}

// Close closes the connection.
func (c *Conn) Close() error {
	return c.conn.Close()
}
