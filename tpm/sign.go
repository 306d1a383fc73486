package tpm

import (
	"bytes"
	"context"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/vcomlink/vcomlink/api/vcom"
)

// tpmGeneratedValue is TPM_GENERATED_VALUE, the magic that starts every
// attestation structure the TPM signs. The TPM gives no hashcheck ticket for
// data that begins with it, so a restricted key never signs a forged quote.
var tpmGeneratedValue = []byte{0xff, 0x54, 0x43, 0x47}

// Sign signs data with the persistent key h, which must carry the sign
// attribute. For a restricted key the TPM hashes data and proves it with a
// hashcheck ticket; for an unrestricted key data is the digest and must have
// the length of the scheme's hash.
func (s *Service) Sign(ctx context.Context, peer string, h uint32, data []byte) (*vcom.TpmResponseSign, error) {
	const op = "sign"
	if err := CheckPersistent(op, "index", h); err != nil {
		return nil, err
	}

	var rsp *vcom.TpmResponseSign
	err := s.run(ctx, peer, op, h, func(t transport.TPM) error {
		key, err := readPublic(t, op, h)
		if err != nil {
			return err
		}
		attrs := key.public.ObjectAttributes
		if !attrs.SignEncrypt {
			return newError(op, h, ErrInvalid, "the key does not have the sign attribute; name a signing key")
		}
		scheme, err := signingScheme(op, h, key.public)
		if err != nil {
			return err
		}
		hashAlg, err := schemeHash(scheme)
		if err != nil {
			return newError(op, h, ErrInvalid, "the key's signing scheme has no hash: %v", err)
		}
		auth, err := s.authHandle(op, h, key.name, attrs.NoDA)
		if err != nil {
			return err
		}

		var digest []byte
		var ticket tpm2.TPMTTKHashCheck
		if attrs.Restricted {
			digest, ticket, err = s.hash(t, op, h, hashAlg, data)
			if err != nil {
				return err
			}
		} else {
			digest, ticket, err = checkDigest(op, h, hashAlg, data)
			if err != nil {
				return err
			}
		}

		signed, err := tpm2.Sign{
			KeyHandle:  auth,
			Digest:     tpm2.TPM2BDigest{Buffer: digest},
			InScheme:   scheme,
			Validation: ticket,
		}.Execute(t)
		if err != nil {
			return tpmError(op, h, "Sign", err)
		}
		rsp, err = signResponse(op, h, &signed.Signature)
		return err
	})
	return rsp, err
}

// checkDigest checks that data is a digest of hashAlg's length, for an
// unrestricted key, and returns it with the null ticket that such a key
// takes.
func checkDigest(op string, h uint32, hashAlg tpm2.TPMIAlgHash, data []byte) ([]byte, tpm2.TPMTTKHashCheck, error) {
	null := tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull}
	hash, err := hashAlg.Hash()
	if err != nil {
		return nil, null, newError(op, h, ErrInvalid, "the key's scheme uses hash 0x%04x, which the agent does not support", uint16(hashAlg))
	}
	if len(data) != hash.Size() {
		return nil, null, newError(op, h, ErrInvalid,
			"the key is unrestricted, so data must be a %s digest of %d bytes, but it is %d bytes; hash the message first",
			hashName(hashAlg), hash.Size(), len(data))
	}
	return data, null, nil
}

// hash has the TPM hash data for a restricted key and returns the digest
// with its hashcheck ticket. Data longer than the TPM's input buffer goes
// through a hash sequence, which is flushed on every failure path (the TPM
// flushes it itself when SequenceComplete succeeds).
func (s *Service) hash(t transport.TPM, op string, h uint32, alg tpm2.TPMIAlgHash, data []byte) ([]byte, tpm2.TPMTTKHashCheck, error) {
	var digest tpm2.TPM2BDigest
	var ticket tpm2.TPMTTKHashCheck

	if len(data) <= s.inputBuffer {
		rsp, err := tpm2.Hash{
			Data:      tpm2.TPM2BMaxBuffer{Buffer: data},
			HashAlg:   alg,
			Hierarchy: tpm2.TPMRHOwner,
		}.Execute(t)
		if err != nil {
			return nil, ticket, tpmError(op, h, "Hash", err)
		}
		digest, ticket = rsp.OutHash, rsp.Validation
	} else {
		var err error
		digest, ticket, err = s.hashSequence(t, op, h, alg, data)
		if err != nil {
			return nil, ticket, err
		}
	}

	if ticket.Hierarchy == tpm2.TPMRHNull {
		if bytes.HasPrefix(data, tpmGeneratedValue) {
			return nil, ticket, newError(op, h, ErrInvalid,
				"data begins with TPM_GENERATED_VALUE (0xff544347), which a restricted key never signs; attestation structures come only from the TPM")
		}
		return nil, ticket, newError(op, h, ErrTPM, "the TPM returned no hashcheck ticket for the data")
	}
	return digest.Buffer, ticket, nil
}

func (s *Service) hashSequence(t transport.TPM, op string, h uint32, alg tpm2.TPMIAlgHash, data []byte) (tpm2.TPM2BDigest, tpm2.TPMTTKHashCheck, error) {
	var digest tpm2.TPM2BDigest
	var ticket tpm2.TPMTTKHashCheck

	start, err := tpm2.HashSequenceStart{HashAlg: alg}.Execute(t)
	if err != nil {
		return digest, ticket, tpmError(op, h, "HashSequenceStart", err)
	}
	seq := tpm2.AuthHandle{Handle: start.SequenceHandle, Auth: tpm2.PasswordAuth(nil)}
	completed := false
	defer func() {
		if !completed {
			s.flush(t, op, start.SequenceHandle)
		}
	}()

	// The last chunk goes with SequenceComplete, so at least one byte is
	// left for it whenever data is not empty.
	for len(data) > s.inputBuffer {
		chunk := data[:s.inputBuffer]
		data = data[s.inputBuffer:]
		_, err := tpm2.SequenceUpdate{SequenceHandle: seq, Buffer: tpm2.TPM2BMaxBuffer{Buffer: chunk}}.Execute(t)
		if err != nil {
			return digest, ticket, tpmError(op, h, "SequenceUpdate", err)
		}
	}
	rsp, err := tpm2.SequenceComplete{
		SequenceHandle: seq,
		Buffer:         tpm2.TPM2BMaxBuffer{Buffer: data},
		Hierarchy:      tpm2.TPMRHOwner,
	}.Execute(t)
	if err != nil {
		return digest, ticket, tpmError(op, h, "SequenceComplete", err)
	}
	completed = true
	return rsp.Result, rsp.Validation, nil
}

// signingScheme returns the scheme a key signs with: its own, or RSASSA-SHA256
// for an RSA key and ECDSA-SHA256 for an ECC key whose scheme is null.
func signingScheme(op string, h uint32, pub *tpm2.TPMTPublic) (tpm2.TPMTSigScheme, error) {
	var scheme tpm2.TPMTSigScheme
	switch pub.Type {
	case tpm2.TPMAlgRSA:
		detail, err := pub.Parameters.RSADetail()
		if err != nil {
			return scheme, newError(op, h, ErrTPM, "the RSA key's parameters do not parse: %v", err)
		}
		switch detail.Scheme.Scheme {
		case tpm2.TPMAlgNull:
			return sigScheme(tpm2.TPMAlgRSASSA, tpm2.TPMAlgSHA256), nil
		case tpm2.TPMAlgRSASSA:
			d, err := detail.Scheme.Details.RSASSA()
			if err != nil {
				return scheme, newError(op, h, ErrTPM, "the key's RSASSA scheme does not parse: %v", err)
			}
			return sigScheme(tpm2.TPMAlgRSASSA, d.HashAlg), nil
		case tpm2.TPMAlgRSAPSS:
			d, err := detail.Scheme.Details.RSAPSS()
			if err != nil {
				return scheme, newError(op, h, ErrTPM, "the key's RSAPSS scheme does not parse: %v", err)
			}
			return sigScheme(tpm2.TPMAlgRSAPSS, d.HashAlg), nil
		}
		return scheme, newError(op, h, ErrInvalid, "the RSA key's scheme 0x%04x is not a signing scheme the agent supports (RSASSA or RSAPSS)", uint16(detail.Scheme.Scheme))

	case tpm2.TPMAlgECC:
		detail, err := pub.Parameters.ECCDetail()
		if err != nil {
			return scheme, newError(op, h, ErrTPM, "the ECC key's parameters do not parse: %v", err)
		}
		switch detail.Scheme.Scheme {
		case tpm2.TPMAlgNull:
			return sigScheme(tpm2.TPMAlgECDSA, tpm2.TPMAlgSHA256), nil
		case tpm2.TPMAlgECDSA:
			d, err := detail.Scheme.Details.ECDSA()
			if err != nil {
				return scheme, newError(op, h, ErrTPM, "the key's ECDSA scheme does not parse: %v", err)
			}
			return sigScheme(tpm2.TPMAlgECDSA, d.HashAlg), nil
		}
		return scheme, newError(op, h, ErrInvalid, "the ECC key's scheme 0x%04x is not a signing scheme the agent supports (ECDSA)", uint16(detail.Scheme.Scheme))
	}
	return scheme, newError(op, h, ErrInvalid, "the key is of type 0x%04x; only RSA and ECC keys sign", uint16(pub.Type))
}

func sigScheme(alg tpm2.TPMAlgID, hash tpm2.TPMIAlgHash) tpm2.TPMTSigScheme {
	return tpm2.TPMTSigScheme{
		Scheme:  alg,
		Details: tpm2.NewTPMUSigScheme(alg, &tpm2.TPMSSchemeHash{HashAlg: hash}),
	}
}

func schemeHash(s tpm2.TPMTSigScheme) (tpm2.TPMIAlgHash, error) {
	var d *tpm2.TPMSSchemeHash
	var err error
	switch s.Scheme {
	case tpm2.TPMAlgRSASSA:
		d, err = s.Details.RSASSA()
	case tpm2.TPMAlgRSAPSS:
		d, err = s.Details.RSAPSS()
	case tpm2.TPMAlgECDSA:
		d, err = s.Details.ECDSA()
	default:
		return 0, fmt.Errorf("scheme 0x%04x", uint16(s.Scheme))
	}
	if err != nil {
		return 0, err
	}
	return d.HashAlg, nil
}

// signResponse encodes a TPMT_SIGNATURE as the wire's TpmResponseSign.
func signResponse(op string, h uint32, sig *tpm2.TPMTSignature) (*vcom.TpmResponseSign, error) {
	switch sig.SigAlg {
	case tpm2.TPMAlgRSASSA, tpm2.TPMAlgRSAPSS:
		var rsa *tpm2.TPMSSignatureRSA
		var err error
		name := "RSASSA"
		if sig.SigAlg == tpm2.TPMAlgRSASSA {
			rsa, err = sig.Signature.RSASSA()
		} else {
			name = "RSAPSS"
			rsa, err = sig.Signature.RSAPSS()
		}
		if err != nil {
			return nil, newError(op, h, ErrTPM, "the TPM's RSA signature does not parse: %v", err)
		}
		return &vcom.TpmResponseSign{
			Algorithm:    name,
			RsaSignature: rsa.Sig.Buffer,
			RsaHash:      hashName(rsa.Hash),
		}, nil

	case tpm2.TPMAlgECDSA:
		ecc, err := sig.Signature.ECDSA()
		if err != nil {
			return nil, newError(op, h, ErrTPM, "the TPM's ECDSA signature does not parse: %v", err)
		}
		return &vcom.TpmResponseSign{
			Algorithm:     "ECDSA",
			EccSignatureR: trimLeadingZeros(ecc.SignatureR.Buffer),
			EccSignatureS: trimLeadingZeros(ecc.SignatureS.Buffer),
			EccHash:       hashName(ecc.Hash),
		}, nil
	}
	return nil, newError(op, h, ErrTPM, "the TPM returned a signature of algorithm 0x%04x", uint16(sig.SigAlg))
}

func trimLeadingZeros(b []byte) []byte {
	for len(b) > 0 && b[0] == 0 {
		b = b[1:]
	}
	return b
}

// hashName returns the wire name of a hash algorithm, such as "SHA256".
func hashName(alg tpm2.TPMIAlgHash) string {
	names := map[tpm2.TPMIAlgHash]string{
		tpm2.TPMAlgSHA1:   "SHA1",
		tpm2.TPMAlgSHA256: "SHA256",
		tpm2.TPMAlgSHA384: "SHA384",
		tpm2.TPMAlgSHA512: "SHA512",
	}
	if name, ok := names[alg]; ok {
		return name
	}
	return fmt.Sprintf("0x%04x", uint16(alg))
}
