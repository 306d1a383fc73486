package verify

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// EKPublic builds the public area of an endorsement key that a TPM created
// from a TCG default EK template, with key as its public key: the RSA-2048
// template for an *rsa.PublicKey, the ECC NIST P-256 template for an
// *ecdsa.PublicKey, as go-tpm's tpm2.RSAEKTemplate and tpm2.ECCEKTemplate
// define them (nameAlg SHA256, AES-128-CFB). A verifier that has only the EK
// certificate passes the result to MakeCredential.
//
// Other key sizes and curves belong to templates that differ in more than
// the key, so EKPublic rejects them, and also an RSA exponent other than
// 65537. For such an EK, use the public area that the TPM returns.
func EKPublic(key crypto.PublicKey) (*tpm2.TPMTPublic, error) {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() != 2048 {
			return nil, fmt.Errorf("EK: RSA key of %d bits does not fit the TCG default template (RSA-2048): use the EK's TPMT_PUBLIC",
				k.N.BitLen())
		}
		if k.E != defaultRSAExponent {
			return nil, fmt.Errorf("EK: RSA exponent %d does not fit the TCG default template (65537): use the EK's TPMT_PUBLIC", k.E)
		}
		ek := tpm2.RSAEKTemplate
		ek.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: k.N.FillBytes(make([]byte, 256))})
		return &ek, nil

	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("EK: ECC curve %s does not fit the TCG default template (NIST P-256): use the EK's TPMT_PUBLIC",
				k.Curve.Params().Name)
		}
		point, err := k.Bytes()
		if err != nil {
			return nil, fmt.Errorf("EK: %w", err)
		}
		// point is 0x04 || X || Y, each coordinate 32 bytes.
		ek := tpm2.ECCEKTemplate
		ek.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: point[1:33]},
			Y: tpm2.TPM2BECCParameter{Buffer: point[33:65]},
		})
		return &ek, nil

	default:
		return nil, fmt.Errorf("EK: unsupported public key type %T, expected RSA or ECDSA", key)
	}
}
