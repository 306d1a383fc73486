package verify

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
)

// testCA is a certificate authority made for a test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA(t *testing.T, name string, parent *testCA) *testCA {
	t.Helper()
	return newIssuer(t, name, parent, true, x509.KeyUsageCertSign)
}

// newIssuer makes a certificate that issues EK certificates in a test,
// with the given basicConstraints CA flag and keyUsage (0 for none).
func newIssuer(t *testing.T, name string, parent *testCA, isCA bool, usage x509.KeyUsage) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	template := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              usage,
		BasicConstraintsValid: true,
		IsCA:                  isCA,
	}
	issuer, signer := template, crypto.Signer(key)
	if parent != nil {
		issuer, signer = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, template, issuer, key.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key}
}

func (ca *testCA) pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	return pool
}

// tcgSubjectAltName returns a subjectAltName extension that names the TPM
// as TCG EK certificates do: a directoryName of manufacturer, model and
// version attributes.
func tcgSubjectAltName(t *testing.T) pkix.Extension {
	t.Helper()
	name, err := asn1.Marshal(pkix.RDNSequence{{
		{Type: asn1.ObjectIdentifier{2, 23, 133, 2, 1}, Value: "id:53494D55"},
		{Type: asn1.ObjectIdentifier{2, 23, 133, 2, 2}, Value: "SIMULATOR"},
		{Type: asn1.ObjectIdentifier{2, 23, 133, 2, 3}, Value: "id:00010002"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	directoryName := asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: name}
	value, err := asn1.Marshal([]asn1.RawValue{directoryName})
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: oidSubjectAltName, Critical: true, Value: value}
}

// tcgSubjectDirectoryAttributes returns a subjectDirectoryAttributes
// extension with the TPM specification attribute.
func tcgSubjectDirectoryAttributes(t *testing.T, critical bool) pkix.Extension {
	t.Helper()
	type tpmSpecification struct {
		Family   string `asn1:"utf8"`
		Level    int
		Revision int
	}
	type attribute struct {
		Type   asn1.ObjectIdentifier
		Values []tpmSpecification `asn1:"set"`
	}
	value, err := asn1.Marshal([]attribute{{
		Type:   asn1.ObjectIdentifier{2, 23, 133, 2, 16},
		Values: []tpmSpecification{{Family: "2.0", Level: 0, Revision: 138}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: oidSubjectDirectoryAttributes, Critical: critical, Value: value}
}

// issueEKCert issues an EK certificate for ek in the TCG profile: an empty
// subject, a critical subjectAltName and the tcg-kp-EKCertificate usage.
func issueEKCert(t *testing.T, ca *testCA, ek *tpm2.TPMTPublic, notAfter time.Time, extra ...pkix.Extension) *x509.Certificate {
	t.Helper()
	key, err := PublicKey(ek)
	if err != nil {
		t.Fatal(err)
	}
	template := &x509.Certificate{
		SerialNumber:          big.NewInt(2),
		NotBefore:             time.Now().Add(-2 * time.Hour),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageKeyEncipherment,
		UnknownExtKeyUsage:    []asn1.ObjectIdentifier{OIDEKCertificate},
		BasicConstraintsValid: true,
		ExtraExtensions:       append([]pkix.Extension{tcgSubjectAltName(t)}, extra...),
	}
	der, err := x509.CreateCertificate(rand.Reader, template, ca.cert, key, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestVerifyEKCert(t *testing.T) {
	k := keys(t)
	root := newCA(t, "EK root", nil)
	intermediate := newCA(t, "EK intermediate", root)
	otherRoot := newCA(t, "other root", nil)
	valid := time.Now().Add(time.Hour)

	leaf := issueEKCert(t, root, k.rsaEK.public, valid)
	if !slices.ContainsFunc(leaf.UnhandledCriticalExtensions, oidSubjectAltName.Equal) {
		t.Fatalf("crypto/x509 handled the directoryName subjectAltName, so the test does not cover it")
	}
	unhandled := slices.Clone(leaf.UnhandledCriticalExtensions)

	unknownCritical := pkix.Extension{Id: asn1.ObjectIdentifier{1, 2, 3, 4}, Critical: true, Value: []byte{0x05, 0x00}}

	// Issuers that crypto/x509 accepts as roots but a trust anchor must not
	// be.
	leafPool := x509.NewCertPool()
	leafPool.AddCert(leaf)
	notCA := newIssuer(t, "not a CA", nil, false, x509.KeyUsageCertSign)
	noCertSign := newIssuer(t, "CA without keyCertSign", nil, true, x509.KeyUsageCRLSign)
	noKeyUsage := newIssuer(t, "CA without keyUsage", nil, true, 0)
	underNotCA := newCA(t, "intermediate under a non-CA", notCA)
	bothRoots := root.pool()
	bothRoots.AddCert(leaf)

	for _, tc := range []struct {
		name          string
		ek            *tpm2.TPMTPublic
		cert          *x509.Certificate
		roots         *x509.CertPool
		intermediates []*x509.Certificate
		want          string // empty when the check passes
	}{
		{"issued by root", k.rsaEK.public, leaf, root.pool(), nil, ""},
		{"ECC EK", k.eccEK.public, issueEKCert(t, root, k.eccEK.public, valid), root.pool(), nil, ""},
		{"through intermediate", k.rsaEK.public, issueEKCert(t, intermediate, k.rsaEK.public, valid), root.pool(), []*x509.Certificate{intermediate.cert}, ""},
		{"critical subjectDirectoryAttributes", k.rsaEK.public,
			issueEKCert(t, root, k.rsaEK.public, valid, tcgSubjectDirectoryAttributes(t, true)), root.pool(), nil, ""},
		{"key only without roots", k.rsaEK.public,
			issueEKCert(t, root, k.rsaEK.public, valid, unknownCritical), nil, nil, ""},
		{"intermediate missing", k.rsaEK.public, issueEKCert(t, intermediate, k.rsaEK.public, valid), root.pool(), nil, "chain"},
		{"other root", k.rsaEK.public, leaf, otherRoot.pool(), nil, "chain"},
		{"expired", k.rsaEK.public, issueEKCert(t, root, k.rsaEK.public, time.Now().Add(-time.Hour)), root.pool(), nil, "chain"},
		{"other EK", k.eccEK.public, leaf, root.pool(), nil, "public key does not match the EK"},
		{"unknown critical extension", k.rsaEK.public,
			issueEKCert(t, root, k.rsaEK.public, valid, unknownCritical), root.pool(), nil, "unsupported critical extension 1.2.3.4"},
		{"CA without keyUsage", k.rsaEK.public, issueEKCert(t, noKeyUsage, k.rsaEK.public, valid), noKeyUsage.pool(), nil, ""},
		{"leaf as its own root", k.rsaEK.public, leaf, leafPool, nil, "cannot be its own trust anchor"},
		{"leaf and its CA as roots", k.rsaEK.public, leaf, bothRoots, nil, "cannot be its own trust anchor"},
		{"root that is not a CA", k.rsaEK.public, issueEKCert(t, notCA, k.rsaEK.public, valid), notCA.pool(), nil, "chain"},
		{"root without keyCertSign", k.rsaEK.public,
			issueEKCert(t, noCertSign, k.rsaEK.public, valid), noCertSign.pool(), nil, "chain"},
		{"intermediate under non-CA root", k.rsaEK.public,
			issueEKCert(t, underNotCA, k.rsaEK.public, valid), notCA.pool(), []*x509.Certificate{underNotCA.cert}, "chain"},
		{"certificate missing", k.rsaEK.public, nil, root.pool(), nil, "EK certificate is missing"},
		{"EK missing", nil, leaf, root.pool(), nil, "public area is missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifyEKCert(tc.ek, tc.cert, tc.roots, tc.intermediates...)
			if tc.want == "" {
				if err != nil {
					t.Errorf("VerifyEKCert: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("VerifyEKCert succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("VerifyEKCert error %q does not contain %q", err, tc.want)
			}
		})
	}

	if !slices.EqualFunc(leaf.UnhandledCriticalExtensions, unhandled, asn1.ObjectIdentifier.Equal) {
		t.Errorf("VerifyEKCert changed the certificate's UnhandledCriticalExtensions to %v", leaf.UnhandledCriticalExtensions)
	}
	if !HasEKCertificateUsage(leaf) {
		t.Error("HasEKCertificateUsage is false for a certificate with tcg-kp-EKCertificate")
	}
	if HasEKCertificateUsage(root.cert) {
		t.Error("HasEKCertificateUsage is true for a CA certificate")
	}
}
