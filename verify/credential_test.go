package verify

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// activate runs TPM2_ActivateCredential as the agent does, with the EK
// authorised by a policy session that runs PolicySecret(TPM_RH_ENDORSEMENT).
// cred and encSecret are the wire forms, with size prefixes.
func (k *simKeys) activate(t *testing.T, ek, aik *tpmKey, cred, encSecret []byte) ([]byte, error) {
	t.Helper()
	idObject, err := tpm2.Unmarshal[tpm2.TPM2BIDObject](cred)
	if err != nil {
		t.Fatalf("cred is not a TPM2B_ID_OBJECT: %v", err)
	}
	seed, err := tpm2.Unmarshal[tpm2.TPM2BEncryptedSecret](encSecret)
	if err != nil {
		t.Fatalf("secret is not a TPM2B_ENCRYPTED_SECRET: %v", err)
	}

	session, closeSession, err := tpm2.PolicySession(k.tpm, tpm2.TPMAlgSHA256, 16)
	if err != nil {
		t.Fatalf("starting a policy session: %v", err)
	}
	defer func() {
		if err := closeSession(); err != nil {
			t.Errorf("flushing the policy session: %v", err)
		}
	}()

	_, err = tpm2.PolicySecret{
		AuthHandle:    tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(nil)},
		PolicySession: session.Handle(),
		NonceTPM:      session.NonceTPM(),
	}.Execute(k.tpm)
	if err != nil {
		t.Fatalf("PolicySecret: %v", err)
	}

	rsp, err := tpm2.ActivateCredential{
		ActivateHandle: aik.authHandle(),
		KeyHandle:      tpm2.AuthHandle{Handle: ek.handle, Name: ek.name, Auth: session},
		CredentialBlob: *idObject,
		Secret:         *seed,
	}.Execute(k.tpm)
	if err != nil {
		return nil, err
	}
	return rsp.CertInfo.Buffer, nil
}

func TestMakeCredentialActivates(t *testing.T) {
	k := keys(t)
	for _, tc := range []struct {
		name   string
		ek     *tpmKey
		aik    *tpmKey
		secret []byte
	}{
		{"RSA EK", k.rsaEK, k.aik, []byte("a verifier's secret")},
		{"ECC EK", k.eccEK, k.aik, []byte("another secret")},
		{"ECC AK", k.rsaEK, k.eccAK, []byte{0x00, 0x01}},
		{"secret of digest size", k.rsaEK, k.aik, bytes.Repeat([]byte{0xA5}, 32)},
		{"one-byte secret", k.rsaEK, k.aik, []byte{0x42}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cred, encSecret, err := MakeCredential(rand.Reader, tc.ek.public, tc.aik.wireName(), tc.secret)
			if err != nil {
				t.Fatalf("MakeCredential: %v", err)
			}
			if got := int(binary.BigEndian.Uint16(cred)); got != len(cred)-2 {
				t.Errorf("cred size prefix is %d, want %d", got, len(cred)-2)
			}
			if got := int(binary.BigEndian.Uint16(encSecret)); got != len(encSecret)-2 {
				t.Errorf("secret size prefix is %d, want %d", got, len(encSecret)-2)
			}

			recovered, err := k.activate(t, tc.ek, tc.aik, cred, encSecret)
			if err != nil {
				t.Fatalf("ActivateCredential: %v", err)
			}
			if !bytes.Equal(recovered, tc.secret) {
				t.Errorf("ActivateCredential recovered 0x%x, want 0x%x", recovered, tc.secret)
			}
		})
	}
}

func TestMakeCredentialWrongNameFails(t *testing.T) {
	k := keys(t)
	// The credential names the ECC key but is activated with the AIK.
	cred, encSecret, err := MakeCredential(rand.Reader, k.rsaEK.public, k.ecc.wireName(), []byte("secret"))
	if err != nil {
		t.Fatalf("MakeCredential: %v", err)
	}
	if _, err := k.activate(t, k.rsaEK, k.aik, cred, encSecret); err == nil {
		t.Fatal("ActivateCredential succeeded for a credential made for another name")
	}
}

func TestMakeCredentialWrongEKFails(t *testing.T) {
	k := keys(t)
	cred, encSecret, err := MakeCredential(rand.Reader, k.eccEK.public, k.aik.wireName(), []byte("secret"))
	if err != nil {
		t.Fatalf("MakeCredential: %v", err)
	}
	if _, err := k.activate(t, k.rsaEK, k.aik, cred, encSecret); err == nil {
		t.Fatal("ActivateCredential succeeded with an EK the credential was not made for")
	}
}

func TestMakeCredentialTamperedFails(t *testing.T) {
	k := keys(t)
	cred, encSecret, err := MakeCredential(rand.Reader, k.rsaEK.public, k.aik.wireName(), []byte("secret"))
	if err != nil {
		t.Fatalf("MakeCredential: %v", err)
	}
	cred[len(cred)-1] ^= 0x01
	if _, err := k.activate(t, k.rsaEK, k.aik, cred, encSecret); err == nil {
		t.Fatal("ActivateCredential succeeded with a tampered credential")
	}
}

func TestMakeCredentialRejects(t *testing.T) {
	k := keys(t)
	name := k.aik.wireName()

	for _, tc := range []struct {
		name    string
		ek      *tpm2.TPMTPublic
		aikName []byte
		secret  []byte
		want    string
	}{
		{"secret too long", k.rsaEK.public, name, make([]byte, 33), "secret is 33 bytes but the EK's nameAlg SHA256 allows at most 32"},
		{"empty secret", k.rsaEK.public, name, nil, "secret is empty"},
		{"EK is a signing key", k.aik.public, name, []byte("s"), "EK is not a restricted decryption key"},
		{"EK is unrestricted", k.ecc.public, name, []byte("s"), "EK is not a restricted decryption key"},
		{"EK missing", nil, name, []byte("s"), "EK public area is missing"},
		{"name without prefix", k.rsaEK.public, name[2:], []byte("s"), "size prefix is"},
		{"name with short prefix", k.rsaEK.public, append([]byte{0x00, 0x21}, name[2:]...), []byte("s"), "size prefix is 33 but 34 bytes follow"},
		{"name too short", k.rsaEK.public, []byte{0x00}, []byte("s"), "shorter than the 2-byte size prefix"},
		{"name of a handle", k.rsaEK.public, []byte{0x00, 0x04, 0x40, 0x00, 0x00, 0x0B}, []byte("s"), "unsupported hash algorithm"},
		{"name digest truncated", k.rsaEK.public, append([]byte{0x00, 0x21}, name[2:35]...), []byte("s"), "31-byte digest"},
		{"name digest wrong length", k.rsaEK.public, []byte{0x00, 0x04, 0x00, 0x0B, 0x01, 0x02}, []byte("s"), "2-byte digest but its nameAlg SHA256 produces 32 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := MakeCredential(rand.Reader, tc.ek, tc.aikName, tc.secret)
			if err == nil {
				t.Fatal("MakeCredential succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("MakeCredential error %q does not contain %q", err, tc.want)
			}
		})
	}
}
