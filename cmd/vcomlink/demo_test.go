package main

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"testing"
)

func TestDescribeEKCertSubject(t *testing.T) {
	for _, tc := range []struct {
		name string
		cert *x509.Certificate
		want string
	}{
		{"subject", &x509.Certificate{Subject: pkix.Name{CommonName: "tpm-1"}}, `"CN=tpm-1"`},
		{"empty subject without TPM", &x509.Certificate{}, "an empty subject, as EK certificates often have"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := describeEKCertSubject(tc.cert); got != tc.want {
				t.Errorf("describeEKCertSubject = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestVendorText(t *testing.T) {
	for _, tc := range []struct {
		id, want string
	}{
		{"id:4D534654", "MSFT"},
		{"id:49424D00", "IBM"},
		{"id:53494D55", "SIMU"},
		{"id:00000001", ""},
		{"id:4D53", ""},
		{"id:zz", ""},
		{"4D534654", ""},
	} {
		if got := vendorText(tc.id); got != tc.want {
			t.Errorf("vendorText(%q) = %q, want %q", tc.id, got, tc.want)
		}
	}
}
