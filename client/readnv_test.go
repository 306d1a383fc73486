package client

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
)

func TestParseCertificate(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der := selfSignedCert(t, key.Public())
	if len(der) < 256 {
		t.Fatalf("the test certificate is %d bytes, too short for a long-form DER length", len(der))
	}
	with := func(tail ...byte) []byte { return append(bytes.Clone(der), tail...) }

	for _, tc := range []struct {
		name string
		data []byte
		want string // empty when the certificate parses
	}{
		{"exact", der, ""},
		{"zero padding", with(make([]byte, 100)...), ""},
		{"0xFF padding", with(bytes.Repeat([]byte{0xFF}, 100)...), ""},
		{"mixed padding", with(0x00, 0xFF), "the 2 bytes after the"},
		{"other trailing bytes", with(0x30, 0x00), "the 2 bytes after the"},
		{"truncated", der[:len(der)-1], "but only"},
		{"header only", der[:4], "but only 0 follow its header"},
		{"not a sequence", append([]byte{0x04}, der[1:]...), "begins with 0x04"},
		{"empty", nil, "0 bytes are too short"},
		{"indefinite length", []byte{0x30, 0x80, 0x00, 0x00}, "DER length byte 0x80 is invalid"},
		{"length of 5 bytes", []byte{0x30, 0x85, 1, 0, 0, 0, 0}, "DER length byte 0x85 is invalid"},
		{"length truncated", []byte{0x30, 0x82, 0x01}, "DER length is truncated"},
		{"huge length", []byte{0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF}, "but only 0 follow"},
		{"sequence that is not a certificate", []byte{0x30, 0x03, 0x02, 0x01, 0x01}, "x509"},
		{"all padding", bytes.Repeat([]byte{0xFF}, 64), "begins with 0xff"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert, err := ParseCertificate(tc.data)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("ParseCertificate: %v", err)
				}
				if !bytes.Equal(cert.Raw, der) {
					t.Error("the parsed certificate differs from the DER")
				}
				return
			}
			if err == nil {
				t.Fatal("ParseCertificate succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseCertificate error %q does not contain %q", err, tc.want)
			}
			var certErr *CertificateError
			if !errors.As(err, &certErr) {
				t.Errorf("ParseCertificate error %q is not a *CertificateError", err)
			}
		})
	}
}
