package swtpmtest

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// serveOnce listens on a Unix socket and accepts one connection. For each
// of responses in turn, it reads a command of commandSize bytes and writes
// that response. It returns the socket path.
func serveOnce(t *testing.T, commandSize int, responses ...[]byte) string {
	t.Helper()

	dir, err := os.MkdirTemp("", "conn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })

	path := filepath.Join(dir, "tpm.sock")
	listener, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { listener.Close() })

	go func() {
		conn, err := listener.Accept()
		if err != nil {
			return
		}
		defer conn.Close()

		command := make([]byte, commandSize)
		for _, response := range responses {
			if _, err := io.ReadFull(conn, command); err != nil {
				return
			}
			if _, err := conn.Write(response); err != nil {
				return
			}
		}
	}()
	return path
}

// response builds a TPM response with the given responseSize field and
// body.
func response(size uint32, body []byte) []byte {
	header := make([]byte, responseHeaderSize)
	binary.BigEndian.PutUint16(header[0:2], 0x8001)
	binary.BigEndian.PutUint32(header[2:6], size)
	return append(header, body...)
}

func TestConnSendsOverOneConnection(t *testing.T) {
	first := response(14, []byte{1, 2, 3, 4})
	second := response(10, nil)
	command := []byte{0x80, 0x01, 0, 0, 0, 12, 0, 0, 1, 0x7B, 0, 8}
	conn, err := Dial(serveOnce(t, len(command), first, second))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	for i, want := range [][]byte{first, second} {
		got, err := conn.Send(command)
		if err != nil {
			t.Fatalf("Send %d: %v", i+1, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("Send %d returned %x, want %x", i+1, got, want)
		}
	}
}

func TestConnRejectsInvalidResponses(t *testing.T) {
	tests := []struct {
		name     string
		response []byte
		want     string
	}{
		{"size below header", response(9, nil), "invalid TPM response size 9"},
		{"size too large", response(maxResponseSize+1, nil), "invalid TPM response size"},
		{"short header", []byte{0x80, 0x01, 0}, "read TPM response header"},
		{"short body", response(20, []byte{1, 2}), "read TPM response body"},
	}

	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			command := []byte{0x80, 0x01, 0, 0, 0, 10, 0, 0, 1, 0x44}
			conn, err := Dial(serveOnce(t, len(command), test.response))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()

			_, err = conn.Send(command)
			if err == nil {
				t.Fatalf("Send succeeded, want an error containing %q", test.want)
			}
			if !strings.Contains(err.Error(), test.want) {
				t.Errorf("Send: %v, want an error containing %q", err, test.want)
			}
		})
	}
}
