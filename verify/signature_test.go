package verify

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"google.golang.org/protobuf/proto"

	"github.com/vcomlink/vcomlink/api/vcom"
)

// signedCase is a signature made by the simulator, with the public area and
// data that verify it.
type signedCase struct {
	name string
	key  *tpmKey
	data []byte
	sig  *vcom.TpmResponseSign
}

func signedCases(t *testing.T) []signedCase {
	k := keys(t)
	message := []byte("data that a guest signs")
	long := bytes.Repeat([]byte("0123456789abcdef"), 40)
	digest256 := sha256.Sum256(message)
	digest384 := sha512.Sum384(message)

	return []signedCase{
		{"restricted RSASSA", k.aik, message, k.signData(t, k.aik, tpm2.TPMAlgSHA256, message)},
		{"restricted RSASSA empty data", k.aik, nil, k.signData(t, k.aik, tpm2.TPMAlgSHA256, nil)},
		{"restricted RSASSA 640 bytes", k.aik, long, k.signData(t, k.aik, tpm2.TPMAlgSHA256, long)},
		{"restricted ECDSA", k.eccAK, message, k.signData(t, k.eccAK, tpm2.TPMAlgSHA256, message)},
		{"unrestricted ECDSA-SHA256", k.ecc, digest256[:], k.signDigest(t, k.ecc, tpm2.TPMAlgECDSA, tpm2.TPMAlgSHA256, digest256[:])},
		{"unrestricted ECDSA-SHA384", k.ecc, digest384[:], k.signDigest(t, k.ecc, tpm2.TPMAlgECDSA, tpm2.TPMAlgSHA384, digest384[:])},
		{"unrestricted RSAPSS-SHA384", k.pss, digest384[:], k.signDigest(t, k.pss, tpm2.TPMAlgNull, 0, digest384[:])},
	}
}

func TestVerifySignatureAccepts(t *testing.T) {
	for _, tc := range signedCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			if err := VerifySignature(tc.key.public, tc.data, tc.sig); err != nil {
				t.Errorf("VerifySignature: %v", err)
			}
		})
	}
}

func TestVerifySignatureLeadingZeros(t *testing.T) {
	k := keys(t)
	digest := sha256.Sum256([]byte("leading zeros"))
	sig := k.signDigest(t, k.ecc, tpm2.TPMAlgECDSA, tpm2.TPMAlgSHA256, digest[:])

	// A signer that keeps leading zero bytes is accepted as well.
	sig.EccSignatureR = append([]byte{0, 0}, sig.EccSignatureR...)
	if err := VerifySignature(k.ecc.public, digest[:], sig); err != nil {
		t.Errorf("VerifySignature: %v", err)
	}
}

func TestVerifySignatureRejects(t *testing.T) {
	k := keys(t)
	cases := signedCases(t)
	rsassa, ecdsaRestricted, ecdsaUnrestricted, pss := cases[0], cases[3], cases[4], cases[6]

	// change returns a copy of c with the response changed by edit.
	change := func(c signedCase, edit func(*vcom.TpmResponseSign)) *vcom.TpmResponseSign {
		sig := proto.Clone(c.sig).(*vcom.TpmResponseSign)
		edit(sig)
		return sig
	}
	flipped := func(b []byte) []byte {
		b = bytes.Clone(b)
		b[len(b)/2] ^= 0x01
		return b
	}
	generated := binary.BigEndian.AppendUint32(nil, uint32(tpm2.TPMGeneratedValue))

	for _, tc := range []struct {
		name string
		pub  *tpm2.TPMTPublic
		data []byte
		sig  *vcom.TpmResponseSign
		want string
	}{
		{"RSASSA tampered data", rsassa.key.public, flipped(rsassa.data), rsassa.sig, "invalid RSASSA-SHA256 signature"},
		{"RSASSA tampered signature", rsassa.key.public, rsassa.data,
			change(rsassa, func(s *vcom.TpmResponseSign) { s.RsaSignature = flipped(s.RsaSignature) }), "invalid RSASSA-SHA256 signature"},
		{"RSASSA other hash name", rsassa.key.public, rsassa.data,
			change(rsassa, func(s *vcom.TpmResponseSign) { s.RsaHash = "SHA384" }), "signature is RSASSA-SHA384 but the key's scheme is RSASSA-SHA256"},
		{"RSASSA unknown hash name", rsassa.key.public, rsassa.data,
			change(rsassa, func(s *vcom.TpmResponseSign) { s.RsaHash = "MD5" }), `unknown hash name "MD5"`},
		{"RSASSA named RSAPSS", rsassa.key.public, rsassa.data,
			change(rsassa, func(s *vcom.TpmResponseSign) { s.Algorithm = "RSAPSS" }), "signature is RSAPSS-SHA256 but the key's scheme is RSASSA-SHA256"},
		{"RSASSA named ECDSA", rsassa.key.public, rsassa.data,
			change(rsassa, func(s *vcom.TpmResponseSign) { s.Algorithm = "ECDSA" }), "ecc_hash"},
		{"unknown algorithm", rsassa.key.public, rsassa.data,
			change(rsassa, func(s *vcom.TpmResponseSign) { s.Algorithm = "RSAES" }), `unknown signature scheme "RSAES"`},
		{"RSA signature missing", rsassa.key.public, rsassa.data,
			change(rsassa, func(s *vcom.TpmResponseSign) { s.RsaSignature = nil }), "rsa_signature is empty"},
		{"RSA signature for another key", k.pss.public, rsassa.data, rsassa.sig, "signature is RSASSA-SHA256 but the key's scheme is RSAPSS-SHA384"},
		{"restricted key over TPM_GENERATED_VALUE", rsassa.key.public, append(generated, rsassa.data...), rsassa.sig, "begins with TPM_GENERATED_VALUE"},
		{"ECDSA restricted tampered data", ecdsaRestricted.key.public, flipped(ecdsaRestricted.data), ecdsaRestricted.sig, "invalid ECDSA-SHA256 signature"},
		{"ECDSA tampered digest", ecdsaUnrestricted.key.public, flipped(ecdsaUnrestricted.data), ecdsaUnrestricted.sig, "invalid ECDSA-SHA256 signature"},
		{"ECDSA tampered r", ecdsaUnrestricted.key.public, ecdsaUnrestricted.data,
			change(ecdsaUnrestricted, func(s *vcom.TpmResponseSign) { s.EccSignatureR = flipped(s.EccSignatureR) }), "invalid ECDSA-SHA256 signature"},
		{"ECDSA tampered s", ecdsaUnrestricted.key.public, ecdsaUnrestricted.data,
			change(ecdsaUnrestricted, func(s *vcom.TpmResponseSign) { s.EccSignatureS = flipped(s.EccSignatureS) }), "invalid ECDSA-SHA256 signature"},
		{"ECDSA other hash name", ecdsaUnrestricted.key.public, ecdsaUnrestricted.data,
			change(ecdsaUnrestricted, func(s *vcom.TpmResponseSign) { s.EccHash = "SHA384" }), "data must be a SHA384 digest of 48 bytes, but it is 32 bytes"},
		{"ECDSA hash in rsa_hash", ecdsaUnrestricted.key.public, ecdsaUnrestricted.data,
			change(ecdsaUnrestricted, func(s *vcom.TpmResponseSign) { s.RsaHash, s.EccHash = s.EccHash, "" }), `ecc_hash: unknown hash name ""`},
		{"ECDSA s missing", ecdsaUnrestricted.key.public, ecdsaUnrestricted.data,
			change(ecdsaUnrestricted, func(s *vcom.TpmResponseSign) { s.EccSignatureS = nil }), "ecc_signature_r or ecc_signature_s is empty"},
		{"ECDSA named RSASSA", ecdsaUnrestricted.key.public, ecdsaUnrestricted.data,
			change(ecdsaUnrestricted, func(s *vcom.TpmResponseSign) { s.Algorithm = "RSASSA" }), "rsa_hash"},
		{"ECDSA signature for another ECC key", ecdsaRestricted.key.public, ecdsaUnrestricted.data, ecdsaUnrestricted.sig, "invalid ECDSA-SHA256 signature"},
		{"unrestricted key with a message", ecdsaUnrestricted.key.public, []byte("not a digest"), ecdsaUnrestricted.sig, "data must be a SHA256 digest of 32 bytes, but it is 12 bytes"},
		{"RSAPSS tampered digest", pss.key.public, flipped(pss.data), pss.sig, "invalid RSAPSS-SHA384 signature"},
		{"RSAPSS tampered signature", pss.key.public, pss.data,
			change(pss, func(s *vcom.TpmResponseSign) { s.RsaSignature = flipped(s.RsaSignature) }), "invalid RSAPSS-SHA384 signature"},
		{"RSAPSS named RSASSA", pss.key.public, pss.data,
			change(pss, func(s *vcom.TpmResponseSign) { s.Algorithm = "RSASSA" }), "signature is RSASSA-SHA384 but the key's scheme is RSAPSS-SHA384"},
		{"key without sign attribute", k.rsaEK.public, rsassa.data, rsassa.sig, "key does not have the sign attribute"},
		{"public area missing", nil, rsassa.data, rsassa.sig, "public area is missing"},
		{"response missing", rsassa.key.public, rsassa.data, nil, "sign response is missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifySignature(tc.pub, tc.data, tc.sig)
			if err == nil {
				t.Fatal("VerifySignature succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("VerifySignature error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestEncodeSignatureVerifiesWithStdlib(t *testing.T) {
	k := keys(t)
	digest := sha256.Sum256([]byte("encoded"))

	ecdsaSig, err := SignatureFromResponse(k.signDigest(t, k.ecc, tpm2.TPMAlgECDSA, tpm2.TPMAlgSHA256, digest[:]))
	if err != nil {
		t.Fatalf("SignatureFromResponse: %v", err)
	}
	der, err := EncodeSignature(ecdsaSig)
	if err != nil {
		t.Fatalf("EncodeSignature: %v", err)
	}
	eccKey, err := PublicKey(k.ecc.public)
	if err != nil {
		t.Fatalf("PublicKey: %v", err)
	}
	if !ecdsa.VerifyASN1(eccKey.(*ecdsa.PublicKey), digest[:], der) {
		t.Error("ecdsa.VerifyASN1 rejected the DER ECDSA-Sig-Value")
	}

	message := []byte("encoded")
	rsaSig, err := SignatureFromResponse(k.signData(t, k.aik, tpm2.TPMAlgSHA256, message))
	if err != nil {
		t.Fatalf("SignatureFromResponse: %v", err)
	}
	raw, err := EncodeSignature(rsaSig)
	if err != nil {
		t.Fatalf("EncodeSignature: %v", err)
	}
	rsaKey, err := PublicKey(k.aik.public)
	if err != nil {
		t.Fatalf("PublicKey: %v", err)
	}
	if err := rsa.VerifyPKCS1v15(rsaKey.(*rsa.PublicKey), crypto.SHA256, digest[:], raw); err != nil {
		t.Errorf("rsa.VerifyPKCS1v15: %v", err)
	}
}
