package verify

import (
	"bytes"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// The fuzz targets check that the parsers of wire bytes never panic, and
// that what they accept marshals back to the same bytes.

func FuzzParsePublic(f *testing.F) {
	for _, template := range []tpm2.TPMTPublic{
		tpm2.RSAEKTemplate,
		tpm2.ECCEKTemplate,
		rsaSigningTemplate(true, tpm2.TPMAlgRSASSA, tpm2.TPMAlgSHA256),
		eccSigningTemplate(false, tpm2.TPMAlgNull),
	} {
		f.Add(tpm2.Marshal(template))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		public, err := ParsePublic(b)
		if err != nil {
			return
		}
		if !bytes.Equal(tpm2.Marshal(public), b) {
			t.Errorf("ParsePublic accepted 0x%x, which does not marshal back", b)
		}
		// The conversions must fail cleanly on whatever parsed.
		PublicKey(public)
		Name(public)
	})
}

func FuzzParseAttest(f *testing.F) {
	name := append([]byte{0x00, 0x0B}, make([]byte, 32)...)
	f.Add(tpm2.Marshal(tpm2.TPMSAttest{
		Magic:     tpm2.TPMGeneratedValue,
		Type:      tpm2.TPMSTAttestCertify,
		ExtraData: tpm2.TPM2BData{Buffer: []byte("nonce")},
		Attested: tpm2.NewTPMUAttest(tpm2.TPMSTAttestCertify, &tpm2.TPMSCertifyInfo{
			Name:          tpm2.TPM2BName{Buffer: name},
			QualifiedName: tpm2.TPM2BName{Buffer: name},
		}),
	}))
	f.Add(tpm2.Marshal(tpm2.TPMSAttest{
		Magic: tpm2.TPMGeneratedValue,
		Type:  tpm2.TPMSTAttestQuote,
		Attested: tpm2.NewTPMUAttest(tpm2.TPMSTAttestQuote, &tpm2.TPMSQuoteInfo{
			PCRSelect: tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{
				{Hash: tpm2.TPMAlgSHA256, PCRSelect: []byte{1, 0, 0}},
			}},
			PCRDigest: tpm2.TPM2BDigest{Buffer: make([]byte, 32)},
		}),
	}))
	f.Fuzz(func(t *testing.T, b []byte) {
		attest, err := ParseAttest(b)
		if err != nil {
			return
		}
		if !bytes.Equal(tpm2.Marshal(attest), b) {
			t.Errorf("ParseAttest accepted 0x%x, which does not marshal back", b)
		}
	})
}

func FuzzParseSignature(f *testing.F) {
	f.Add(tpm2.Marshal(tpm2.TPMTSignature{
		SigAlg: tpm2.TPMAlgRSASSA,
		Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgRSASSA, &tpm2.TPMSSignatureRSA{
			Hash: tpm2.TPMAlgSHA256,
			Sig:  tpm2.TPM2BPublicKeyRSA{Buffer: make([]byte, 256)},
		}),
	}))
	f.Add(tpm2.Marshal(tpm2.TPMTSignature{
		SigAlg: tpm2.TPMAlgECDSA,
		Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgECDSA, &tpm2.TPMSSignatureECC{
			Hash:       tpm2.TPMAlgSHA256,
			SignatureR: tpm2.TPM2BECCParameter{Buffer: []byte{1, 2, 3}},
			SignatureS: tpm2.TPM2BECCParameter{Buffer: []byte{4, 5, 6}},
		}),
	}))
	f.Fuzz(func(t *testing.T, b []byte) {
		sig, err := ParseSignature(b)
		if err != nil {
			return
		}
		if !bytes.Equal(tpm2.Marshal(sig), b) {
			t.Errorf("ParseSignature accepted 0x%x, which does not marshal back", b)
		}
		EncodeSignature(sig)
	})
}

func FuzzParseName(f *testing.F) {
	f.Add(append([]byte{0x00, 0x22, 0x00, 0x0B}, make([]byte, 32)...))
	f.Add(append([]byte{0x00, 0x16, 0x00, 0x04}, make([]byte, 20)...))
	f.Add([]byte{0x00, 0x04, 0x40, 0x00, 0x00, 0x0B})
	f.Fuzz(func(t *testing.T, b []byte) {
		name, err := ParseName(b)
		if err != nil {
			return
		}
		if len(name) != len(b)-2 || !bytes.Equal(name, b[2:]) {
			t.Errorf("ParseName(0x%x) = 0x%x", b, name)
		}
	})
}
