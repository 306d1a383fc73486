package verify

import (
	"crypto"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// hashAlgorithm is one row of the table that links a TPM_ALG_ID of a hash to
// its name on the wire and to the Go crypto.Hash.
type hashAlgorithm struct {
	id   tpm2.TPMAlgID
	name string
	hash crypto.Hash
}

// hashAlgorithms lists the hashes that the vcomlink protocol names.
var hashAlgorithms = []hashAlgorithm{
	{tpm2.TPMAlgSHA1, "SHA1", crypto.SHA1},
	{tpm2.TPMAlgSHA256, "SHA256", crypto.SHA256},
	{tpm2.TPMAlgSHA384, "SHA384", crypto.SHA384},
	{tpm2.TPMAlgSHA512, "SHA512", crypto.SHA512},
}

// signatureSchemes maps the scheme names that TpmResponseSign.algorithm
// carries to their TPM_ALG_ID.
var signatureSchemes = map[string]tpm2.TPMAlgID{
	"RSASSA": tpm2.TPMAlgRSASSA,
	"RSAPSS": tpm2.TPMAlgRSAPSS,
	"ECDSA":  tpm2.TPMAlgECDSA,
}

// algorithmNames maps TPM_ALG_ID values to the names that TPM 2.0 Part 2
// gives them, for error messages.
var algorithmNames = map[tpm2.TPMAlgID]string{
	tpm2.TPMAlgRSA:       "RSA",
	tpm2.TPMAlgECC:       "ECC",
	tpm2.TPMAlgKeyedHash: "KEYEDHASH",
	tpm2.TPMAlgSymCipher: "SYMCIPHER",
	tpm2.TPMAlgSHA1:      "SHA1",
	tpm2.TPMAlgSHA256:    "SHA256",
	tpm2.TPMAlgSHA384:    "SHA384",
	tpm2.TPMAlgSHA512:    "SHA512",
	tpm2.TPMAlgSHA3256:   "SHA3_256",
	tpm2.TPMAlgSHA3384:   "SHA3_384",
	tpm2.TPMAlgSHA3512:   "SHA3_512",
	tpm2.TPMAlgNull:      "NULL",
	tpm2.TPMAlgHMAC:      "HMAC",
	tpm2.TPMAlgRSASSA:    "RSASSA",
	tpm2.TPMAlgRSAPSS:    "RSAPSS",
	tpm2.TPMAlgECDSA:     "ECDSA",
	tpm2.TPMAlgECDAA:     "ECDAA",
	tpm2.TPMAlgSM2:       "SM2",
	tpm2.TPMAlgECSchnorr: "ECSCHNORR",
}

// algName returns the TPM 2.0 name of alg, or its hexadecimal value when the
// name is unknown.
func algName(alg tpm2.TPMAlgID) string {
	if name, ok := algorithmNames[alg]; ok {
		return name
	}
	return fmt.Sprintf("0x%04x", uint16(alg))
}

// hashByID returns the Go hash for a TPM hash algorithm.
func hashByID(alg tpm2.TPMAlgID) (crypto.Hash, error) {
	for _, h := range hashAlgorithms {
		if h.id == alg {
			return h.hash, nil
		}
	}
	return 0, fmt.Errorf("unsupported hash algorithm %s", algName(alg))
}

// HashByName returns the TPM_ALG_ID and Go hash for a hash name as
// TpmResponseSign carries it: SHA1, SHA256, SHA384 or SHA512.
func HashByName(name string) (tpm2.TPMAlgID, crypto.Hash, error) {
	for _, h := range hashAlgorithms {
		if h.name == name {
			return h.id, h.hash, nil
		}
	}
	return 0, 0, fmt.Errorf("unknown hash name %q, expected SHA1, SHA256, SHA384 or SHA512", name)
}

// HashName returns the name that TpmResponseSign uses for a TPM hash
// algorithm, such as "SHA256".
func HashName(alg tpm2.TPMAlgID) (string, error) {
	for _, h := range hashAlgorithms {
		if h.id == alg {
			return h.name, nil
		}
	}
	return "", fmt.Errorf("hash algorithm %s has no name in the vcomlink protocol", algName(alg))
}

// SchemeByName returns the TPM_ALG_ID for a signature scheme name as
// TpmResponseSign carries it: RSASSA, RSAPSS or ECDSA.
func SchemeByName(name string) (tpm2.TPMAlgID, error) {
	alg, ok := signatureSchemes[name]
	if !ok {
		return 0, fmt.Errorf("unknown signature scheme %q, expected RSASSA, RSAPSS or ECDSA", name)
	}
	return alg, nil
}

// SchemeName returns the name that TpmResponseSign uses for a TPM signature
// scheme: "RSASSA", "RSAPSS" or "ECDSA".
func SchemeName(alg tpm2.TPMAlgID) (string, error) {
	for name, id := range signatureSchemes {
		if id == alg {
			return name, nil
		}
	}
	return "", fmt.Errorf("signature scheme %s has no name in the vcomlink protocol", algName(alg))
}
