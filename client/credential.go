package client

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"

	"github.com/google/go-tpm/tpm2"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/verify"
)

// ActivateCredParamsResult contains the inputs of verify.MakeCredential for
// an AIK: the EK's public area, and the AIK's public area and Name.
type ActivateCredParamsResult struct {
	// EK is the parsed public area of the endorsement key.
	EK *tpm2.TPMTPublic
	// AIK is the parsed public area of the attestation key.
	AIK *tpm2.TPMTPublic
	// AIKName is the AIK's TPM2B_NAME with its size prefix, as
	// verify.MakeCredential takes it.
	AIKName []byte
	// Response is the agent's response. Its ek and aik_pub fields are the
	// TPMT_PUBLIC bytes, without size prefix.
	Response *vcom.TpmResponseActivateCredParams
}

// ActivateCredParams returns the EK's public area, and the public area and
// Name of the key at handle, which must be a restricted signing key.
//
// It checks that the Name is that of the AIK's public area, so that a
// credential made for it can be activated.
func (c *Client) ActivateCredParams(ctx context.Context, handle uint32) (*ActivateCredParamsResult, error) {
	const op = "activatecredparams"
	rsp := &vcom.TpmResponseActivateCredParams{}
	req := &vcom.TpmRequestActivateCredParams{Index: handle}
	if err := c.call(ctx, op, handle, vcom.PathActivateCredParams, req, rsp); err != nil {
		return nil, err
	}

	result, err := parseActivateCredParams(rsp)
	if err != nil {
		return nil, fmt.Errorf("%s 0x%08x: %w: %w", op, handle, ErrInvalidResponse, err)
	}
	return result, nil
}

func parseActivateCredParams(rsp *vcom.TpmResponseActivateCredParams) (*ActivateCredParamsResult, error) {
	ek, err := verify.ParsePublic(rsp.GetEk())
	if err != nil {
		return nil, fmt.Errorf("ek: %w", err)
	}
	aik, err := verify.ParsePublic(rsp.GetAikPub())
	if err != nil {
		return nil, fmt.Errorf("aik_pub: %w", err)
	}

	name, err := verify.ParseName(rsp.GetAikName())
	if err != nil {
		return nil, fmt.Errorf("aik_name: %w", err)
	}
	want, err := verify.Name(aik)
	if err != nil {
		return nil, fmt.Errorf("aik_pub: %w", err)
	}
	if !bytes.Equal(name, want) {
		return nil, fmt.Errorf("aik_name is 0x%x but the name of aik_pub is 0x%x", name, want)
	}

	return &ActivateCredParamsResult{EK: ek, AIK: aik, AIKName: rsp.GetAikName(), Response: rsp}, nil
}

// ActivateCredentialResult is a credential that the TPM recovered.
type ActivateCredentialResult struct {
	// Secret is the recovered credential value.
	Secret []byte
	// Response is the agent's response.
	Response *vcom.TpmResponseActivatedCred
}

// ActivateCredential has the TPM recover a credential with
// TPM2_ActivateCredential, with the key at aik as the activate handle and
// the host's EK as the key handle.
//
// cred is a TPM2B_ID_OBJECT and secret a TPM2B_ENCRYPTED_SECRET, each with
// its 2-byte size prefix, as verify.MakeCredential returns them. A prefix
// that does not match the length is rejected before anything is sent.
func (c *Client) ActivateCredential(ctx context.Context, aik uint32, cred, secret []byte) (*ActivateCredentialResult, error) {
	const op = "activatecred"
	if err := checkSizePrefix("TPM2B_ID_OBJECT", cred); err != nil {
		return nil, fmt.Errorf("%s 0x%08x: cred: %w", op, aik, err)
	}
	if err := checkSizePrefix("TPM2B_ENCRYPTED_SECRET", secret); err != nil {
		return nil, fmt.Errorf("%s 0x%08x: secret: %w", op, aik, err)
	}

	rsp := &vcom.TpmResponseActivatedCred{}
	req := &vcom.TpmRequestGeneratedCred{Cred: cred, Secret: secret, AikIndex: aik}
	if err := c.call(ctx, op, aik, vcom.PathActivateCredential, req, rsp); err != nil {
		return nil, err
	}
	return &ActivateCredentialResult{Secret: rsp.GetSecret(), Response: rsp}, nil
}

// checkSizePrefix checks that b is a TPM2B whose 2-byte size prefix equals
// the length of what follows, and that it is not empty.
func checkSizePrefix(structure string, b []byte) error {
	if len(b) < 2 {
		return fmt.Errorf("%s is %d bytes, shorter than its 2-byte size prefix", structure, len(b))
	}
	if size := int(binary.BigEndian.Uint16(b)); size != len(b)-2 {
		return fmt.Errorf("%s size prefix is %d but %d bytes follow", structure, size, len(b)-2)
	}
	if len(b) == 2 {
		return fmt.Errorf("%s is empty", structure)
	}
	return nil
}
