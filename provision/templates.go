package provision

import "github.com/google/go-tpm/tpm2"

// Templates of the keys that Provision creates. Each is a primary key, so a
// TPM derives the same key again from the same hierarchy seed and template.

// keyAttributes are the object attributes that every non-EK key of the
// layout shares: the key never leaves this TPM, the TPM generated its
// sensitive part, the empty auth value authorises its use, and using it never
// counts towards dictionary-attack lockout.
func keyAttributes() tpm2.TPMAObject {
	return tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		NoDA:                true,
	}
}

// symmetricNull is the symmetric definition of every key that is not a
// restricted decryption key.
var symmetricNull = tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull}

// srkTemplate is the TCG RSA-2048 storage root key template.
func srkTemplate() tpm2.TPMTPublic {
	return tpm2.RSASRKTemplate
}

// aikTemplate is a restricted RSA-2048 signing key with the RSASSA-SHA256
// scheme.
func aikTemplate() tpm2.TPMTPublic {
	attributes := keyAttributes()
	attributes.Restricted = true
	attributes.SignEncrypt = true

	return tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgRSA,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: attributes,
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
			Symmetric: symmetricNull,
			Scheme: tpm2.TPMTRSAScheme{
				Scheme: tpm2.TPMAlgRSASSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSASSA,
					&tpm2.TPMSSigSchemeRSASSA{HashAlg: tpm2.TPMAlgSHA256}),
			},
			KeyBits: 2048,
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA,
			&tpm2.TPM2BPublicKeyRSA{Buffer: make([]byte, 256)}),
	}
}

// eccSigningTemplate is an ECC P-256 signing key with the ECDSA-SHA256
// scheme, restricted or not.
func eccSigningTemplate(restricted bool) tpm2.TPMTPublic {
	attributes := keyAttributes()
	attributes.Restricted = restricted
	attributes.SignEncrypt = true

	return eccTemplate(attributes, tpm2.TPMTECCScheme{
		Scheme: tpm2.TPMAlgECDSA,
		Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA,
			&tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
	})
}

// quoteKeyTemplate is a restricted ECC P-256 signing key with the
// ECDSA-SHA256 scheme.
func quoteKeyTemplate() tpm2.TPMTPublic {
	return eccSigningTemplate(true)
}

// deviceKeyTemplate is an unrestricted ECC P-256 signing key with the
// ECDSA-SHA256 scheme.
func deviceKeyTemplate() tpm2.TPMTPublic {
	return eccSigningTemplate(false)
}

// ecdhKeyTemplate is an unrestricted ECC P-256 key that both signs and
// decrypts. The TPM accepts both attributes together only with the null
// scheme, so the caller of each command chooses the scheme.
func ecdhKeyTemplate() tpm2.TPMTPublic {
	attributes := keyAttributes()
	attributes.SignEncrypt = true
	attributes.Decrypt = true

	return eccTemplate(attributes, tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull})
}

// eccTemplate is an ECC P-256 key with the given attributes and scheme.
func eccTemplate(attributes tpm2.TPMAObject, scheme tpm2.TPMTECCScheme) tpm2.TPMTPublic {
	return tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgECC,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: attributes,
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: symmetricNull,
			Scheme:    scheme,
			CurveID:   tpm2.TPMECCNistP256,
			KDF:       tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: make([]byte, 32)},
			Y: tpm2.TPM2BECCParameter{Buffer: make([]byte, 32)},
		}),
	}
}
