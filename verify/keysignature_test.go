package verify

import (
	"bytes"
	"crypto/sha256"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// TestDecodeSignatureRoundTrip encodes each signature of the simulator as
// OpenSSL takes it, decodes it, and checks it with the bare public key.
func TestDecodeSignatureRoundTrip(t *testing.T) {
	for _, tc := range signedCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			sig, err := SignatureFromResponse(tc.sig)
			if err != nil {
				t.Fatal(err)
			}
			encoded, err := EncodeSignature(sig)
			if err != nil {
				t.Fatal(err)
			}
			hashAlg, hash, err := signatureHash(sig)
			if err != nil {
				t.Fatal(err)
			}

			decoded, err := DecodeSignature(sig.SigAlg, hashAlg, encoded)
			if err != nil {
				t.Fatalf("DecodeSignature: %v", err)
			}
			if !bytes.Equal(tpm2.Marshal(decoded), tpm2.Marshal(sig)) {
				t.Errorf("DecodeSignature = 0x%x, want 0x%x", tpm2.Marshal(decoded), tpm2.Marshal(sig))
			}

			digest := tc.data
			if tc.key.public.ObjectAttributes.Restricted {
				h := hash.New()
				h.Write(tc.data)
				digest = h.Sum(nil)
			}
			key, err := PublicKey(tc.key.public)
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifyDigest(key, decoded, digest); err != nil {
				t.Errorf("VerifyDigest: %v", err)
			}
		})
	}
}

func TestDecodeSignatureRejects(t *testing.T) {
	// A DER SEQUENCE of r = 1 and s = 2.
	der := []byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x02}
	for _, tc := range []struct {
		name   string
		scheme tpm2.TPMAlgID
		hash   tpm2.TPMAlgID
		b      []byte
		want   string
	}{
		{"empty", tpm2.TPMAlgRSASSA, tpm2.TPMAlgSHA256, nil, "signature is empty"},
		{"unknown hash", tpm2.TPMAlgRSASSA, tpm2.TPMAlgSM3256, []byte{1}, "unsupported hash algorithm"},
		{"unknown scheme", tpm2.TPMAlgECDAA, tpm2.TPMAlgSHA256, der, "unsupported signature scheme ECDAA"},
		{"ECDSA not DER", tpm2.TPMAlgECDSA, tpm2.TPMAlgSHA256, []byte{1, 2, 3}, "not a DER SEQUENCE of r and s"},
		{"ECDSA trailing bytes", tpm2.TPMAlgECDSA, tpm2.TPMAlgSHA256, append(der, 0), "1 bytes after its DER SEQUENCE"},
		{"ECDSA long-form length", tpm2.TPMAlgECDSA, tpm2.TPMAlgSHA256, append([]byte{0x30, 0x81, 0x06}, der[2:]...), "DER"},
		{"ECDSA negative r", tpm2.TPMAlgECDSA, tpm2.TPMAlgSHA256, []byte{0x30, 0x06, 0x02, 0x01, 0xFF, 0x02, 0x01, 0x02}, "not positive"},
		{"ECDSA zero s", tpm2.TPMAlgECDSA, tpm2.TPMAlgSHA256, []byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x00}, "not positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeSignature(tc.scheme, tc.hash, tc.b)
			if err == nil {
				t.Fatal("DecodeSignature succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("DecodeSignature error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestVerifyDigestRejects(t *testing.T) {
	k := keys(t)
	digest := sha256.Sum256([]byte("digest"))
	eccSig, err := SignatureFromResponse(k.signDigest(t, k.ecc, tpm2.TPMAlgECDSA, tpm2.TPMAlgSHA256, digest[:]))
	if err != nil {
		t.Fatal(err)
	}
	eccKey, err := PublicKey(k.ecc.public)
	if err != nil {
		t.Fatal(err)
	}
	aikKey, err := PublicKey(k.aik.public)
	if err != nil {
		t.Fatal(err)
	}
	other := sha256.Sum256([]byte("other digest"))

	for _, tc := range []struct {
		name   string
		key    any
		sig    *tpm2.TPMTSignature
		digest []byte
		want   string
	}{
		{"missing signature", eccKey, nil, digest[:], "signature is missing"},
		{"ECDSA with an RSA key", aikKey, eccSig, digest[:], "scheme ECDSA does not suit an RSA key"},
		{"unsupported key", "not a key", eccSig, digest[:], "unsupported public key type string"},
		{"short digest", eccKey, eccSig, digest[:31], "digest is 31 bytes but a SHA256 digest is 32 bytes"},
		{"other digest", eccKey, eccSig, other[:], "invalid ECDSA-SHA256 signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifyDigest(tc.key, tc.sig, tc.digest)
			if err == nil {
				t.Fatal("VerifyDigest succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("VerifyDigest error %q does not contain %q", err, tc.want)
			}
		})
	}
}
