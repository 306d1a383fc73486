package verify

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"strings"
	"testing"
	"time"
)

func TestParseTPMIdentity(t *testing.T) {
	k := keys(t)
	root := newCA(t, "EK root", nil)
	cert := issueEKCert(t, root, k.rsaEK.public, time.Now().Add(time.Hour))

	identity, err := ParseTPMIdentity(cert)
	if err != nil {
		t.Fatalf("ParseTPMIdentity: %v", err)
	}
	want := TPMIdentity{Manufacturer: "id:53494D55", Model: "SIMULATOR", Version: "id:00010002"}
	if *identity != want {
		t.Errorf("ParseTPMIdentity = %+v, want %+v", *identity, want)
	}
}

func TestParseTPMIdentityRejects(t *testing.T) {
	dnsOnly, err := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 2, Bytes: []byte("tpm.example")}})
	if err != nil {
		t.Fatal(err)
	}
	otherName, err := asn1.Marshal(pkix.RDNSequence{{{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: "a CN"}}})
	if err != nil {
		t.Fatal(err)
	}
	otherDirectoryName, err := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: otherName}})
	if err != nil {
		t.Fatal(err)
	}
	withSAN := func(value []byte) *x509.Certificate {
		return &x509.Certificate{Extensions: []pkix.Extension{{Id: oidSubjectAltName, Critical: true, Value: value}}}
	}

	for _, tc := range []struct {
		name string
		cert *x509.Certificate
		want string
	}{
		{"no subjectAltName", newCA(t, "CA", nil).cert, "has no subjectAltName"},
		{"DNS name only", withSAN(dnsOnly), "names no TPM manufacturer"},
		{"directoryName without TPM", withSAN(otherDirectoryName), "names no TPM manufacturer"},
		{"not DER", withSAN([]byte{0x30, 0x05}), "invalid subjectAltName"},
		{"trailing bytes", withSAN(append(dnsOnly, 0x00)), "1 trailing bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseTPMIdentity(tc.cert)
			if err == nil {
				t.Fatal("ParseTPMIdentity succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseTPMIdentity error %q does not contain %q", err, tc.want)
			}
		})
	}
}
