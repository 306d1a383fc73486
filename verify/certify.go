package verify

import (
	"bytes"
	"crypto"
	"fmt"

	"github.com/google/go-tpm/tpm2"

	"github.com/vcomlink/vcomlink/api/vcom"
)

// Certified is a TPM2_Certify attestation that VerifyCertify accepted.
type Certified struct {
	// Public is the public area of the certified object.
	Public *tpm2.TPMTPublic
	// PublicKey is the certified key as a *rsa.PublicKey or
	// *ecdsa.PublicKey, or nil when the object is not an RSA or ECC key.
	PublicKey crypto.PublicKey
	// Name is the certified object's Name (nameAlg and digest, no size
	// prefix), which equals the Name computed from Public.
	Name []byte
	// QualifiedName is the certified object's Qualified Name, which binds
	// it to its hierarchy.
	QualifiedName []byte
	// QualifiedSigner is the Qualified Name of the key that signed the
	// attestation.
	QualifiedSigner []byte
	// ExtraData is the qualifying data (the verifier's nonce) that the TPM
	// put into the attestation.
	ExtraData []byte
	// ClockInfo is the TPM's clock, reset count, restart count and safe
	// flag at the time of the attestation. The TPM obfuscates the two
	// counts when the signer is not in the endorsement or platform
	// hierarchy.
	ClockInfo tpm2.TPMSClockInfo
	// FirmwareVersion is the TPM vendor's firmware version number, also
	// obfuscated when the signer is not in the endorsement or platform
	// hierarchy.
	FirmwareVersion uint64
	// Attest is the whole parsed TPMS_ATTEST.
	Attest *tpm2.TPMSAttest
}

// VerifyCertify checks a TpmResponseCertify that the agent returned for
// TPM2_Certify with aik as the signing key and nonce as the qualifying data.
//
// It checks, in this order:
//   - aik is a restricted signing key. Only then does its signature over a
//     TPMS_ATTEST show that the TPM produced the attestation.
//   - sig is a valid signature by aik over attest, in a scheme that the
//     AIK allows.
//   - attest has magic TPM_GENERATED_VALUE and type TPM_ST_ATTEST_CERTIFY.
//   - extraData in attest equals nonce. Both are empty when no nonce was
//     sent.
//   - The certified Name equals the Name of the returned public area.
//
// VerifyCertify does not check QualifiedSigner, because the Qualified Name
// of the AIK depends on its parents, which the response does not carry.
func VerifyCertify(aik *tpm2.TPMTPublic, nonce []byte, rsp *vcom.TpmResponseCertify) (*Certified, error) {
	if rsp == nil {
		return nil, fmt.Errorf("certify: response is missing")
	}
	if err := checkAIK(aik); err != nil {
		return nil, fmt.Errorf("certify: %w", err)
	}

	attest, err := verifyAttestSignature(aik, rsp.GetAttest(), rsp.GetSig())
	if err != nil {
		return nil, fmt.Errorf("certify: %w", err)
	}
	return checkCertified(attest, nonce, rsp)
}

// VerifyCertifyWithPublicKey checks a TpmResponseCertify as VerifyCertify
// does, with the AIK given as an *rsa.PublicKey or *ecdsa.PublicKey, such
// as one read from a PEM file.
//
// A bare public key carries no TPM attributes, so VerifyCertifyWithPublicKey
// cannot check that the AIK is a restricted signing key, or that the
// signature uses the AIK's scheme. Only a restricted key assures that a
// TPMS_ATTEST it signed came from the TPM, so the caller must have
// established that aik is one, for example by credential activation with
// the Name of its public area. VerifyCertify checks it from the public area.
func VerifyCertifyWithPublicKey(aik crypto.PublicKey, nonce []byte, rsp *vcom.TpmResponseCertify) (*Certified, error) {
	if rsp == nil {
		return nil, fmt.Errorf("certify: response is missing")
	}

	attest, err := ParseAttest(rsp.GetAttest())
	if err != nil {
		return nil, fmt.Errorf("certify: attest: %w", err)
	}
	sig, err := ParseSignature(rsp.GetSig())
	if err != nil {
		return nil, fmt.Errorf("certify: sig: %w", err)
	}
	_, hash, err := signatureHash(sig)
	if err != nil {
		return nil, fmt.Errorf("certify: sig: %w", err)
	}
	h := hash.New()
	h.Write(rsp.GetAttest())
	if err := VerifyDigest(aik, sig, h.Sum(nil)); err != nil {
		return nil, fmt.Errorf("certify: sig over attest: %w", err)
	}
	return checkCertified(attest, nonce, rsp)
}

// checkCertified checks the contents of a TPMS_ATTEST whose signature the
// caller verified: the magic, the type, the nonce, and the certified Name
// against the public area in rsp.
func checkCertified(attest *tpm2.TPMSAttest, nonce []byte, rsp *vcom.TpmResponseCertify) (*Certified, error) {
	if attest.Magic != tpm2.TPMGeneratedValue {
		return nil, fmt.Errorf("certify: attest magic is 0x%08x, expected TPM_GENERATED_VALUE 0x%08x",
			uint32(attest.Magic), uint32(tpm2.TPMGeneratedValue))
	}
	if attest.Type != tpm2.TPMSTAttestCertify {
		return nil, fmt.Errorf("certify: attest type is 0x%04x, expected TPM_ST_ATTEST_CERTIFY 0x%04x",
			uint16(attest.Type), uint16(tpm2.TPMSTAttestCertify))
	}
	if !bytes.Equal(attest.ExtraData.Buffer, nonce) {
		return nil, fmt.Errorf("certify: extraData is 0x%x but the nonce is 0x%x",
			attest.ExtraData.Buffer, nonce)
	}
	info, err := attest.Attested.Certify()
	if err != nil {
		return nil, fmt.Errorf("certify: attest: %w", err)
	}

	public, err := ParsePublic(rsp.GetPublic())
	if err != nil {
		return nil, fmt.Errorf("certify: public: %w", err)
	}
	name, err := Name(public)
	if err != nil {
		return nil, fmt.Errorf("certify: public: %w", err)
	}
	if !bytes.Equal(info.Name.Buffer, name) {
		return nil, fmt.Errorf("certify: certified name is 0x%x but the public area's name is 0x%x",
			info.Name.Buffer, name)
	}

	var key crypto.PublicKey
	if public.Type == tpm2.TPMAlgRSA || public.Type == tpm2.TPMAlgECC {
		key, err = PublicKey(public)
		if err != nil {
			return nil, fmt.Errorf("certify: public: %w", err)
		}
	}

	return &Certified{
		Public:          public,
		PublicKey:       key,
		Name:            name,
		QualifiedName:   info.QualifiedName.Buffer,
		QualifiedSigner: attest.QualifiedSigner.Buffer,
		ExtraData:       attest.ExtraData.Buffer,
		ClockInfo:       attest.ClockInfo,
		FirmwareVersion: attest.FirmwareVersion,
		Attest:          attest,
	}, nil
}

// checkAIK checks that aik is a restricted signing key. Only such a key
// assures that what it signed with TPM_GENERATED_VALUE came from the TPM.
func checkAIK(aik *tpm2.TPMTPublic) error {
	if aik == nil {
		return fmt.Errorf("AIK public area is missing")
	}
	attrs := aik.ObjectAttributes
	if !attrs.Restricted || !attrs.SignEncrypt || attrs.Decrypt {
		return fmt.Errorf("AIK is not a restricted signing key (restricted=%t sign=%t decrypt=%t)",
			attrs.Restricted, attrs.SignEncrypt, attrs.Decrypt)
	}
	return nil
}

// verifyAttestSignature checks that sigBytes, a TPMT_SIGNATURE, is a
// signature by signer over attestBytes, and returns the parsed TPMS_ATTEST.
func verifyAttestSignature(signer *tpm2.TPMTPublic, attestBytes, sigBytes []byte) (*tpm2.TPMSAttest, error) {
	key, err := PublicKey(signer)
	if err != nil {
		return nil, fmt.Errorf("AIK: %w", err)
	}
	attest, err := ParseAttest(attestBytes)
	if err != nil {
		return nil, fmt.Errorf("attest: %w", err)
	}
	sig, err := ParseSignature(sigBytes)
	if err != nil {
		return nil, fmt.Errorf("sig: %w", err)
	}
	if err := checkScheme(signer, sig); err != nil {
		return nil, fmt.Errorf("sig: %w", err)
	}

	_, hash, err := signatureHash(sig)
	if err != nil {
		return nil, fmt.Errorf("sig: %w", err)
	}
	h := hash.New()
	h.Write(attestBytes)
	if err := verifyDigest(key, sig, h.Sum(nil)); err != nil {
		return nil, fmt.Errorf("sig over attest: %w", err)
	}
	return attest, nil
}
