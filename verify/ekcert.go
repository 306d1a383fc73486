package verify

import (
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"

	"github.com/google/go-tpm/tpm2"
)

// Critical extensions that VerifyEKCert accepts although crypto/x509 does
// not process them.
var (
	// oidSubjectAltName is critical in EK certificates whose subject is
	// empty. It carries the TPM manufacturer, model and version as a
	// directoryName, which crypto/x509 does not parse and so lists in
	// UnhandledCriticalExtensions.
	oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
	// oidSubjectDirectoryAttributes carries the TPM specification version
	// and security assertions. VerifyEKCert does not interpret them, and
	// accepts the extension even when an issuer marks it critical.
	oidSubjectDirectoryAttributes = asn1.ObjectIdentifier{2, 5, 29, 9}
)

// OIDEKCertificate is the TCG extended key usage of an EK certificate
// (tcg-kp-EKCertificate).
var OIDEKCertificate = asn1.ObjectIdentifier{2, 23, 133, 8, 1}

// VerifyEKCert checks that cert certifies the endorsement key whose public
// area is ek.
//
// The certificate's public key must equal the EK's. When roots is not nil,
// the certificate must also chain to one of roots, through intermediates
// when given, at the current time. Every issuer in the chain, the root
// included, must be a CA certificate (basicConstraints CA:TRUE, and
// keyCertSign when it has a keyUsage extension) other than the EK
// certificate, so a chain has at least two certificates. Roots that
// contain the EK certificate are rejected even when they also contain its
// CA, because crypto/x509 then stops at the EK certificate. The chain is
// built with x509.ExtKeyUsageAny because EK certificates carry the TCG
// usage tcg-kp-EKCertificate (2.23.133.8.1), which crypto/x509 does not
// know.
//
// Of the critical extensions that crypto/x509 leaves unhandled in the EK
// certificate, VerifyEKCert accepts subjectAltName (2.5.29.17), which holds
// the TPM's identity as a directoryName, and subjectDirectoryAttributes
// (2.5.29.9). Any other unhandled critical extension is an error, and so is
// one in an intermediate or root.
func VerifyEKCert(ek *tpm2.TPMTPublic, cert *x509.Certificate, roots *x509.CertPool, intermediates ...*x509.Certificate) error {
	if cert == nil {
		return fmt.Errorf("EK certificate is missing")
	}
	ekKey, err := PublicKey(ek)
	if err != nil {
		return fmt.Errorf("EK certificate: EK: %w", err)
	}

	certKey, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok {
		return fmt.Errorf("EK certificate: unsupported public key type %T", cert.PublicKey)
	}
	if !certKey.Equal(ekKey) {
		return fmt.Errorf("EK certificate: public key does not match the EK")
	}

	if roots == nil {
		return nil
	}

	// Verify a copy whose list of unhandled critical extensions leaves out
	// the ones accepted above, so the caller's certificate stays unchanged.
	leaf := *cert
	leaf.UnhandledCriticalExtensions = nil
	for _, oid := range cert.UnhandledCriticalExtensions {
		if oid.Equal(oidSubjectAltName) || oid.Equal(oidSubjectDirectoryAttributes) {
			continue
		}
		return fmt.Errorf("EK certificate: unsupported critical extension %s", oid)
	}

	pool := x509.NewCertPool()
	for _, c := range intermediates {
		pool.AddCert(c)
	}
	opts := x509.VerifyOptions{
		Roots:         roots,
		Intermediates: pool,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}
	chains, err := leaf.Verify(opts)
	if err != nil {
		return fmt.Errorf("EK certificate: chain: %w", err)
	}

	// crypto/x509 accepts a leaf that is itself in roots as a chain of one,
	// and a version 1 root without basicConstraints. A trust anchor must
	// have issued the EK certificate, so keep only chains whose issuers are
	// all CA certificates.
	var rejected error
	for _, chain := range chains {
		rejected = checkIssuers(chain)
		if rejected == nil {
			return nil
		}
	}
	return fmt.Errorf("EK certificate: chain: %w", rejected)
}

// errLeafAsAnchor is the reason checkIssuers gives for a chain whose trust
// anchor is the EK certificate itself.
var errLeafAsAnchor = errors.New("the EK certificate is among the trusted CA certificates, " +
	"but it cannot be its own trust anchor: give the CA certificate that issued it")

// checkIssuers checks a chain from crypto/x509, the EK certificate first
// and the trust anchor last. The chain must have an issuer other than the
// EK certificate, and every issuer must be a CA certificate that may sign
// certificates: basicConstraints CA:TRUE, and keyCertSign when it has a
// keyUsage extension.
func checkIssuers(chain []*x509.Certificate) error {
	leaf := chain[0]
	if len(chain) < 2 {
		return errLeafAsAnchor
	}

	for _, issuer := range chain[1:] {
		if issuer.Equal(leaf) {
			return errLeafAsAnchor
		}
		if !issuer.BasicConstraintsValid || !issuer.IsCA {
			return fmt.Errorf("issuer %q is not a CA certificate (no basicConstraints CA:TRUE)", issuer.Subject)
		}
		if issuer.KeyUsage != 0 && issuer.KeyUsage&x509.KeyUsageCertSign == 0 {
			return fmt.Errorf("issuer %q has a keyUsage without keyCertSign, so it may not sign certificates", issuer.Subject)
		}
	}
	return nil
}

// HasEKCertificateUsage reports whether cert lists the TCG extended key usage
// tcg-kp-EKCertificate. VerifyEKCert does not require that usage, so a
// caller that does calls HasEKCertificateUsage as well.
func HasEKCertificateUsage(cert *x509.Certificate) bool {
	return slices.ContainsFunc(cert.UnknownExtKeyUsage, OIDEKCertificate.Equal)
}
