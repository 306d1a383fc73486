package verify

import (
	"fmt"
	"io"

	"github.com/google/go-tpm/tpm2"
)

// MakeCredential creates a credential that only the TPM holding ek can
// recover, and only with ActivateCredential on the object named aikName. It
// does in software what TPM2_MakeCredential does in a TPM.
//
// aikName is the TPM2B_NAME with its size prefix, as
// TpmResponseActivateCredParams.aik_name carries it. secret is the
// credential value: 1 byte up to the digest size of the EK's nameAlg
// (32 bytes for the TCG EK templates). rand supplies the seed; pass
// crypto/rand.Reader.
//
// The results are what TpmRequestGeneratedCred carries: cred is a
// TPM2B_ID_OBJECT and encSecret a TPM2B_ENCRYPTED_SECRET, each with its
// 2-byte size prefix.
//
// The EK must be an RSA or ECC restricted decryption key with an AES-CFB
// symmetric algorithm, as the TCG EK templates are.
func MakeCredential(rand io.Reader, ek *tpm2.TPMTPublic, aikName []byte, secret []byte) (cred, encSecret []byte, err error) {
	if err := checkEK(ek); err != nil {
		return nil, nil, fmt.Errorf("make credential: %w", err)
	}

	name, err := ParseName(aikName)
	if err != nil {
		return nil, nil, fmt.Errorf("make credential: AIK name: %w", err)
	}

	// TPM2_ActivateCredential returns the credential as a TPM2B_DIGEST,
	// which can be no longer than a digest of the EK's nameAlg.
	hash, err := hashByID(ek.NameAlg)
	if err != nil {
		return nil, nil, fmt.Errorf("make credential: EK nameAlg: %w", err)
	}
	if len(secret) == 0 {
		return nil, nil, fmt.Errorf("make credential: secret is empty")
	}
	if len(secret) > hash.Size() {
		return nil, nil, fmt.Errorf("make credential: secret is %d bytes but the EK's nameAlg %s allows at most %d",
			len(secret), algName(ek.NameAlg), hash.Size())
	}

	key, err := tpm2.ImportEncapsulationKey(ek)
	if err != nil {
		return nil, nil, fmt.Errorf("make credential: EK: %w", err)
	}
	idObject, seed, err := tpm2.CreateCredential(rand, key, name, secret)
	if err != nil {
		return nil, nil, fmt.Errorf("make credential: %w", err)
	}

	cred = tpm2.Marshal(tpm2.TPM2BIDObject{Buffer: idObject})
	encSecret = tpm2.Marshal(tpm2.TPM2BEncryptedSecret{Buffer: seed})
	return cred, encSecret, nil
}

// checkEK checks that ek is a restricted decryption key that can protect a
// credential.
func checkEK(ek *tpm2.TPMTPublic) error {
	if ek == nil {
		return fmt.Errorf("EK public area is missing")
	}
	if ek.Type != tpm2.TPMAlgRSA && ek.Type != tpm2.TPMAlgECC {
		return fmt.Errorf("EK is of type %s, expected RSA or ECC", algName(ek.Type))
	}

	attrs := ek.ObjectAttributes
	if !attrs.Restricted || !attrs.Decrypt || attrs.SignEncrypt {
		return fmt.Errorf("EK is not a restricted decryption key (restricted=%t decrypt=%t sign=%t)",
			attrs.Restricted, attrs.Decrypt, attrs.SignEncrypt)
	}
	return nil
}
