package client

import (
	"errors"
	"strings"
	"testing"
)

func TestParseAddressAccepts(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Address
	}{
		{DefaultAddress, Address{Network: "vsock", CID: 2, Port: 2000}},
		{"vsock://3:1024", Address{Network: "vsock", CID: 3, Port: 1024}},
		{"vsock://4294967294:4294967294", Address{Network: "vsock", CID: 4294967294, Port: 4294967294}},
		{"unix:///run/vcomlink.sock", Address{Network: "unix", Path: "/run/vcomlink.sock"}},
		{"unix:///tmp/v_2000", Address{Network: "unix", Path: "/tmp/v_2000"}},
		{"tcp://127.0.0.1:2000", Address{Network: "tcp", HostPort: "127.0.0.1:2000"}},
		{"tcp://[::1]:2000", Address{Network: "tcp", HostPort: "[::1]:2000"}},
		{"tcp://localhost:65535", Address{Network: "tcp", HostPort: "localhost:65535"}},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseAddress(tc.in)
			if err != nil {
				t.Fatalf("ParseAddress: %v", err)
			}
			if got != tc.want {
				t.Errorf("ParseAddress = %+v, want %+v", got, tc.want)
			}
			if s := got.String(); s != tc.in {
				t.Errorf("String() = %q, want %q", s, tc.in)
			}
		})
	}
}

func TestParseAddressRejects(t *testing.T) {
	long := "unix:///" + strings.Repeat("d", 107)
	for _, tc := range []struct {
		in   string
		want string
	}{
		{"", "missing scheme"},
		{"2:2000", "expected vsock://CID:PORT, unix:///PATH or tcp://HOST:PORT"},
		{"/run/vcomlink.sock", "missing scheme"},
		{"http://127.0.0.1:2000", `unknown scheme "http"`},
		{"vsock://2", "expected vsock://CID:PORT"},
		{"vsock://:2000", "missing CID"},
		{"vsock://host:2000", `CID "host" is not a decimal number`},
		{"vsock://-1:2000", `CID "-1" is not a decimal number`},
		{"vsock://4294967296:2000", `CID "4294967296" is not a decimal number`},
		{"vsock://4294967295:2000", "VMADDR_CID_ANY"},
		{"vsock://2:port", `invalid port ":port"`},
		{"vsock://2:4294967296", `port "4294967296" is not a decimal number below 2^32`},
		{"vsock://2:4294967295", "VMADDR_PORT_ANY"},
		{"vsock://2:2000/path", `unexpected path "/path"`},
		{"vsock://2:2000?vm=a", `unexpected query "?vm=a": a client address takes no query`},
		{"vsock://2:2000?", `unexpected query "?"`},
		{"vsock://user@2:2000", `unexpected user "user" before the host`},
		{"vsock:2:2000", "missing // after vsock:, expected vsock://CID:PORT"},
		{"unix://", "missing socket path"},
		{"unix://relative/path", `unexpected host "relative"`},
		{"unix:relative", `socket path "relative" is not absolute, expected unix:///absolute/path`},
		{"unix:///run/vcomlink.sock?vm=guest", `unexpected query "?vm=guest": vm=NAME belongs to the agent's --listen address`},
		{"unix:///run/vcomlink.sock?x=1", `unexpected query "?x=1": a client address takes no query`},
		{long, "socket path is 108 bytes, longer than the maximum of 107"},
		{"tcp://127.0.0.1", "expected tcp://HOST:PORT"},
		{"tcp://:2000", "expected tcp://HOST:PORT"},
		{"tcp://127.0.0.1:0", `port "0" is not a number from 1 to 65535`},
		{"tcp://127.0.0.1:65536", `port "65536" is not a number from 1 to 65535`},
		{"tcp://127.0.0.1:2000/x", `unexpected path "/x"`},
		{"vsock://2:2000#frag", `unexpected fragment "#frag"`},
		{"vsock ://2:2000", "invalid address"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			_, err := ParseAddress(tc.in)
			if err == nil {
				t.Fatal("ParseAddress succeeded")
			}
			if !errors.Is(err, ErrInvalidAddress) {
				t.Errorf("ParseAddress error %q does not wrap ErrInvalidAddress", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseAddress error %q does not contain %q", err, tc.want)
			}
		})
	}
}

// TestParseAddressOneSlash checks unix:/PATH, which ParseAddress reads as
// unix:///PATH, as the agent's --listen does.
func TestParseAddressOneSlash(t *testing.T) {
	got, err := ParseAddress("unix:/run/vcomlink.sock")
	if err != nil {
		t.Fatalf("ParseAddress: %v", err)
	}
	if want := (Address{Network: "unix", Path: "/run/vcomlink.sock"}); got != want {
		t.Errorf("ParseAddress = %+v, want %+v", got, want)
	}
	if s, want := got.String(), "unix:///run/vcomlink.sock"; s != want {
		t.Errorf("String() = %q, want %q", s, want)
	}
}

func TestNewRejectsInvalidAddress(t *testing.T) {
	c, err := New("vsock://2")
	if !errors.Is(err, ErrInvalidAddress) {
		t.Errorf("New error is %v, want one that wraps ErrInvalidAddress", err)
	}
	if c != nil {
		t.Error("New returned a client for an invalid address")
	}
}

// TestNewVsockDoesNotDial checks New with a vsock address. It makes no call,
// so nothing dials the host's vsock CID.
func TestNewVsockDoesNotDial(t *testing.T) {
	c, err := New(DefaultAddress)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer c.Close()
	if got, want := c.Address(), (Address{Network: "vsock", CID: 2, Port: 2000}); got != want {
		t.Errorf("Address() = %+v, want %+v", got, want)
	}
}
