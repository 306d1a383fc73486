package main

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// TestPublicKeyFileErrors checks that a key file that does not parse gets
// a short reason in plain words, not the text of go-tpm's decoder.
func TestPublicKeyFileErrors(t *testing.T) {
	dir := t.TempDir()
	public := tpm2.Marshal(tpm2.ECCSRKTemplate)
	message := writeTemp(t, dir, "message", []byte("message"))
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "but the file is empty"},
		{"short", []byte("junkjun"), "but the file ends inside a TPMT_PUBLIC, after 7 bytes"},
		{"short TPM2B", []byte("\x00\x07junkjun"), "but the file ends inside a TPM2B_PUBLIC, after 9 bytes"},
		{"trailing bytes", append(public, 0, 0), "but it has 2 trailing bytes after the"},
		{"unknown type", append([]byte{0xff, 0xff}, public[2:]...), "but its bytes are not a valid TPMT_PUBLIC"},
	} {
		key := writeTemp(t, dir, tc.name, tc.data)
		var stderr bytes.Buffer
		code := run([]string{"verify-sign", "--key", key, "--in", message, "--sig", message}, io.Discard, &stderr)
		if code != exitUsage {
			t.Errorf("%s: exit status %d; want %d", tc.name, code, exitUsage)
		}
		if want := key + " is not a public key file: expected a TPMT_PUBLIC"; !strings.Contains(stderr.String(), want) {
			t.Errorf("%s: error %q does not contain %q", tc.name, stderr.String(), want)
		}
		if !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%s: error %q does not contain %q", tc.name, stderr.String(), tc.want)
		}
		if strings.Contains(stderr.String(), "unmarshalling") || strings.Contains(stderr.String(), "tpm2.") {
			t.Errorf("%s: error %q contains the text of go-tpm's decoder", tc.name, stderr.String())
		}
	}
}
