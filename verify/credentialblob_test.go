package verify

import (
	"bytes"
	"crypto/rand"
	"strings"
	"testing"
)

func TestCredentialBlobActivates(t *testing.T) {
	k := keys(t)
	secret := []byte("secret in a tpm2-tools blob")
	cred, encSecret, err := MakeCredential(rand.Reader, k.rsaEK.public, k.aik.wireName(), secret)
	if err != nil {
		t.Fatalf("MakeCredential: %v", err)
	}

	blob, err := MarshalCredentialBlob(cred, encSecret)
	if err != nil {
		t.Fatalf("MarshalCredentialBlob: %v", err)
	}
	header := []byte{0xBA, 0xDC, 0xC0, 0xDE, 0, 0, 0, 1}
	if !bytes.HasPrefix(blob, header) {
		t.Errorf("blob begins with 0x%x, want 0x%x", blob[:8], header)
	}
	if want := 8 + len(cred) + len(encSecret); len(blob) != want {
		t.Errorf("blob is %d bytes, want %d", len(blob), want)
	}

	gotCred, gotSecret, err := ParseCredentialBlob(blob)
	if err != nil {
		t.Fatalf("ParseCredentialBlob: %v", err)
	}
	if !bytes.Equal(gotCred, cred) {
		t.Errorf("cred is 0x%x, want 0x%x", gotCred, cred)
	}
	if !bytes.Equal(gotSecret, encSecret) {
		t.Errorf("secret is 0x%x, want 0x%x", gotSecret, encSecret)
	}

	recovered, err := k.activate(t, k.rsaEK, k.aik, gotCred, gotSecret)
	if err != nil {
		t.Fatalf("ActivateCredential: %v", err)
	}
	if !bytes.Equal(recovered, secret) {
		t.Errorf("ActivateCredential recovered 0x%x, want 0x%x", recovered, secret)
	}
}

func TestParseCredentialBlobRejects(t *testing.T) {
	header := []byte{0xBA, 0xDC, 0xC0, 0xDE, 0, 0, 0, 1}
	with := func(parts ...[]byte) []byte { return bytes.Join(append([][]byte{header}, parts...), nil) }
	cred := []byte{0, 3, 1, 2, 3}
	secret := []byte{0, 2, 9, 9}

	for _, tc := range []struct {
		name string
		blob []byte
		want string
	}{
		{"empty", nil, "0 bytes, shorter than its 8-byte header"},
		{"header only", header, "TPM2B_ID_OBJECT is missing or truncated"},
		{"wrong magic", append([]byte{0xDE, 0xC0, 0xDC, 0xBA, 0, 0, 0, 1}, cred...), "begins with 0xdec0dcba, not the magic 0xbadcc0de"},
		{"wrong version", append([]byte{0xBA, 0xDC, 0xC0, 0xDE, 0, 0, 0, 2}, cred...), "version 2, expected 1"},
		{"empty ID object", with([]byte{0, 0}, secret), "TPM2B_ID_OBJECT is empty"},
		{"ID object past the end", with([]byte{0, 9, 1, 2}), "TPM2B_ID_OBJECT size prefix is 9 but only 2 bytes follow"},
		{"secret missing", with(cred), "TPM2B_ENCRYPTED_SECRET is missing or truncated: 0 bytes"},
		{"secret past the end", with(cred, []byte{0, 5, 1}), "TPM2B_ENCRYPTED_SECRET size prefix is 5 but only 1 bytes follow"},
		{"trailing bytes", with(cred, secret, []byte{7}), "1 trailing bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ParseCredentialBlob(tc.blob)
			if err == nil {
				t.Fatal("ParseCredentialBlob succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseCredentialBlob error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestMarshalCredentialBlobRejects(t *testing.T) {
	good := []byte{0, 2, 1, 2}
	for _, tc := range []struct {
		name         string
		cred, secret []byte
		want         string
	}{
		{"cred without prefix", []byte{1}, good, "TPM2B_ID_OBJECT is missing or truncated"},
		{"cred prefix too small", []byte{0, 1, 1, 2}, good, "TPM2B_ID_OBJECT size prefix is 1 but 2 bytes follow"},
		{"secret prefix too large", good, []byte{0, 3, 1, 2}, "TPM2B_ENCRYPTED_SECRET size prefix is 3 but only 2 bytes follow"},
		{"empty secret", good, []byte{0, 0}, "TPM2B_ENCRYPTED_SECRET is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := MarshalCredentialBlob(tc.cred, tc.secret)
			if err == nil {
				t.Fatal("MarshalCredentialBlob succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("MarshalCredentialBlob error %q does not contain %q", err, tc.want)
			}
		})
	}
}
