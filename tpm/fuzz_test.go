package tpm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// FuzzUnwrap2B checks the parser of the TPM2B fields that guests send
// (cred and secret of activatecred): it never panics, accepts exactly the
// inputs whose size prefix matches a non-empty rest, returns that rest,
// and marks every rejection ErrInvalid.
func FuzzUnwrap2B(f *testing.F) {
	f.Add([]byte{0, 1, 0xaa})
	f.Add([]byte{0, 0})
	f.Add([]byte{0})
	f.Add([]byte{0xff, 0xff, 1})
	f.Add(append([]byte{0x01, 0x00}, make([]byte, 256)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		body, err := unwrap2B("activatecred", 0x81000003, "cred", "TPM2B_ID_OBJECT", b)
		valid := len(b) > 2 && int(binary.BigEndian.Uint16(b)) == len(b)-2
		if err != nil {
			if valid {
				t.Fatalf("unwrap2B(%x) rejected a valid TPM2B: %v", b, err)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("unwrap2B(%x) = %v; want an ErrInvalid error", b, err)
			}
			return
		}
		if !valid {
			t.Fatalf("unwrap2B(%x) accepted a TPM2B whose prefix does not match", b)
		}
		if !bytes.Equal(body, b[2:]) {
			t.Fatalf("unwrap2B(%x) = %x; want %x", b, body, b[2:])
		}
	})
}
