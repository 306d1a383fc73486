package client

import (
	"testing"
)

func FuzzParseAddress(f *testing.F) {
	for _, seed := range []string{
		DefaultAddress, "vsock://4294967295:1", "unix:///run/vcomlink.sock",
		"unix://host/path", "tcp://127.0.0.1:2000", "tcp://[::1]:1", "vsock://2:2000?x",
		"unix:///a%3Fb%23c%25d", "tcp://[fe80::1%25en0]:1",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		addr, err := ParseAddress(s)
		if err != nil {
			return
		}
		// An accepted address prints in a form that parses to itself.
		again, err := ParseAddress(addr.String())
		if err != nil {
			t.Fatalf("ParseAddress(%q) = %+v, whose String %q does not parse: %v", s, addr, addr.String(), err)
		}
		if again != addr {
			t.Errorf("ParseAddress(%q) = %+v, but its String parses to %+v", s, addr, again)
		}
	})
}

func FuzzParseCertificate(f *testing.F) {
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x01, 0xFF, 0xFF})
	f.Add([]byte{0x30, 0x82, 0x01, 0x00})
	f.Add([]byte{0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF})
	f.Fuzz(func(t *testing.T, data []byte) {
		ParseCertificate(data)
	})
}
