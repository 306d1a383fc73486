package verify

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// unmarshalExact parses b as a T and rejects input that the parsed value does
// not reproduce byte for byte: trailing bytes, and encodings that go-tpm would
// marshal differently. A structure accepted here therefore hashes the same as
// the bytes that were signed or named.
func unmarshalExact[T tpm2.Marshallable, P interface {
	*T
	tpm2.Unmarshallable
}](structure string, b []byte) (*T, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%s is empty", structure)
	}

	value, err := tpm2.Unmarshal[T, P](b)
	if err != nil {
		return nil, fmt.Errorf("invalid %s: %w", structure, err)
	}

	encoded, err := marshal(*value)
	if err != nil {
		return nil, fmt.Errorf("invalid %s: %w", structure, err)
	}
	if len(encoded) < len(b) {
		return nil, fmt.Errorf("invalid %s: %d trailing bytes after the %d-byte structure",
			structure, len(b)-len(encoded), len(encoded))
	}
	if !bytes.Equal(encoded, b) {
		return nil, fmt.Errorf("invalid %s: non-canonical encoding", structure)
	}
	return value, nil
}

// marshal calls tpm2.Marshal, which panics when it cannot marshal a value,
// and returns that panic as an error.
func marshal(v tpm2.Marshallable) (b []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	return tpm2.Marshal(v), nil
}

// ParsePublic parses a TPMT_PUBLIC as the vcomlink protocol carries it,
// without the TPM2B_PUBLIC size prefix. Trailing bytes are an error.
func ParsePublic(b []byte) (*tpm2.TPMTPublic, error) {
	return unmarshalExact[tpm2.TPMTPublic]("TPMT_PUBLIC", b)
}

// ParseSignature parses a TPMT_SIGNATURE, as TpmResponseCertify.sig carries
// it. Trailing bytes are an error.
func ParseSignature(b []byte) (*tpm2.TPMTSignature, error) {
	return unmarshalExact[tpm2.TPMTSignature]("TPMT_SIGNATURE", b)
}

// ParseAttest parses a TPMS_ATTEST, the contents of a TPM2B_ATTEST without
// its size prefix, as TpmResponseCertify.attest carries it. Trailing bytes
// are an error. ParseAttest does not check the magic value or the type.
func ParseAttest(b []byte) (*tpm2.TPMSAttest, error) {
	return unmarshalExact[tpm2.TPMSAttest]("TPMS_ATTEST", b)
}

// ParseName parses a TPM2B_NAME with its 2-byte size prefix, as
// TpmResponseActivateCredParams.aik_name carries it, and returns the name:
// the nameAlg TPM_ALG_ID followed by the digest of the public area.
// The size prefix must match the length of b, and the digest length must
// match nameAlg. Names of handles (4 bytes, no digest) are rejected because
// only objects take part in credential activation and certification.
func ParseName(b []byte) ([]byte, error) {
	if len(b) < 2 {
		return nil, fmt.Errorf("invalid TPM2B_NAME: %d bytes, shorter than the 2-byte size prefix", len(b))
	}

	size := int(binary.BigEndian.Uint16(b))
	name := b[2:]
	if size != len(name) {
		return nil, fmt.Errorf("invalid TPM2B_NAME: size prefix is %d but %d bytes follow", size, len(name))
	}
	if err := checkObjectName(name); err != nil {
		return nil, fmt.Errorf("invalid TPM2B_NAME: %w", err)
	}
	return name, nil
}

// checkObjectName checks that name is a nameAlg followed by a digest of the
// length that nameAlg produces.
func checkObjectName(name []byte) error {
	if len(name) < 2 {
		return fmt.Errorf("name is %d bytes, too short for a nameAlg", len(name))
	}

	alg := tpm2.TPMAlgID(binary.BigEndian.Uint16(name))
	hash, err := hashByID(alg)
	if err != nil {
		return fmt.Errorf("name: %w", err)
	}
	if got := len(name) - 2; got != hash.Size() {
		return fmt.Errorf("name has a %d-byte digest but its nameAlg %s produces %d bytes",
			got, algName(alg), hash.Size())
	}
	return nil
}

// Name computes the TPM Name of a public area: its nameAlg as a big-endian
// TPM_ALG_ID followed by the nameAlg digest of the marshalled TPMT_PUBLIC.
// The result has no size prefix.
func Name(pub *tpm2.TPMTPublic) ([]byte, error) {
	if pub == nil {
		return nil, fmt.Errorf("public area is missing")
	}

	if _, err := hashByID(pub.NameAlg); err != nil {
		return nil, fmt.Errorf("nameAlg: %w", err)
	}

	name, err := tpm2.ObjectName(pub)
	if err != nil {
		return nil, fmt.Errorf("computing the name of the public area: %w", err)
	}
	return name.Buffer, nil
}
