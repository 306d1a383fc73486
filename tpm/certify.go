package tpm

import (
	"context"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/vcomlink/vcomlink/api/vcom"
)

// MaxQualifyingData is the longest nonce certifykey accepts, in bytes: the
// size of a SHA-512 digest, the largest TPM2B_DATA a TPM takes.
const MaxQualifyingData = 64

// Certify has the attestation key (Config.AIK) certify key h, with nonce as
// the qualifying data that the TPM puts into the attestation. It returns h's
// public area, the TPMT_SIGNATURE and the TPMS_ATTEST.
func (s *Service) Certify(ctx context.Context, peer string, h uint32, nonce []byte) (*vcom.TpmResponseCertify, error) {
	const op = "certifykey"
	if err := CheckPersistent(op, "index", h); err != nil {
		return nil, err
	}
	if len(nonce) > MaxQualifyingData {
		return nil, newError(op, h, ErrInvalid, "qualifying_data is %d bytes; the maximum is %d", len(nonce), MaxQualifyingData)
	}

	var rsp *vcom.TpmResponseCertify
	err := s.run(ctx, peer, op, h, func(t transport.TPM) error {
		key, err := readPublic(t, op, h)
		if err != nil {
			return err
		}
		if key.public.ObjectAttributes.AdminWithPolicy {
			return newError(op, h, ErrInvalid, "the key requires a policy session for its admin role (adminWithPolicy), which the agent cannot satisfy, so it cannot be certified")
		}
		object, err := s.authHandle(op, h, key.name, key.public.ObjectAttributes.NoDA)
		if err != nil {
			return err
		}

		aik, err := readPublic(t, op, s.cfg.AIK)
		if err != nil {
			return hostKeyError(err, "attestation key", s.cfg.AIK)
		}
		if !aik.public.ObjectAttributes.SignEncrypt {
			return hostKeyError(newError(op, s.cfg.AIK, ErrTPM, "the key does not have the sign attribute"), "attestation key", s.cfg.AIK)
		}
		scheme, err := signingScheme(op, s.cfg.AIK, aik.public)
		if err != nil {
			return hostKeyError(err, "attestation key", s.cfg.AIK)
		}
		signer, err := s.authHandle(op, s.cfg.AIK, aik.name, aik.public.ObjectAttributes.NoDA)
		if err != nil {
			return hostKeyError(err, "attestation key", s.cfg.AIK)
		}

		certified, err := tpm2.Certify{
			ObjectHandle:   object,
			SignHandle:     signer,
			QualifyingData: tpm2.TPM2BData{Buffer: nonce},
			InScheme:       scheme,
		}.Execute(t)
		if err != nil {
			return tpmError(op, h, "Certify", err)
		}
		rsp = &vcom.TpmResponseCertify{
			Public: key.raw,
			Sig:    tpm2.Marshal(certified.Signature),
			Attest: certified.CertifyInfo.Bytes(),
		}
		return nil
	})
	return rsp, err
}
