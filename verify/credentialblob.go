package verify

import (
	"encoding/binary"
	"fmt"
)

// The credential blob of tpm2-tools begins with this magic number and
// version, both 4-byte big-endian integers.
const (
	credentialBlobMagic   = 0xBADCC0DE
	credentialBlobVersion = 1
	credentialBlobHeader  = 8
)

// MarshalCredentialBlob returns a credential in the file format that
// tpm2_makecredential writes and tpm2_activatecredential reads (tpm2-tools
// 5.4): the magic 0xBADCC0DE and version 1, each a 4-byte big-endian
// integer, then the TPM2B_ID_OBJECT and the TPM2B_ENCRYPTED_SECRET.
//
// cred and encSecret carry their 2-byte size prefixes, as MakeCredential
// returns them. A prefix that does not match the length is an error.
func MarshalCredentialBlob(cred, encSecret []byte) ([]byte, error) {
	if err := checkTPM2B("TPM2B_ID_OBJECT", cred); err != nil {
		return nil, fmt.Errorf("credential blob: %w", err)
	}
	if err := checkTPM2B("TPM2B_ENCRYPTED_SECRET", encSecret); err != nil {
		return nil, fmt.Errorf("credential blob: %w", err)
	}

	b := make([]byte, credentialBlobHeader, credentialBlobHeader+len(cred)+len(encSecret))
	binary.BigEndian.PutUint32(b[0:4], credentialBlobMagic)
	binary.BigEndian.PutUint32(b[4:8], credentialBlobVersion)
	b = append(b, cred...)
	b = append(b, encSecret...)
	return b, nil
}

// ParseCredentialBlob splits a credential file that tpm2_makecredential
// wrote (see MarshalCredentialBlob) into the TPM2B_ID_OBJECT and the
// TPM2B_ENCRYPTED_SECRET, each with its 2-byte size prefix, as
// TpmRequestGeneratedCred carries them. The results share b's memory.
//
// A wrong magic or version, a size prefix that runs past the end, an empty
// structure and trailing bytes are errors.
func ParseCredentialBlob(b []byte) (cred, encSecret []byte, err error) {
	if len(b) < credentialBlobHeader {
		return nil, nil, fmt.Errorf("credential blob is %d bytes, shorter than its %d-byte header",
			len(b), credentialBlobHeader)
	}
	if magic := binary.BigEndian.Uint32(b[0:4]); magic != credentialBlobMagic {
		return nil, nil, fmt.Errorf("credential blob begins with 0x%08x, not the magic 0x%08x of tpm2_makecredential",
			magic, uint32(credentialBlobMagic))
	}
	if version := binary.BigEndian.Uint32(b[4:8]); version != credentialBlobVersion {
		return nil, nil, fmt.Errorf("credential blob has version %d, expected %d", version, credentialBlobVersion)
	}

	rest := b[credentialBlobHeader:]
	cred, rest, err = splitTPM2B("TPM2B_ID_OBJECT", rest)
	if err != nil {
		return nil, nil, fmt.Errorf("credential blob: %w", err)
	}
	encSecret, rest, err = splitTPM2B("TPM2B_ENCRYPTED_SECRET", rest)
	if err != nil {
		return nil, nil, fmt.Errorf("credential blob: %w", err)
	}
	if len(rest) > 0 {
		return nil, nil, fmt.Errorf("credential blob: %d trailing bytes after the TPM2B_ENCRYPTED_SECRET", len(rest))
	}
	return cred, encSecret, nil
}

// splitTPM2B splits the TPM2B at the start of b, size prefix included, from
// the bytes after it. An empty TPM2B is an error.
func splitTPM2B(structure string, b []byte) (tpm2b, rest []byte, err error) {
	if len(b) < 2 {
		return nil, nil, fmt.Errorf("%s is missing or truncated: %d bytes left for its 2-byte size prefix",
			structure, len(b))
	}
	size := int(binary.BigEndian.Uint16(b))
	if size == 0 {
		return nil, nil, fmt.Errorf("%s is empty", structure)
	}
	if size > len(b)-2 {
		return nil, nil, fmt.Errorf("%s size prefix is %d but only %d bytes follow", structure, size, len(b)-2)
	}
	return b[:2+size], b[2+size:], nil
}

// checkTPM2B checks that b is one non-empty TPM2B whose size prefix equals
// the length of what follows.
func checkTPM2B(structure string, b []byte) error {
	tpm2b, rest, err := splitTPM2B(structure, b)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("%s size prefix is %d but %d bytes follow", structure, len(tpm2b)-2, len(b)-2)
	}
	return nil
}
