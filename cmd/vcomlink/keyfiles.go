package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/google/go-tpm/tpm2"

	"github.com/vcomlink/vcomlink/client"
	"github.com/vcomlink/vcomlink/verify"
)

// publicKeyForms lists the files that readPublicFile accepts, for help
// texts.
const publicKeyForms = `  - a TPMT_PUBLIC, as getpub --format raw writes it,
  - a TPM2B_PUBLIC, as tpm2_readpublic -o writes it,
  - a PEM public key or a PEM certificate.`

// publicFile is a public key read from a file.
type publicFile struct {
	// public is the TPM public area, or nil when the file is a PEM public
	// key or certificate, which carries no TPM attributes.
	public *tpm2.TPMTPublic
	// key is an *rsa.PublicKey or *ecdsa.PublicKey.
	key crypto.PublicKey
}

// readPublicFile reads the public key file that flag names: one of
// publicKeyForms. A file in none of these forms is a usage error.
func readPublicFile(flag, path string) (*publicFile, error) {
	data, err := readInput(flag, path)
	if err != nil {
		return nil, err
	}

	if block, _ := pem.Decode(data); block != nil {
		key, err := parsePEMPublicKey(block)
		if err != nil {
			return nil, usagef("--%s: %s: %v", flag, path, err)
		}
		return &publicFile{key: key}, nil
	}

	public, err := verify.ParsePublic(data)
	structure := "TPMT_PUBLIC"
	if err != nil && len(data) >= 2 && int(binary.BigEndian.Uint16(data)) == len(data)-2 {
		public, err = verify.ParsePublic(data[2:])
		structure = "TPM2B_PUBLIC"
	}
	if err != nil {
		return nil, usagef("--%s: %s is not a public key file: expected a TPMT_PUBLIC (as getpub --format raw writes it), "+
			"a TPM2B_PUBLIC (as tpm2_readpublic -o writes it) or a PEM public key or certificate, but %s",
			flag, path, publicParseDetail(structure, len(data), err))
	}
	key, err := verify.PublicKey(public)
	if err != nil {
		return nil, usagef("--%s: %s: %v", flag, path, err)
	}
	return &publicFile{public: public, key: key}, nil
}

// publicParseDetail describes in a few words why a file of size bytes did
// not parse as structure, without the text of go-tpm's decoder, which
// names the Go types it fills.
func publicParseDetail(structure string, size int, err error) string {
	switch {
	case size == 0:
		return "the file is empty"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Sprintf("the file ends inside a %s, after %d bytes", structure, size)
	case strings.Contains(err.Error(), "trailing bytes"):
		// verify's own message, such as "invalid TPMT_PUBLIC: 3 trailing
		// bytes after the 280-byte structure".
		_, detail, _ := strings.Cut(err.Error(), ": ")
		return "it has " + detail
	}
	return fmt.Sprintf("its bytes are not a valid %s", structure)
}

// parsePEMPublicKey returns the public key of a PEM block: a PUBLIC KEY
// (SubjectPublicKeyInfo), an RSA PUBLIC KEY (PKCS #1) or a CERTIFICATE.
func parsePEMPublicKey(block *pem.Block) (crypto.PublicKey, error) {
	var key any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		cert, err = x509.ParseCertificate(block.Bytes)
		if err == nil {
			key = cert.PublicKey
		}
	default:
		return nil, usagef("PEM block is %q, expected PUBLIC KEY or CERTIFICATE", block.Type)
	}
	if err != nil {
		return nil, err
	}

	switch key.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey:
	default:
		return nil, usagef("unsupported public key type %T, expected RSA or ECDSA", key)
	}
	return key, nil
}

// readCertificates reads the certificate file that flag names: PEM with
// one or more CERTIFICATE blocks, or one DER certificate, which may be
// followed by the padding of an NV index as readnv --format raw writes it.
func readCertificates(flag, path string) ([]*x509.Certificate, error) {
	data, err := readInput(flag, path)
	if err != nil {
		return nil, err
	}

	if block, _ := pem.Decode(data); block == nil {
		cert, err := client.ParseCertificate(data)
		var certErr *client.CertificateError
		if errors.As(err, &certErr) {
			err = certErr.Err // without the words about NV data
		}
		if err != nil {
			return nil, usagef("--%s: %s is not a PEM or DER certificate: %v", flag, path, err)
		}
		return []*x509.Certificate{cert}, nil
	}

	var certs []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, usagef("--%s: %s contains a PEM block %q, expected only CERTIFICATE", flag, path, block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, usagef("--%s: %s: %v", flag, path, err)
		}
		certs = append(certs, cert)
	}
	return certs, nil
}
