package provision

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"time"
)

// CAKeyBits is the size of the RSA key of a CA that NewCA generates. A
// 4096-bit key makes a 512-byte signature, so an EK certificate stays larger
// than the 1024-byte NV buffer of the reference simulator and of swtpm, and
// readers of the certificate must read it in chunks.
const CAKeyBits = 4096

// caValidity is how long a CA from NewCA and the certificates it issues stay
// valid. A cached swtpm state keeps its certificates for that long.
const caValidity = 20 * 365 * 24 * time.Hour

// Object identifiers of the TCG EK Credential Profile. swtpm_cert 0.7 of
// swtpm-tools writes the same attributes and extended key usage.
var (
	oidTPMManufacturer  = asn1.ObjectIdentifier{2, 23, 133, 2, 1}
	oidTPMModel         = asn1.ObjectIdentifier{2, 23, 133, 2, 2}
	oidTPMVersion       = asn1.ObjectIdentifier{2, 23, 133, 2, 3}
	oidTPMSpecification = asn1.ObjectIdentifier{2, 23, 133, 2, 16}
	oidEKCertificate    = asn1.ObjectIdentifier{2, 23, 133, 8, 1}

	oidSubjectAltName             = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidSubjectDirectoryAttributes = asn1.ObjectIdentifier{2, 5, 29, 9}
)

// CA is a certificate authority that issues EK and device certificates.
type CA struct {
	// Certificate is the self-signed CA certificate.
	Certificate *x509.Certificate
	// Key is the CA's private key.
	Key crypto.Signer
}

// TPMInfo describes a TPM as an EK certificate names it: the TPM
// manufacturer, model and firmware version go into the subjectAltName, and
// the TPM specification into the subjectDirectoryAttributes.
type TPMInfo struct {
	// Manufacturer is "id:" and the 4-byte TPM_PT_MANUFACTURER in 8
	// uppercase hexadecimal digits, for example "id:49424D00".
	Manufacturer string
	// Model is the TPM model, for example the vendor string.
	Model string
	// Version is "id:" and the firmware version in hexadecimal digits.
	Version string
	// SpecFamily is the TPM specification family, "2.0".
	SpecFamily string
	// SpecLevel and SpecRevision are TPM_PT_LEVEL and TPM_PT_REVISION, for
	// example 0 and 164 for revision 1.64.
	SpecLevel    int
	SpecRevision int
}

// NewCA generates an RSA CA key of CAKeyBits bits and a self-signed CA
// certificate for it, valid from an hour ago for 20 years. The random reader
// is the source of the serial number, and nil means crypto/rand. Since Go
// 1.26, crypto/rsa generates keys from crypto/rand whatever the reader.
func NewCA(random io.Reader) (*CA, error) {
	random = orCryptoRand(random)

	key, err := rsa.GenerateKey(random, CAKeyBits)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}

	serial, err := newSerialNumber(random)
	if err != nil {
		return nil, err
	}

	now := time.Now()
	template := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Organization:       []string{"vcomlink"},
			OrganizationalUnit: []string{"TPM provisioning"},
			CommonName:         "vcomlink EK and device CA",
		},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}

	der, err := x509.CreateCertificate(random, template, template, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}

	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}

	return &CA{Certificate: cert, Key: key}, nil
}

// IssueEKCertificate issues an EK certificate for ekPublic in the shape of
// the TCG EK Credential Profile. Its subject is empty and a critical
// subjectAltName names the TPM in a directoryName. The subjectDirectoryAttributes
// name the TPM specification, the key usage is keyEncipherment, and the
// extended key usage is tcg-kp-EKCertificate.
//
// crypto/x509 leaves a subjectAltName that contains only a directoryName in
// UnhandledCriticalExtensions, so Certificate.Verify fails on such a
// certificate until the caller removes that entry, as it must for the EK
// certificates of hardware TPMs. Verify also needs KeyUsages set to
// x509.ExtKeyUsageAny, because of the TCG extended key usage.
//
// The random reader is the source of the serial number, and nil means
// crypto/rand.
func (ca *CA) IssueEKCertificate(random io.Reader, ekPublic crypto.PublicKey, info TPMInfo) (*x509.Certificate, error) {
	random = orCryptoRand(random)

	subjectAltName, err := tpmSubjectAltName(info)
	if err != nil {
		return nil, err
	}

	directoryAttributes, err := tpmSpecificationAttribute(info)
	if err != nil {
		return nil, err
	}

	serial, err := newSerialNumber(random)
	if err != nil {
		return nil, err
	}

	template := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              ca.Certificate.NotAfter,
		KeyUsage:              x509.KeyUsageKeyEncipherment,
		UnknownExtKeyUsage:    []asn1.ObjectIdentifier{oidEKCertificate},
		BasicConstraintsValid: true,
		ExtraExtensions: []pkix.Extension{
			{Id: oidSubjectAltName, Critical: true, Value: subjectAltName},
			{Id: oidSubjectDirectoryAttributes, Value: directoryAttributes},
		},
	}

	return ca.issue(random, template, ekPublic, "EK")
}

// IssueDeviceCertificate issues a certificate for the device identity key
// devicePublic. Its subject common name is "vcomlink device" and the first
// 8 bytes of the SHA-256 digest of the key's SubjectPublicKeyInfo, in
// hexadecimal. The random reader is the source of the serial number, and
// nil means crypto/rand.
func (ca *CA) IssueDeviceCertificate(random io.Reader, devicePublic crypto.PublicKey) (*x509.Certificate, error) {
	random = orCryptoRand(random)

	publicDER, err := x509.MarshalPKIXPublicKey(devicePublic)
	if err != nil {
		return nil, fmt.Errorf("marshal device public key: %w", err)
	}
	digest := sha256.Sum256(publicDER)

	serial, err := newSerialNumber(random)
	if err != nil {
		return nil, err
	}

	template := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Organization: []string{"vcomlink"},
			CommonName:   "vcomlink device " + hex.EncodeToString(digest[:8]),
		},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              ca.Certificate.NotAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}

	return ca.issue(random, template, devicePublic, "device")
}

// issue signs template for public with the CA key and parses the result.
func (ca *CA) issue(random io.Reader, template *x509.Certificate, public crypto.PublicKey, kind string) (*x509.Certificate, error) {
	if ca == nil || ca.Certificate == nil || ca.Key == nil {
		return nil, errors.New("issue " + kind + " certificate: CA certificate or key is missing")
	}

	der, err := x509.CreateCertificate(random, template, ca.Certificate, public, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("create %s certificate: %w", kind, err)
	}

	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse %s certificate: %w", kind, err)
	}
	return cert, nil
}

// tpmSubjectAltName encodes GeneralNames with one directoryName: an RDN
// sequence of TPM manufacturer, model and version, one attribute to each
// RDN, as UTF8String values.
func tpmSubjectAltName(info TPMInfo) ([]byte, error) {
	if info.Manufacturer == "" || info.Model == "" || info.Version == "" {
		return nil, fmt.Errorf("EK certificate subjectAltName: TPM manufacturer %q, model %q and version %q must all be set",
			info.Manufacturer, info.Model, info.Version)
	}

	attribute := func(oid asn1.ObjectIdentifier, value string) []pkix.AttributeTypeAndValue {
		return []pkix.AttributeTypeAndValue{{Type: oid, Value: utf8String(value)}}
	}
	name := pkix.RDNSequence{
		attribute(oidTPMManufacturer, info.Manufacturer),
		attribute(oidTPMModel, info.Model),
		attribute(oidTPMVersion, info.Version),
	}

	nameDER, err := asn1.Marshal(name)
	if err != nil {
		return nil, fmt.Errorf("marshal EK certificate directoryName: %w", err)
	}

	// GeneralName directoryName is [4] and explicit, because Name is a
	// CHOICE.
	directoryName := asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: nameDER}
	der, err := asn1.Marshal([]asn1.RawValue{directoryName})
	if err != nil {
		return nil, fmt.Errorf("marshal EK certificate subjectAltName: %w", err)
	}
	return der, nil
}

// tpmSpecification is the TCG TPMSpecification attribute value.
type tpmSpecification struct {
	Family   string `asn1:"utf8"`
	Level    int
	Revision int
}

// directoryAttribute is an X.501 Attribute with a set of values.
type directoryAttribute struct {
	Type   asn1.ObjectIdentifier
	Values []tpmSpecification `asn1:"set"`
}

// tpmSpecificationAttribute encodes subjectDirectoryAttributes with the one
// tcg-at-tpmSpecification attribute.
func tpmSpecificationAttribute(info TPMInfo) ([]byte, error) {
	if info.SpecFamily == "" {
		return nil, errors.New("EK certificate subjectDirectoryAttributes: TPM specification family is empty")
	}

	attributes := []directoryAttribute{{
		Type: oidTPMSpecification,
		Values: []tpmSpecification{{
			Family:   info.SpecFamily,
			Level:    info.SpecLevel,
			Revision: info.SpecRevision,
		}},
	}}

	der, err := asn1.Marshal(attributes)
	if err != nil {
		return nil, fmt.Errorf("marshal EK certificate subjectDirectoryAttributes: %w", err)
	}
	return der, nil
}

// utf8String is an ASN.1 UTF8String, which encoding/asn1 writes for a Go
// string only with a field tag.
func utf8String(s string) asn1.RawValue {
	return asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagUTF8String, Bytes: []byte(s)}
}

// newSerialNumber returns a random certificate serial number from 1 to
// 2^127.
func newSerialNumber(random io.Reader) (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 127)
	serial, err := rand.Int(random, limit)
	if err != nil {
		return nil, fmt.Errorf("generate certificate serial number: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil
}

// orCryptoRand returns random, or crypto/rand's reader when random is nil.
func orCryptoRand(random io.Reader) io.Reader {
	if random == nil {
		return rand.Reader
	}
	return random
}
