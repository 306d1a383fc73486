package client

import (
	"context"
	"crypto"
	"encoding/binary"
	"fmt"

	"github.com/google/go-tpm/tpm2"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/verify"
)

// GetPubResult is the public area of a TPM object.
type GetPubResult struct {
	// Public is the parsed public area.
	Public *tpm2.TPMTPublic
	// Bytes is the TPMT_PUBLIC as the agent sent it, without size prefix.
	Bytes []byte
	// Name is the object's TPM Name computed from Bytes: nameAlg followed
	// by the digest, without size prefix.
	Name []byte
	// Key is the public key as a *rsa.PublicKey or *ecdsa.PublicKey, or
	// nil when the object is not an RSA or ECC key.
	Key crypto.PublicKey
	// Response is the agent's response.
	Response *vcom.TpmResponseGetPub
}

// GetPub reads the public area of the object at handle with TPM2_ReadPublic.
//
// It checks that the algorithm and attributes fields of the response match
// the public area, and that an RSA or ECC public key is valid.
func (c *Client) GetPub(ctx context.Context, handle uint32) (*GetPubResult, error) {
	const op = "getpub"
	rsp := &vcom.TpmResponseGetPub{}
	req := &vcom.TpmRequestGetPub{Index: handle}
	if err := c.call(ctx, op, handle, vcom.PathGetPub, req, rsp); err != nil {
		return nil, err
	}

	result, err := parseGetPub(rsp)
	if err != nil {
		return nil, fmt.Errorf("%s 0x%08x: %w: %w", op, handle, ErrInvalidResponse, err)
	}
	return result, nil
}

func parseGetPub(rsp *vcom.TpmResponseGetPub) (*GetPubResult, error) {
	raw := rsp.GetPublic()
	public, err := verify.ParsePublic(raw)
	if err != nil {
		return nil, fmt.Errorf("public: %w", err)
	}

	if got := tpm2.TPMAlgID(rsp.GetAlgorithm()); got != public.Type {
		return nil, fmt.Errorf("algorithm is 0x%04x but the public area is of type 0x%04x",
			uint32(got), uint16(public.Type))
	}
	// TPMT_PUBLIC begins with type (2 bytes) and nameAlg (2 bytes), then
	// the 4 bytes of TPMA_OBJECT. ParsePublic has checked the length.
	if attrs := binary.BigEndian.Uint32(raw[4:8]); rsp.GetAttributes() != attrs {
		return nil, fmt.Errorf("attributes are 0x%08x but the public area has 0x%08x",
			rsp.GetAttributes(), attrs)
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

	return &GetPubResult{Public: public, Bytes: raw, Name: name, Key: key, Response: rsp}, nil
}
