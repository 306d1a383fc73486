package main

import (
	"encoding/binary"
	"fmt"

	"github.com/google/go-tpm/tpm2"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/verify"
)

// The raw output of activatecredparams and certify carries several TPM
// structures, so each is written in a form that delimits itself: a TPM2B
// with its 2-byte size prefix, or a TPMT_SIGNATURE, whose fields give its
// length.

// appendTPM2B appends b with a 2-byte big-endian size prefix.
func appendTPM2B(out, b []byte) []byte {
	out = binary.BigEndian.AppendUint16(out, uint16(len(b)))
	return append(out, b...)
}

// marshalActivateCredParamsRaw writes the EK's TPM2B_PUBLIC, the key's
// TPM2B_PUBLIC and its TPM2B_NAME, which aik_name carries with its prefix.
func marshalActivateCredParamsRaw(rsp *vcom.TpmResponseActivateCredParams) []byte {
	out := appendTPM2B(nil, rsp.GetEk())
	out = appendTPM2B(out, rsp.GetAikPub())
	return append(out, rsp.GetAikName()...)
}

// marshalCertifyRaw writes the certified key's TPM2B_PUBLIC, the
// TPMT_SIGNATURE and the TPM2B_ATTEST, in the order of the response's
// fields.
func marshalCertifyRaw(rsp *vcom.TpmResponseCertify) []byte {
	out := appendTPM2B(nil, rsp.GetPublic())
	out = append(out, rsp.GetSig()...)
	return appendTPM2B(out, rsp.GetAttest())
}

// parseCertifyRaw reads what marshalCertifyRaw writes.
func parseCertifyRaw(b []byte) (*vcom.TpmResponseCertify, error) {
	public, rest, err := cutTPM2B("TPM2B_PUBLIC", b)
	if err != nil {
		return nil, err
	}

	// A TPMT_SIGNATURE has no size prefix, and go-tpm's Unmarshal stops at
	// its end, so its encoded length is the offset of the TPM2B_ATTEST.
	sig, err := tpm2.Unmarshal[tpm2.TPMTSignature](rest)
	if err != nil {
		return nil, fmt.Errorf("invalid TPMT_SIGNATURE: %w", err)
	}
	length, err := encodedLength(sig)
	if err != nil {
		return nil, fmt.Errorf("invalid TPMT_SIGNATURE: %w", err)
	}
	sigBytes := rest[:length]
	if _, err := verify.ParseSignature(sigBytes); err != nil {
		return nil, err
	}

	attest, rest, err := cutTPM2B("TPM2B_ATTEST", rest[len(sigBytes):])
	if err != nil {
		return nil, err
	}
	if len(rest) > 0 {
		return nil, fmt.Errorf("%d trailing bytes after the TPM2B_ATTEST", len(rest))
	}
	return &vcom.TpmResponseCertify{Public: public, Sig: sigBytes, Attest: attest}, nil
}

// encodedLength returns the length of the encoding of sig. tpm2.Marshal
// panics on a value that it cannot encode, and encodedLength returns that
// panic as an error.
func encodedLength(sig *tpm2.TPMTSignature) (length int, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	return len(tpm2.Marshal(sig)), nil
}

// cutTPM2B returns the content of the TPM2B at the start of b and the bytes
// after it.
func cutTPM2B(structure string, b []byte) (content, rest []byte, err error) {
	if len(b) < 2 {
		return nil, nil, fmt.Errorf("%s is missing", structure)
	}
	size := int(binary.BigEndian.Uint16(b))
	if size > len(b)-2 {
		return nil, nil, fmt.Errorf("%s size prefix is %d but only %d bytes follow", structure, size, len(b)-2)
	}
	return b[2 : 2+size], b[2+size:], nil
}
