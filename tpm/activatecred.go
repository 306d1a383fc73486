package tpm

import (
	"context"
	"encoding/binary"
	"errors"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/vcomlink/vcomlink/api/vcom"
)

// ActivateCredParams returns what a verifier needs to make a credential for
// key h: the EK's public area, and h's public area and TPM2B_NAME. Key h must
// be a restricted signing key.
func (s *Service) ActivateCredParams(ctx context.Context, peer string, h uint32) (*vcom.TpmResponseActivateCredParams, error) {
	const op = "activatecredparams"
	if err := CheckPersistent(op, "index", h); err != nil {
		return nil, err
	}

	var rsp *vcom.TpmResponseActivateCredParams
	err := s.run(ctx, peer, op, h, func(t transport.TPM) error {
		ek, err := readPublic(t, op, s.cfg.EK)
		if err != nil {
			return hostKeyError(err, "endorsement key", s.cfg.EK)
		}
		key, err := readPublic(t, op, h)
		if err != nil {
			return err
		}
		attrs := key.public.ObjectAttributes
		if !attrs.Restricted || !attrs.SignEncrypt || attrs.Decrypt {
			return newError(op, h, ErrInvalid, "the key is not a restricted signing key, so no credential can be activated for it; name the attestation key")
		}
		rsp = &vcom.TpmResponseActivateCredParams{
			Ek:      ek.raw,
			AikPub:  key.raw,
			AikName: tpm2.Marshal(key.name),
		}
		return nil
	})
	return rsp, err
}

// ActivateCredential recovers the credential in cred and secret, which a
// verifier made for the EK and key aik. cred is a TPM2B_ID_OBJECT and secret
// a TPM2B_ENCRYPTED_SECRET, each with its size prefix. An EK without
// userWithAuth (the TCG template) is authorised with a policy session that
// runs PolicySecret(TPM_RH_ENDORSEMENT); an EK with userWithAuth with a
// password.
func (s *Service) ActivateCredential(ctx context.Context, peer string, aik uint32, cred, secret []byte) (*vcom.TpmResponseActivatedCred, error) {
	const op = "activatecred"
	if err := CheckPersistent(op, "aik_index", aik); err != nil {
		return nil, err
	}
	credBody, err := unwrap2B(op, aik, "cred", "TPM2B_ID_OBJECT", cred)
	if err != nil {
		return nil, err
	}
	secretBody, err := unwrap2B(op, aik, "secret", "TPM2B_ENCRYPTED_SECRET", secret)
	if err != nil {
		return nil, err
	}
	if len(credBody) > maxIDObject {
		return nil, newError(op, aik, ErrInvalid, "cred is a TPM2B_ID_OBJECT of %d bytes, but a TPMS_ID_OBJECT is at most %d", len(credBody), maxIDObject)
	}
	if len(secretBody) > maxEncryptedSecret {
		return nil, newError(op, aik, ErrInvalid, "secret is a TPM2B_ENCRYPTED_SECRET of %d bytes, but a TPMU_ENCRYPTED_SECRET is at most %d", len(secretBody), maxEncryptedSecret)
	}

	var recovered []byte
	err = s.run(ctx, peer, op, aik, func(t transport.TPM) error {
		key, err := readPublic(t, op, aik)
		if err != nil {
			return err
		}
		if key.public.ObjectAttributes.AdminWithPolicy {
			return newError(op, aik, ErrInvalid, "the key requires a policy session for its admin role (adminWithPolicy), which the agent cannot satisfy")
		}
		activate, err := s.authHandle(op, aik, key.name, key.public.ObjectAttributes.NoDA)
		if err != nil {
			return err
		}

		ek, err := readPublic(t, op, s.cfg.EK)
		if err != nil {
			return hostKeyError(err, "endorsement key", s.cfg.EK)
		}
		ekAuth, closeSession, err := s.ekAuth(t, op, ek)
		if err != nil {
			return err
		}
		defer closeSession()

		rsp, err := tpm2.ActivateCredential{
			ActivateHandle: activate,
			KeyHandle:      ekAuth,
			CredentialBlob: tpm2.TPM2BIDObject{Buffer: credBody},
			Secret:         tpm2.TPM2BEncryptedSecret{Buffer: secretBody},
		}.Execute(t)
		if err != nil {
			return activationError(t, op, aik, err)
		}
		recovered = rsp.CertInfo.Buffer
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &vcom.TpmResponseActivatedCred{Secret: recovered}, nil
}

// ekAuth returns the authorisation for the EK in ActivateCredential's key
// handle (USER role), and a function that flushes the session it started,
// if any.
func (s *Service) ekAuth(t transport.TPM, op string, ek *object) (tpm2.AuthHandle, func(), error) {
	attrs := ek.public.ObjectAttributes
	if attrs.UserWithAuth {
		auth, err := s.authHandle(op, uint32(ek.handle), ek.name, attrs.NoDA)
		return auth, func() {}, err
	}

	// The session's hash must be the EK's name algorithm, the algorithm of
	// its authPolicy digest.
	sess, closeSession, err := tpm2.PolicySession(t, ek.public.NameAlg, 16)
	if err != nil {
		return tpm2.AuthHandle{}, nil, tpmError(op, uint32(ek.handle), "StartAuthSession", err)
	}
	closer := func() {
		if err := closeSession(); err != nil {
			s.log.Error("flushing a TPM policy session failed", "op", op, "session", FormatHandle(uint32(sess.Handle())), "err", err)
		}
	}

	_, err = tpm2.PolicySecret{
		AuthHandle: tpm2.AuthHandle{
			Handle: tpm2.TPMRHEndorsement,
			Name:   tpm2.HandleName(tpm2.TPMRHEndorsement),
			Auth:   tpm2.PasswordAuth(s.cfg.Auth[uint32(tpm2.TPMRHEndorsement)]),
		},
		PolicySession: sess.Handle(),
		NonceTPM:      sess.NonceTPM(),
	}.Execute(t)
	if err != nil {
		closer()
		return tpm2.AuthHandle{}, nil, tpmError(op, uint32(ek.handle), "PolicySecret(TPM_RH_ENDORSEMENT)", err)
	}
	return tpm2.AuthHandle{Handle: ek.handle, Name: ek.name, Auth: sess}, closer, nil
}

// The largest bodies of the TPM2Bs of activatecred that any TPM accepts
// (TPM 2.0 Part 2): a TPMS_ID_OBJECT is two TPM2B_DIGESTs of at most 64
// bytes each, and a TPMU_ENCRYPTED_SECRET is at most an RSA 4096
// ciphertext.
const (
	maxIDObject        = 2 * (2 + 64)
	maxEncryptedSecret = 4096 / 8
)

// unwrap2B checks that b is a TPM2B whose 2-byte size prefix matches the
// length of what follows, and returns what follows. A mismatch is invalid
// input: the agent never truncates or pads.
func unwrap2B(op string, h uint32, field, structure string, b []byte) ([]byte, error) {
	if len(b) == 0 {
		return nil, newError(op, h, ErrInvalid, "%s is missing; it must be a %s with its 2-byte size prefix", field, structure)
	}
	if len(b) < 2 {
		return nil, newError(op, h, ErrInvalid, "%s is 1 byte, too short for a %s size prefix", field, structure)
	}
	size := int(binary.BigEndian.Uint16(b))
	if size != len(b)-2 {
		return nil, newError(op, h, ErrInvalid, "%s is a %s whose size prefix says %d bytes but %d follow", field, structure, size, len(b)-2)
	}
	if size == 0 {
		return nil, newError(op, h, ErrInvalid, "%s is an empty %s", field, structure)
	}
	return b[2:], nil
}

// activationError classifies a failed ActivateCredential. The TPM rejects
// the credential blob (parameter 1) or the encrypted seed (parameter 2)
// when the credential was made for another EK or another key's name, or
// was damaged on the way, and names only a response code.
//
// swtpm (libtpms) rejects a secret that the EK cannot decrypt with
// TPM_RC_FAILURE, the code of a TPM in failure mode. A TPM in failure mode
// runs only GetTestResult and GetCapability, so when it then runs
// GetRandom, it has not failed, and the credential is the cause.
func activationError(t transport.TPM, op string, aik uint32, err error) error {
	rejected := &Error{Op: op, Handle: aik, Class: ErrInvalid, Err: err,
		Msg: "the TPM rejected the credential: it was not made for this TPM's EK and this key's name, or it was damaged; make it with the ek and aik_name that activatecredparams returns"}
	var fmt1 tpm2.TPMFmt1Error
	if errors.As(err, &fmt1) {
		if isParam, index := fmt1.Parameter(); isParam && (index == 1 || index == 2) {
			return rejected
		}
	}
	if errors.Is(err, tpm2.TPMRCFailure) {
		if _, probeErr := (tpm2.GetRandom{BytesRequested: 1}).Execute(t); probeErr == nil {
			return rejected
		}
	}
	return tpmError(op, aik, "ActivateCredential", err)
}
