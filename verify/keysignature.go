package verify

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/asn1"
	"fmt"
	"math/big"

	"github.com/google/go-tpm/tpm2"
)

// DecodeSignature is the inverse of EncodeSignature. It converts b, which
// is RSA signature bytes for RSASSA and RSAPSS or a DER ECDSA-Sig-Value
// SEQUENCE of r and s for ECDSA, into the TPMT_SIGNATURE of scheme over a
// digest made with hash.
//
// The DER must be canonical, with no bytes after the SEQUENCE, and r and s
// must be positive.
func DecodeSignature(scheme, hash tpm2.TPMAlgID, b []byte) (*tpm2.TPMTSignature, error) {
	if _, err := hashByID(hash); err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("signature is empty")
	}

	switch scheme {
	case tpm2.TPMAlgRSASSA, tpm2.TPMAlgRSAPSS:
		return &tpm2.TPMTSignature{
			SigAlg: scheme,
			Signature: tpm2.NewTPMUSignature(scheme, &tpm2.TPMSSignatureRSA{
				Hash: hash,
				Sig:  tpm2.TPM2BPublicKeyRSA{Buffer: bytes.Clone(b)},
			}),
		}, nil

	case tpm2.TPMAlgECDSA:
		var rs struct{ R, S *big.Int }
		rest, err := asn1.Unmarshal(b, &rs)
		if err != nil {
			return nil, fmt.Errorf("ECDSA signature is not a DER SEQUENCE of r and s: %w", err)
		}
		if len(rest) > 0 {
			return nil, fmt.Errorf("ECDSA signature has %d bytes after its DER SEQUENCE", len(rest))
		}
		if canonical, err := asn1.Marshal(rs); err != nil || !bytes.Equal(canonical, b) {
			return nil, fmt.Errorf("ECDSA signature is not in canonical DER")
		}
		if rs.R.Sign() <= 0 || rs.S.Sign() <= 0 {
			return nil, fmt.Errorf("ECDSA signature has r or s that is not positive")
		}
		return &tpm2.TPMTSignature{
			SigAlg: scheme,
			Signature: tpm2.NewTPMUSignature(scheme, &tpm2.TPMSSignatureECC{
				Hash:       hash,
				SignatureR: tpm2.TPM2BECCParameter{Buffer: rs.R.Bytes()},
				SignatureS: tpm2.TPM2BECCParameter{Buffer: rs.S.Bytes()},
			}),
		}, nil

	default:
		return nil, fmt.Errorf("unsupported signature scheme %s, expected RSASSA, RSAPSS or ECDSA", algName(scheme))
	}
}

// VerifyDigest checks that sig is a signature by key over digest, where
// digest was made with the signature's hash. key is an *rsa.PublicKey or
// *ecdsa.PublicKey, such as one read from a PEM file.
//
// Because a bare public key carries no TPM attributes, VerifyDigest cannot
// tell a restricted key from an unrestricted one and checks no key scheme.
// Use VerifySignature when the key's TPMT_PUBLIC is at hand.
func VerifyDigest(key crypto.PublicKey, sig *tpm2.TPMTSignature, digest []byte) error {
	if sig == nil {
		return fmt.Errorf("signature is missing")
	}
	if err := checkSchemeSuitsKey(key, sig.SigAlg); err != nil {
		return err
	}
	hashAlg, hash, err := signatureHash(sig)
	if err != nil {
		return err
	}
	if len(digest) != hash.Size() {
		return fmt.Errorf("digest is %d bytes but a %s digest is %d bytes", len(digest), algName(hashAlg), hash.Size())
	}
	return verifyDigest(key, sig, digest)
}

// checkSchemeSuitsKey checks that scheme is a signature scheme for the type
// of key.
func checkSchemeSuitsKey(key crypto.PublicKey, scheme tpm2.TPMAlgID) error {
	switch key.(type) {
	case *rsa.PublicKey:
		if scheme != tpm2.TPMAlgRSASSA && scheme != tpm2.TPMAlgRSAPSS {
			return fmt.Errorf("scheme %s does not suit an RSA key", algName(scheme))
		}
	case *ecdsa.PublicKey:
		if scheme != tpm2.TPMAlgECDSA {
			return fmt.Errorf("scheme %s does not suit an ECC key", algName(scheme))
		}
	default:
		return fmt.Errorf("unsupported public key type %T, expected RSA or ECDSA", key)
	}
	return nil
}

// SignatureHash returns the hash that sig was made with, as its TPM_ALG_ID
// and Go crypto.Hash.
func SignatureHash(sig *tpm2.TPMTSignature) (tpm2.TPMAlgID, crypto.Hash, error) {
	if sig == nil {
		return 0, 0, fmt.Errorf("signature is missing")
	}
	return signatureHash(sig)
}
