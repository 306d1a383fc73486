package backend

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseSpec(t *testing.T) {
	cases := []struct {
		in   string
		want Spec
	}{
		{"", Spec{Kind: Device, Path: DefaultDevice}},
		{"/dev/tpm0", Spec{Kind: Device, Path: "/dev/tpm0"}},
		{"unix:///run/swtpm.sock", Spec{Kind: Socket, Path: "/run/swtpm.sock"}},
		{"simulator", Spec{Kind: Simulator}},
	}
	for _, c := range cases {
		got, err := ParseSpec(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseSpec(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"tpm0", "unix://relative", "unix:relative", "sim", "tcp://127.0.0.1:2321"} {
		if _, err := ParseSpec(bad); err == nil {
			t.Errorf("ParseSpec(%q) succeeded; want an error", bad)
		}
	}
}

func TestOpenDeviceRejectsRegularFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	content := []byte("a file that is not a TPM\n")
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(Spec{Kind: Device, Path: path})
	if err == nil || !strings.Contains(err.Error(), "not a character device") {
		t.Fatalf("Open of a regular file = %v; want a not-a-character-device error", err)
	}
	after, _ := os.ReadFile(path)
	if string(after) != string(content) {
		t.Fatalf("the file was changed to %q", after)
	}
}

func TestOpenDeviceMissing(t *testing.T) {
	_, err := Open(Spec{Kind: Device, Path: "/dev/no-such-tpm"})
	if err == nil || !strings.Contains(err.Error(), "--tpm simulator") {
		t.Fatalf("Open of a missing device = %v; want a hint at --tpm simulator", err)
	}
	if _, err := OpenDevice("/dev/no-such-tpm"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("OpenDevice of a missing device = %v; want fs.ErrNotExist", err)
	}
}

func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "vcb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func TestOpenSocketRejectsRegularFile(t *testing.T) {
	path := filepath.Join(shortTempDir(t), "file")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := OpenSocket(path, time.Second)
	if err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("OpenSocket of a regular file = %v; want a not-a-socket error", err)
	}
}

// TestOpenSocketSilentTPM connects to a socket whose server accepts and
// never answers, as swtpm does while it serves another connection.
func TestOpenSocketSilentTPM(t *testing.T) {
	path := filepath.Join(shortTempDir(t), "silent.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()

	_, err = OpenSocket(path, 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "did not answer TPM2_Startup") {
		t.Fatalf("OpenSocket of a silent TPM = %v; want a did-not-answer error", err)
	}
}

// serveBytes starts a socket that answers the first command it reads with
// the given writes, with a pause between them.
func serveBytes(t *testing.T, writes ...[]byte) string {
	t.Helper()
	path := filepath.Join(shortTempDir(t), "tpm.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 4096)
		c.Read(buf)
		for _, w := range writes {
			c.Write(w)
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(time.Second)
	}()
	return path
}

func TestSocketResponseFraming(t *testing.T) {
	response := []byte{0x80, 0x01, 0, 0, 0, 12, 0, 0, 0, 0, 0xab, 0xcd}
	cases := []struct {
		name   string
		writes [][]byte
		want   string // empty for success
	}{
		{"whole", [][]byte{response}, ""},
		{"split in the header", [][]byte{response[:4], response[4:]}, ""},
		{"split in the body", [][]byte{response[:11], response[11:]}, ""},
		{"size below a header", [][]byte{{0x80, 0x01, 0, 0, 0, 9, 0, 0, 0, 0}}, "stream is corrupt"},
		{"size above the maximum", [][]byte{{0x80, 0x01, 0x7f, 0, 0, 0, 0, 0, 0, 0}}, "stream is corrupt"},
		{"bytes after the response", [][]byte{append(append([]byte(nil), response...), 1, 2)}, "after its response"},
		{"short body", [][]byte{response[:11]}, "read TPM response body"},
	}
	for _, c := range cases {
		conn, err := net.Dial("unix", serveBytes(t, c.writes...))
		if err != nil {
			t.Fatal(err)
		}
		tpm := &socketTPM{conn: conn, buf: make([]byte, readBufferSize)}
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		rsp, err := tpm.Send([]byte{0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x01, 0x7a})
		conn.Close()
		if c.want == "" {
			if err != nil || string(rsp) != string(response) {
				t.Errorf("%s: %x, %v; want %x", c.name, rsp, err, response)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v; want one containing %q", c.name, err, c.want)
		}
	}
}
