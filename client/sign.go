package client

import (
	"context"
	"crypto"
	"fmt"

	"github.com/google/go-tpm/tpm2"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/verify"
)

// SignResult is a signature made by a TPM key.
type SignResult struct {
	// Scheme is the signature scheme: tpm2.TPMAlgRSASSA, TPMAlgRSAPSS or
	// TPMAlgECDSA.
	Scheme tpm2.TPMAlgID
	// Hash is the hash that the signature is over.
	Hash crypto.Hash
	// Signature is the signature as OpenSSL and Go's crypto packages take
	// it: the RSA signature bytes, or for ECDSA the DER ECDSA-Sig-Value
	// SEQUENCE of r and s.
	Signature []byte
	// TPMSignature is the signature as the TPM returned it.
	TPMSignature *tpm2.TPMTSignature
	// Response is the agent's response.
	Response *vcom.TpmResponseSign
}

// Sign signs data with the key at handle, which must have the sign
// attribute.
//
// For a restricted signing key, such as the AIK, data is the message, which
// the TPM hashes with the key's scheme hash. The TPM rejects such data when
// it begins with TPM_GENERATED_VALUE. For an unrestricted key, data is the
// digest and its length must match the scheme's hash. The request,
// and so data, is limited to vcom.MaxBodySize bytes.
//
// verify.VerifySignature checks the result.
func (c *Client) Sign(ctx context.Context, handle uint32, data []byte) (*SignResult, error) {
	const op = "sign"
	rsp := &vcom.TpmResponseSign{}
	req := &vcom.TpmRequestSign{Index: handle, Data: data}
	if err := c.call(ctx, op, handle, vcom.PathSign, req, rsp); err != nil {
		return nil, err
	}

	result, err := parseSign(rsp)
	if err != nil {
		return nil, fmt.Errorf("%s 0x%08x: %w: %w", op, handle, ErrInvalidResponse, err)
	}
	return result, nil
}

func parseSign(rsp *vcom.TpmResponseSign) (*SignResult, error) {
	sig, err := verify.SignatureFromResponse(rsp)
	if err != nil {
		return nil, err
	}

	hashName := rsp.GetRsaHash()
	if sig.SigAlg == tpm2.TPMAlgECDSA {
		hashName = rsp.GetEccHash()
	}
	_, hash, err := verify.HashByName(hashName)
	if err != nil {
		return nil, err
	}

	encoded, err := verify.EncodeSignature(sig)
	if err != nil {
		return nil, err
	}

	return &SignResult{
		Scheme:       sig.SigAlg,
		Hash:         hash,
		Signature:    encoded,
		TPMSignature: sig,
		Response:     rsp,
	}, nil
}
