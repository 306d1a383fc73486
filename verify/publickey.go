package verify

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"
	"math/big"

	"github.com/google/go-tpm/tpm2"
)

// defaultRSAExponent is the public exponent of an RSA key whose TPMS_RSA_PARMS
// exponent field is 0, as TPM 2.0 Part 2 defines.
const defaultRSAExponent = 65537

// PublicKey converts the public area of an RSA or ECC key into a
// *rsa.PublicKey or *ecdsa.PublicKey.
//
// It checks more than go-tpm's tpm2.Pub: the RSA modulus must have the size
// that keyBits states and the exponent must be odd and at least 3, and the
// ECC point must lie on a NIST P-256, P-384 or P-521 curve.
func PublicKey(pub *tpm2.TPMTPublic) (crypto.PublicKey, error) {
	if pub == nil {
		return nil, fmt.Errorf("public area is missing")
	}

	switch pub.Type {
	case tpm2.TPMAlgRSA:
		return rsaPublicKey(pub)
	case tpm2.TPMAlgECC:
		return ecdsaPublicKey(pub)
	default:
		return nil, fmt.Errorf("public area is of type %s, expected RSA or ECC", algName(pub.Type))
	}
}

func rsaPublicKey(pub *tpm2.TPMTPublic) (*rsa.PublicKey, error) {
	parms, err := pub.Parameters.RSADetail()
	if err != nil {
		return nil, fmt.Errorf("RSA public area: %w", err)
	}
	modulus, err := pub.Unique.RSA()
	if err != nil {
		return nil, fmt.Errorf("RSA public area: %w", err)
	}

	n := new(big.Int).SetBytes(modulus.Buffer)
	if n.BitLen() != int(parms.KeyBits) {
		return nil, fmt.Errorf("RSA public area: modulus has %d bits but keyBits is %d",
			n.BitLen(), parms.KeyBits)
	}

	e := int64(parms.Exponent)
	if e == 0 {
		e = defaultRSAExponent
	}
	if e < 3 || e%2 == 0 || e > 1<<31-1 {
		return nil, fmt.Errorf("RSA public area: invalid public exponent %d", e)
	}
	return &rsa.PublicKey{N: n, E: int(e)}, nil
}

func ecdsaPublicKey(pub *tpm2.TPMTPublic) (*ecdsa.PublicKey, error) {
	parms, err := pub.Parameters.ECCDetail()
	if err != nil {
		return nil, fmt.Errorf("ECC public area: %w", err)
	}
	point, err := pub.Unique.ECC()
	if err != nil {
		return nil, fmt.Errorf("ECC public area: %w", err)
	}

	var curve elliptic.Curve
	switch parms.CurveID {
	case tpm2.TPMECCNistP256:
		curve = elliptic.P256()
	case tpm2.TPMECCNistP384:
		curve = elliptic.P384()
	case tpm2.TPMECCNistP521:
		curve = elliptic.P521()
	default:
		return nil, fmt.Errorf("ECC public area: unsupported curve 0x%04x, expected NIST P-256, P-384 or P-521",
			uint16(parms.CurveID))
	}

	// The uncompressed SEC 1 form is 0x04 || X || Y, each coordinate padded
	// to the size of the field. A TPM may drop leading zero bytes.
	size := (curve.Params().BitSize + 7) / 8
	x, y := point.X.Buffer, point.Y.Buffer
	if len(x) > size || len(y) > size {
		return nil, fmt.Errorf("ECC public area: point coordinates of %d and %d bytes are longer than the %d bytes of %s",
			len(x), len(y), size, curve.Params().Name)
	}
	encoded := make([]byte, 1+2*size)
	encoded[0] = 4
	copy(encoded[1+size-len(x):1+size], x)
	copy(encoded[1+2*size-len(y):], y)

	key, err := ecdsa.ParseUncompressedPublicKey(curve, encoded)
	if err != nil {
		return nil, fmt.Errorf("ECC public area: invalid point on %s: %w", curve.Params().Name, err)
	}
	return key, nil
}
