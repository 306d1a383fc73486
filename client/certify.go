package client

import (
	"context"
	"crypto"
	"fmt"

	"github.com/google/go-tpm/tpm2"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/verify"
)

// CertifyResult is a TPM2_Certify attestation of a key, signed by the AIK.
// The client parses it but does not check it: verify.VerifyCertify does.
type CertifyResult struct {
	// Public is the parsed public area of the certified key.
	Public *tpm2.TPMTPublic
	// Name is the certified key's TPM Name computed from Public: nameAlg
	// followed by the digest, without size prefix.
	Name []byte
	// Key is the certified public key as a *rsa.PublicKey or
	// *ecdsa.PublicKey, or nil when the object is not an RSA or ECC key.
	Key crypto.PublicKey
	// Signature is the AIK's parsed signature over the attestation.
	Signature *tpm2.TPMTSignature
	// Attest is the parsed attestation.
	Attest *tpm2.TPMSAttest
	// Response is the agent's response, with the TPMT_PUBLIC,
	// TPMT_SIGNATURE and TPMS_ATTEST bytes that a verifier checks.
	Response *vcom.TpmResponseCertify
}

// Certify has the host's AIK certify the key at handle with TPM2_Certify.
// qualifyingData, usually a verifier's nonce, goes into the attestation's
// extraData so that the attestation cannot be replayed. It may be empty,
// and the TPM rejects it when it is longer than a TPM2B_DATA, whose size
// depends on the largest digest that the TPM implements.
func (c *Client) Certify(ctx context.Context, handle uint32, qualifyingData []byte) (*CertifyResult, error) {
	const op = "certifykey"
	rsp := &vcom.TpmResponseCertify{}
	req := &vcom.TpmRequestCertify{Index: handle, QualifyingData: qualifyingData}
	if err := c.call(ctx, op, handle, vcom.PathCertifyKey, req, rsp); err != nil {
		return nil, err
	}

	result, err := parseCertify(rsp)
	if err != nil {
		return nil, fmt.Errorf("%s 0x%08x: %w: %w", op, handle, ErrInvalidResponse, err)
	}
	return result, nil
}

func parseCertify(rsp *vcom.TpmResponseCertify) (*CertifyResult, error) {
	public, err := verify.ParsePublic(rsp.GetPublic())
	if err != nil {
		return nil, fmt.Errorf("public: %w", err)
	}
	sig, err := verify.ParseSignature(rsp.GetSig())
	if err != nil {
		return nil, fmt.Errorf("sig: %w", err)
	}
	attest, err := verify.ParseAttest(rsp.GetAttest())
	if err != nil {
		return nil, fmt.Errorf("attest: %w", err)
	}

	name, err := verify.Name(public)
	if err != nil {
		return nil, fmt.Errorf("public: %w", err)
	}
	var key crypto.PublicKey
	if public.Type == tpm2.TPMAlgRSA || public.Type == tpm2.TPMAlgECC {
		key, err = verify.PublicKey(public)
		if err != nil {
			return nil, fmt.Errorf("public: %w", err)
		}
	}

	return &CertifyResult{
		Public:    public,
		Name:      name,
		Key:       key,
		Signature: sig,
		Attest:    attest,
		Response:  rsp,
	}, nil
}
