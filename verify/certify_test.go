package verify

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"google.golang.org/protobuf/proto"

	"github.com/vcomlink/vcomlink/api/vcom"
)

func TestVerifyCertifyAccepts(t *testing.T) {
	k := keys(t)
	for _, tc := range []struct {
		name   string
		object *tpmKey
		signer *tpmKey
		nonce  []byte
	}{
		{"ECC key with nonce", k.ecc, k.aik, []byte("verifier nonce 0123456789")},
		{"ECC key without nonce", k.ecc, k.aik, nil},
		{"RSA key with nonce", k.pss, k.aik, []byte{0x01}},
		{"signed by an ECC AK", k.ecc, k.eccAK, []byte("nonce")},
		{"AIK certifies itself", k.aik, k.aik, []byte("nonce")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rsp := k.certify(t, tc.object, tc.signer, tc.nonce)
			got, err := VerifyCertify(tc.signer.public, tc.nonce, rsp)
			if err != nil {
				t.Fatalf("VerifyCertify: %v", err)
			}

			if !bytes.Equal(got.Name, tc.object.name.Buffer) {
				t.Errorf("Name is 0x%x, want 0x%x", got.Name, tc.object.name.Buffer)
			}
			if !bytes.Equal(got.ExtraData, tc.nonce) {
				t.Errorf("ExtraData is 0x%x, want 0x%x", got.ExtraData, tc.nonce)
			}
			if len(got.QualifiedName) != len(tc.object.name.Buffer) {
				t.Errorf("QualifiedName is %d bytes, want %d", len(got.QualifiedName), len(tc.object.name.Buffer))
			}
			if len(got.QualifiedSigner) != len(tc.signer.name.Buffer) {
				t.Errorf("QualifiedSigner is %d bytes, want %d", len(got.QualifiedSigner), len(tc.signer.name.Buffer))
			}
			if got.ClockInfo.Clock == 0 {
				t.Error("ClockInfo.Clock is 0")
			}
			if !bytes.Equal(tpm2.Marshal(got.Public), tc.object.raw) {
				t.Error("Public differs from the certified object's public area")
			}
			want, err := PublicKey(tc.object.public)
			if err != nil {
				t.Fatal(err)
			}
			if key, ok := got.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !key.Equal(want) {
				t.Errorf("PublicKey is %v, want %v", got.PublicKey, want)
			}
		})
	}
}

func TestVerifyCertifyRejects(t *testing.T) {
	k := keys(t)
	nonce := []byte("nonce-1")
	withNonce := k.certify(t, k.ecc, k.aik, nonce)
	withoutNonce := k.certify(t, k.ecc, k.aik, nil)

	change := func(rsp *vcom.TpmResponseCertify, edit func(*vcom.TpmResponseCertify)) *vcom.TpmResponseCertify {
		c := proto.Clone(rsp).(*vcom.TpmResponseCertify)
		edit(c)
		return c
	}
	// In a TPMS_ATTEST, the clock follows magic (4 bytes), type (2), the
	// signer's qualified name (2+34 for SHA-256) and extraData.
	clockOffset := 4 + 2 + (2 + 34) + (2 + len(nonce))
	parsed, err := ParseAttest(withNonce.Attest)
	if err != nil {
		t.Fatal(err)
	}
	if got := binary.BigEndian.Uint64(withNonce.Attest[clockOffset:]); got != parsed.ClockInfo.Clock {
		t.Fatalf("clock at offset %d is %d, want %d", clockOffset, got, parsed.ClockInfo.Clock)
	}
	otherAIK, _ := softwareAIK(t)

	for _, tc := range []struct {
		name  string
		aik   *tpm2.TPMTPublic
		nonce []byte
		rsp   *vcom.TpmResponseCertify
		want  string
	}{
		{"wrong nonce", k.aik.public, []byte("nonce-2"), withNonce, "extraData is 0x6e6f6e63652d31 but the nonce is 0x6e6f6e63652d32"},
		{"nonce expected but absent", k.aik.public, nonce, withoutNonce, "extraData is 0x but the nonce is 0x6e6f6e63652d31"},
		{"nonce present but not expected", k.aik.public, nil, withNonce, "extraData is 0x6e6f6e63652d31 but the nonce is 0x"},
		{"swapped public area", k.aik.public, nonce,
			change(withNonce, func(r *vcom.TpmResponseCertify) { r.Public = bytes.Clone(k.pss.raw) }), "certified name is 0x"},
		{"tampered public area", k.aik.public, nonce,
			change(withNonce, func(r *vcom.TpmResponseCertify) { r.Public[len(r.Public)-1] ^= 0x01 }), "certified name is 0x"},
		{"public area with trailing byte", k.aik.public, nonce,
			change(withNonce, func(r *vcom.TpmResponseCertify) { r.Public = append(r.Public, 0) }), "public: invalid TPMT_PUBLIC: 1 trailing bytes"},
		{"tampered attest", k.aik.public, nonce,
			change(withNonce, func(r *vcom.TpmResponseCertify) { r.Attest[clockOffset+7] ^= 0x01 }), "sig over attest: invalid RSASSA-SHA256 signature"},
		{"attest with trailing byte", k.aik.public, nonce,
			change(withNonce, func(r *vcom.TpmResponseCertify) { r.Attest = append(r.Attest, 0) }), "attest: invalid TPMS_ATTEST: 1 trailing bytes"},
		{"attest truncated", k.aik.public, nonce,
			change(withNonce, func(r *vcom.TpmResponseCertify) { r.Attest = r.Attest[:len(r.Attest)-1] }), "attest: invalid TPMS_ATTEST"},
		{"attest missing", k.aik.public, nonce,
			change(withNonce, func(r *vcom.TpmResponseCertify) { r.Attest = nil }), "attest: TPMS_ATTEST is empty"},
		{"tampered sig", k.aik.public, nonce,
			change(withNonce, func(r *vcom.TpmResponseCertify) { r.Sig[len(r.Sig)-1] ^= 0x01 }), "sig over attest: invalid RSASSA-SHA256 signature"},
		{"sig with trailing byte", k.aik.public, nonce,
			change(withNonce, func(r *vcom.TpmResponseCertify) { r.Sig = append(r.Sig, 0) }), "sig: invalid TPMT_SIGNATURE: 1 trailing bytes"},
		{"other AIK of the same type", otherAIK, nonce, withNonce, "sig over attest: invalid RSASSA-SHA256 signature"},
		{"unrestricted RSA signer", k.pss.public, nonce, withNonce, "AIK is not a restricted signing key"},
		{"other AIK of another type", k.eccAK.public, nonce, withNonce, "sig: scheme RSASSA does not suit an ECC key"},
		{"unrestricted signer", k.ecc.public, nonce, withNonce, "AIK is not a restricted signing key"},
		{"EK as signer", k.rsaEK.public, nonce, withNonce, "AIK is not a restricted signing key"},
		{"AIK missing", nil, nonce, withNonce, "AIK public area is missing"},
		{"response missing", k.aik.public, nonce, nil, "response is missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := VerifyCertify(tc.aik, tc.nonce, tc.rsp)
			if err == nil {
				t.Fatal("VerifyCertify succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("VerifyCertify error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestVerifyCertifyRejectsQuote(t *testing.T) {
	k := keys(t)
	nonce := []byte("nonce")
	quote, err := tpm2.Quote{
		SignHandle:     k.aik.authHandle(),
		QualifyingData: tpm2.TPM2BData{Buffer: nonce},
		InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
		PCRSelect: tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{
			{Hash: tpm2.TPMAlgSHA256, PCRSelect: []byte{0x01, 0x00, 0x00}},
		}},
	}.Execute(k.tpm)
	if err != nil {
		t.Fatalf("Quote: %v", err)
	}

	// A quote is a valid attestation by the AIK, but not a certification.
	rsp := &vcom.TpmResponseCertify{
		Public: bytes.Clone(k.ecc.raw),
		Sig:    tpm2.Marshal(quote.Signature),
		Attest: quote.Quoted.Bytes(),
	}
	_, err = VerifyCertify(k.aik.public, nonce, rsp)
	if err == nil {
		t.Fatal("VerifyCertify accepted a quote")
	}
	if want := "attest type is 0x8018, expected TPM_ST_ATTEST_CERTIFY 0x8017"; !strings.Contains(err.Error(), want) {
		t.Errorf("VerifyCertify error %q does not contain %q", err, want)
	}
}

// softwareAIK returns a restricted RSASSA-SHA256 signing key whose private
// half is in software, to sign attestations that no TPM would produce.
func softwareAIK(t *testing.T) (*tpm2.TPMTPublic, *rsa.PrivateKey) {
	t.Helper()
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	public := rsaSigningTemplate(true, tpm2.TPMAlgRSASSA, tpm2.TPMAlgSHA256)
	public.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: priv.N.Bytes()})
	return &public, priv
}

func TestVerifyCertifyRejectsMagic(t *testing.T) {
	k := keys(t)
	aik, priv := softwareAIK(t)
	nonce := []byte("nonce")

	attest := tpm2.Marshal(tpm2.TPMSAttest{
		Magic:     tpm2.TPMGenerated(0x01020304),
		Type:      tpm2.TPMSTAttestCertify,
		ExtraData: tpm2.TPM2BData{Buffer: nonce},
		Attested: tpm2.NewTPMUAttest(tpm2.TPMSTAttestCertify, &tpm2.TPMSCertifyInfo{
			Name:          k.ecc.name,
			QualifiedName: k.ecc.name,
		}),
	})
	digest := sha256.Sum256(attest)
	sigBytes, err := rsa.SignPKCS1v15(rand.Reader, priv, crypto.SHA256, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := tpm2.TPMTSignature{
		SigAlg: tpm2.TPMAlgRSASSA,
		Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgRSASSA, &tpm2.TPMSSignatureRSA{
			Hash: tpm2.TPMAlgSHA256,
			Sig:  tpm2.TPM2BPublicKeyRSA{Buffer: sigBytes},
		}),
	}

	rsp := &vcom.TpmResponseCertify{Public: bytes.Clone(k.ecc.raw), Sig: tpm2.Marshal(sig), Attest: attest}
	_, err = VerifyCertify(aik, nonce, rsp)
	if err == nil {
		t.Fatal("VerifyCertify accepted an attestation without TPM_GENERATED_VALUE")
	}
	if want := "attest magic is 0x01020304, expected TPM_GENERATED_VALUE 0xff544347"; !strings.Contains(err.Error(), want) {
		t.Errorf("VerifyCertify error %q does not contain %q", err, want)
	}
}

func TestVerifyCertifyWithPublicKey(t *testing.T) {
	k := keys(t)
	nonce := []byte("nonce for a PEM AIK")
	rsp := k.certify(t, k.ecc, k.aik, nonce)
	aik, err := PublicKey(k.aik.public)
	if err != nil {
		t.Fatal(err)
	}

	got, err := VerifyCertifyWithPublicKey(aik, nonce, rsp)
	if err != nil {
		t.Fatalf("VerifyCertifyWithPublicKey: %v", err)
	}
	if !bytes.Equal(got.Name, k.ecc.name.Buffer) {
		t.Errorf("Name is 0x%x, want 0x%x", got.Name, k.ecc.name.Buffer)
	}

	eccKey, err := PublicKey(k.ecc.public)
	if err != nil {
		t.Fatal(err)
	}
	otherObject := k.certify(t, k.pss, k.aik, nonce)
	for _, tc := range []struct {
		name  string
		key   crypto.PublicKey
		nonce []byte
		rsp   *vcom.TpmResponseCertify
		want  string
	}{
		{"other key", eccKey, nonce, rsp, "scheme RSASSA does not suit an ECC key"},
		{"other nonce", aik, []byte("replayed"), rsp, "extraData is 0x"},
		{"other public area", aik, nonce, &vcom.TpmResponseCertify{Public: otherObject.Public, Sig: rsp.Sig, Attest: rsp.Attest},
			"certified name is 0x"},
		{"missing response", aik, nonce, nil, "response is missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := VerifyCertifyWithPublicKey(tc.key, tc.nonce, tc.rsp)
			if err == nil {
				t.Fatal("VerifyCertifyWithPublicKey succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("VerifyCertifyWithPublicKey error %q does not contain %q", err, tc.want)
			}
		})
	}
}
