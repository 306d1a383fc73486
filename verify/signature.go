package verify

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/asn1"
	"encoding/binary"
	"fmt"
	"math/big"

	"github.com/google/go-tpm/tpm2"

	"github.com/vcomlink/vcomlink/api/vcom"
)

// VerifySignature checks a TpmResponseSign that the key with public area pub
// returned for data.
//
// What was signed depends on the key's restricted attribute, read from pub.
// A restricted signing key signs a digest that the TPM computed over data
// with the signature's hash, so data is the message. Data that begins with
// TPM_GENERATED_VALUE is rejected for such a key, because a TPM produces
// signatures over those bytes only for attestations, never for TPM2_Sign.
// An unrestricted key signs data as given, so data must be a digest of the
// length that the signature's hash produces.
//
// The signature must use a scheme that the key allows: when the key's
// scheme is not NULL, the algorithm and hash must equal it.
func VerifySignature(pub *tpm2.TPMTPublic, data []byte, rsp *vcom.TpmResponseSign) error {
	if pub == nil {
		return fmt.Errorf("signature: public area is missing")
	}
	if !pub.ObjectAttributes.SignEncrypt {
		return fmt.Errorf("signature: key does not have the sign attribute")
	}
	key, err := PublicKey(pub)
	if err != nil {
		return fmt.Errorf("signature: %w", err)
	}

	sig, err := SignatureFromResponse(rsp)
	if err != nil {
		return fmt.Errorf("signature: %w", err)
	}
	if err := checkScheme(pub, sig); err != nil {
		return fmt.Errorf("signature: %w", err)
	}

	hashAlg, hash, err := signatureHash(sig)
	if err != nil {
		return fmt.Errorf("signature: %w", err)
	}

	var digest []byte
	if pub.ObjectAttributes.Restricted {
		if hasGeneratedValue(data) {
			return fmt.Errorf("signature: data begins with TPM_GENERATED_VALUE, which a restricted key signs only in attestations")
		}
		h := hash.New()
		h.Write(data)
		digest = h.Sum(nil)
	} else {
		if len(data) != hash.Size() {
			return fmt.Errorf("signature: the key is unrestricted, so data must be a %s digest of %d bytes, but it is %d bytes",
				algName(hashAlg), hash.Size(), len(data))
		}
		digest = data
	}

	return verifyDigest(key, sig, digest)
}

// hasGeneratedValue reports whether b begins with TPM_GENERATED_VALUE.
func hasGeneratedValue(b []byte) bool {
	return len(b) >= 4 && binary.BigEndian.Uint32(b) == uint32(tpm2.TPMGeneratedValue)
}

// SignatureFromResponse converts a TpmResponseSign into the TPMT_SIGNATURE
// that the TPM returned. It checks that the scheme and hash names are known
// and that the fields the scheme needs are present.
func SignatureFromResponse(rsp *vcom.TpmResponseSign) (*tpm2.TPMTSignature, error) {
	if rsp == nil {
		return nil, fmt.Errorf("sign response is missing")
	}
	scheme, err := SchemeByName(rsp.GetAlgorithm())
	if err != nil {
		return nil, fmt.Errorf("algorithm: %w", err)
	}

	switch scheme {
	case tpm2.TPMAlgRSASSA, tpm2.TPMAlgRSAPSS:
		hashAlg, _, err := HashByName(rsp.GetRsaHash())
		if err != nil {
			return nil, fmt.Errorf("rsa_hash: %w", err)
		}
		if len(rsp.GetRsaSignature()) == 0 {
			return nil, fmt.Errorf("rsa_signature is empty")
		}
		return &tpm2.TPMTSignature{
			SigAlg: scheme,
			Signature: tpm2.NewTPMUSignature(scheme, &tpm2.TPMSSignatureRSA{
				Hash: hashAlg,
				Sig:  tpm2.TPM2BPublicKeyRSA{Buffer: rsp.GetRsaSignature()},
			}),
		}, nil

	default:
		hashAlg, _, err := HashByName(rsp.GetEccHash())
		if err != nil {
			return nil, fmt.Errorf("ecc_hash: %w", err)
		}
		if len(rsp.GetEccSignatureR()) == 0 || len(rsp.GetEccSignatureS()) == 0 {
			return nil, fmt.Errorf("ecc_signature_r or ecc_signature_s is empty")
		}
		return &tpm2.TPMTSignature{
			SigAlg: scheme,
			Signature: tpm2.NewTPMUSignature(scheme, &tpm2.TPMSSignatureECC{
				Hash:       hashAlg,
				SignatureR: tpm2.TPM2BECCParameter{Buffer: rsp.GetEccSignatureR()},
				SignatureS: tpm2.TPM2BECCParameter{Buffer: rsp.GetEccSignatureS()},
			}),
		}, nil
	}
}

// EncodeSignature returns sig in the form that OpenSSL and Go's crypto
// packages verify: the RSA signature bytes for RSASSA and RSAPSS, and the
// DER ECDSA-Sig-Value SEQUENCE of r and s for ECDSA.
func EncodeSignature(sig *tpm2.TPMTSignature) ([]byte, error) {
	if sig == nil {
		return nil, fmt.Errorf("signature is missing")
	}

	switch sig.SigAlg {
	case tpm2.TPMAlgRSASSA, tpm2.TPMAlgRSAPSS:
		rsaSig, err := rsaSignature(sig)
		if err != nil {
			return nil, err
		}
		return bytes.Clone(rsaSig.Sig.Buffer), nil

	case tpm2.TPMAlgECDSA:
		r, s, err := ecdsaSignature(sig)
		if err != nil {
			return nil, err
		}
		return asn1.Marshal(struct{ R, S *big.Int }{r, s})

	default:
		return nil, fmt.Errorf("unsupported signature scheme %s, expected RSASSA, RSAPSS or ECDSA",
			algName(sig.SigAlg))
	}
}

// keyScheme returns the signing scheme and hash in the public area of a
// signing key. Both are TPM_ALG_NULL when the key has no scheme, so that the
// caller of TPM2_Sign chooses one.
func keyScheme(pub *tpm2.TPMTPublic) (scheme, hash tpm2.TPMAlgID, err error) {
	var details *tpm2.TPMUAsymScheme

	switch pub.Type {
	case tpm2.TPMAlgRSA:
		parms, err := pub.Parameters.RSADetail()
		if err != nil {
			return 0, 0, fmt.Errorf("RSA public area: %w", err)
		}
		scheme, details = parms.Scheme.Scheme, &parms.Scheme.Details
	case tpm2.TPMAlgECC:
		parms, err := pub.Parameters.ECCDetail()
		if err != nil {
			return 0, 0, fmt.Errorf("ECC public area: %w", err)
		}
		scheme, details = parms.Scheme.Scheme, &parms.Scheme.Details
	default:
		return 0, 0, fmt.Errorf("public area is of type %s, expected RSA or ECC", algName(pub.Type))
	}

	var hashScheme *tpm2.TPMSSchemeHash
	switch scheme {
	case tpm2.TPMAlgNull:
		return tpm2.TPMAlgNull, tpm2.TPMAlgNull, nil
	case tpm2.TPMAlgRSASSA:
		s, err := details.RSASSA()
		if err != nil {
			return 0, 0, err
		}
		hashScheme = (*tpm2.TPMSSchemeHash)(s)
	case tpm2.TPMAlgRSAPSS:
		s, err := details.RSAPSS()
		if err != nil {
			return 0, 0, err
		}
		hashScheme = (*tpm2.TPMSSchemeHash)(s)
	case tpm2.TPMAlgECDSA:
		s, err := details.ECDSA()
		if err != nil {
			return 0, 0, err
		}
		hashScheme = (*tpm2.TPMSSchemeHash)(s)
	default:
		return 0, 0, fmt.Errorf("key scheme %s is not a signing scheme, expected RSASSA, RSAPSS or ECDSA",
			algName(scheme))
	}
	return scheme, hashScheme.HashAlg, nil
}

// checkScheme checks that the key with public area pub can have made sig:
// the signature algorithm suits the key type, and equals the key's scheme
// and hash unless the key's scheme is NULL.
func checkScheme(pub *tpm2.TPMTPublic, sig *tpm2.TPMTSignature) error {
	keySchemeAlg, keyHashAlg, err := keyScheme(pub)
	if err != nil {
		return err
	}
	sigHashAlg, _, err := signatureHash(sig)
	if err != nil {
		return err
	}

	switch {
	case pub.Type == tpm2.TPMAlgRSA && sig.SigAlg != tpm2.TPMAlgRSASSA && sig.SigAlg != tpm2.TPMAlgRSAPSS:
		return fmt.Errorf("scheme %s does not suit an RSA key", algName(sig.SigAlg))
	case pub.Type == tpm2.TPMAlgECC && sig.SigAlg != tpm2.TPMAlgECDSA:
		return fmt.Errorf("scheme %s does not suit an ECC key", algName(sig.SigAlg))
	case keySchemeAlg == tpm2.TPMAlgNull:
		return nil
	case sig.SigAlg != keySchemeAlg || sigHashAlg != keyHashAlg:
		return fmt.Errorf("signature is %s-%s but the key's scheme is %s-%s",
			algName(sig.SigAlg), algName(sigHashAlg), algName(keySchemeAlg), algName(keyHashAlg))
	}
	return nil
}

// signatureHash returns the hash that sig names.
func signatureHash(sig *tpm2.TPMTSignature) (tpm2.TPMAlgID, crypto.Hash, error) {
	var hashAlg tpm2.TPMAlgID

	switch sig.SigAlg {
	case tpm2.TPMAlgRSASSA, tpm2.TPMAlgRSAPSS:
		rsaSig, err := rsaSignature(sig)
		if err != nil {
			return 0, 0, err
		}
		hashAlg = rsaSig.Hash
	case tpm2.TPMAlgECDSA:
		eccSig, err := sig.Signature.ECDSA()
		if err != nil {
			return 0, 0, err
		}
		hashAlg = eccSig.Hash
	default:
		return 0, 0, fmt.Errorf("unsupported signature scheme %s, expected RSASSA, RSAPSS or ECDSA",
			algName(sig.SigAlg))
	}

	hash, err := hashByID(hashAlg)
	if err != nil {
		return 0, 0, fmt.Errorf("signature hash: %w", err)
	}
	return hashAlg, hash, nil
}

// rsaSignature returns the RSASSA or RSAPSS member of sig.
func rsaSignature(sig *tpm2.TPMTSignature) (*tpm2.TPMSSignatureRSA, error) {
	if sig.SigAlg == tpm2.TPMAlgRSAPSS {
		return sig.Signature.RSAPSS()
	}
	return sig.Signature.RSASSA()
}

// ecdsaSignature returns r and s of an ECDSA sig.
func ecdsaSignature(sig *tpm2.TPMTSignature) (r, s *big.Int, err error) {
	eccSig, err := sig.Signature.ECDSA()
	if err != nil {
		return nil, nil, err
	}
	r = new(big.Int).SetBytes(eccSig.SignatureR.Buffer)
	s = new(big.Int).SetBytes(eccSig.SignatureS.Buffer)
	return r, s, nil
}

// verifyDigest checks sig over digest with key. The caller has checked that
// the scheme suits the key and that digest was made with the signature's
// hash.
func verifyDigest(key crypto.PublicKey, sig *tpm2.TPMTSignature, digest []byte) error {
	hashAlg, hash, err := signatureHash(sig)
	if err != nil {
		return err
	}

	switch k := key.(type) {
	case *rsa.PublicKey:
		rsaSig, err := rsaSignature(sig)
		if err != nil {
			return err
		}
		if sig.SigAlg == tpm2.TPMAlgRSAPSS {
			// TPMs differ in the PSS salt length. Some use the
			// digest size and others the maximum for the key, so
			// the verifier detects the length.
			opts := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto}
			err = rsa.VerifyPSS(k, hash, digest, rsaSig.Sig.Buffer, opts)
		} else {
			err = rsa.VerifyPKCS1v15(k, hash, digest, rsaSig.Sig.Buffer)
		}
		if err != nil {
			return fmt.Errorf("invalid %s-%s signature: %w", algName(sig.SigAlg), algName(hashAlg), err)
		}
		return nil

	case *ecdsa.PublicKey:
		r, s, err := ecdsaSignature(sig)
		if err != nil {
			return err
		}
		if !ecdsa.Verify(k, digest, r, s) {
			return fmt.Errorf("invalid ECDSA-%s signature", algName(hashAlg))
		}
		return nil

	default:
		return fmt.Errorf("unsupported public key type %T", key)
	}
}
