package backend

import (
	"fmt"
	"os"

	"github.com/google/go-tpm/tpm2/transport"
)

// deviceTPM is an open TPM character device. The kernel delivers each
// response whole to one read after the command's write.
type deviceTPM struct {
	f   *os.File
	buf []byte // read buffer, reused for every response
}

// OpenDevice opens a TPM character device such as /dev/tpmrm0.
func OpenDevice(path string) (transport.TPMCloser, error) {
	// A TPM command written to a regular file would overwrite it.
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("open TPM device: %w", err)
	}
	if fi.Mode()&os.ModeCharDevice == 0 {
		return nil, fmt.Errorf("%s is not a character device; --tpm takes a TPM device such as /dev/tpmrm0, unix:///PATH for a TPM socket, or simulator", path)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open TPM device: %w", err)
	}
	return &deviceTPM{f: f, buf: make([]byte, maxResponseSize)}, nil
}

// Send writes one command and reads its response.
func (t *deviceTPM) Send(cmd []byte) ([]byte, error) {
	if _, err := t.f.Write(cmd); err != nil {
		return nil, fmt.Errorf("write TPM command: %w", err)
	}
	n, err := t.f.Read(t.buf)
	if err != nil {
		return nil, fmt.Errorf("read TPM response: %w", err)
	}
	if n < responseHeaderSize {
		return nil, fmt.Errorf("TPM response is %d bytes, shorter than a response header", n)
	}
	return append([]byte(nil), t.buf[:n]...), nil
}

// Close closes the device.
func (t *deviceTPM) Close() error {
	return t.f.Close()
}
