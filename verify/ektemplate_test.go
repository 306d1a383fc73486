package verify

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// TestEKPublicMatchesTPM checks that the public area built from an EK's
// public key is the one the TPM made from the same TCG template, byte for
// byte, and that a credential made for it activates.
func TestEKPublicMatchesTPM(t *testing.T) {
	k := keys(t)
	for _, tc := range []struct {
		name string
		ek   *tpmKey
	}{
		{"RSA", k.rsaEK},
		{"ECC", k.eccEK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key, err := PublicKey(tc.ek.public)
			if err != nil {
				t.Fatal(err)
			}
			public, err := EKPublic(key)
			if err != nil {
				t.Fatalf("EKPublic: %v", err)
			}
			if got := tpm2.Marshal(public); !bytes.Equal(got, tc.ek.raw) {
				t.Errorf("EKPublic is 0x%x, want the TPM's 0x%x", got, tc.ek.raw)
			}

			secret := []byte("secret for a certified EK")
			cred, encSecret, err := MakeCredential(rand.Reader, public, k.aik.wireName(), secret)
			if err != nil {
				t.Fatalf("MakeCredential: %v", err)
			}
			recovered, err := k.activate(t, tc.ek, k.aik, cred, encSecret)
			if err != nil {
				t.Fatalf("ActivateCredential: %v", err)
			}
			if !bytes.Equal(recovered, secret) {
				t.Errorf("ActivateCredential recovered 0x%x, want 0x%x", recovered, secret)
			}
		})
	}
}

func TestEKPublicRejects(t *testing.T) {
	rsa3072, err := rsa.GenerateKey(rand.Reader, 3072)
	if err != nil {
		t.Fatal(err)
	}
	rsa2048, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	exponent3 := rsa2048.PublicKey
	exponent3.E = 3
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edKey, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		key  any
		want string
	}{
		{"RSA-3072", &rsa3072.PublicKey, "RSA key of 3072 bits does not fit the TCG default template"},
		{"exponent 3", &exponent3, "RSA exponent 3 does not fit"},
		{"P-384", &p384.PublicKey, "ECC curve P-384 does not fit the TCG default template"},
		{"Ed25519", edKey, "unsupported public key type ed25519.PublicKey"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := EKPublic(tc.key)
			if err == nil {
				t.Fatal("EKPublic succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("EKPublic error %q does not contain %q", err, tc.want)
			}
		})
	}
}
