package tpm

import (
	"bytes"
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/internal/simtest"
)

// TestSendReadPublicMatchesGoTPM reads every key of the layout with the
// direct ReadPublic and with go-tpm's, on the simulator, and compares.
func TestSendReadPublicMatchesGoTPM(t *testing.T) {
	tt := simtest.Start(t)
	for _, h := range []uint32{vcom.HandleEK, vcom.HandleAIK, vcom.HandleQuoteKey, vcom.HandleECDHKey, vcom.HandleDeviceKey} {
		want, err := tpm2.ReadPublic{ObjectHandle: tpm2.TPMHandle(h)}.Execute(tt)
		if err != nil {
			t.Fatal(err)
		}
		public, name, err := sendReadPublic(tt, h)
		if err != nil {
			t.Fatalf("sendReadPublic(0x%08x): %v", h, err)
		}
		if !bytes.Equal(public, want.OutPublic.Bytes()) {
			t.Errorf("0x%08x: public area differs from go-tpm's", h)
		}
		if !bytes.Equal(name.Buffer, want.Name.Buffer) {
			t.Errorf("0x%08x: name %x; go-tpm read %x", h, name.Buffer, want.Name.Buffer)
		}
	}

	_, goErr := tpm2.ReadPublic{ObjectHandle: tpm2.TPMHandle(0x81000099)}.Execute(tt)
	_, _, err := sendReadPublic(tt, 0x81000099)
	var rc, goRC tpm2.TPMRC
	if !errors.As(err, &rc) || !errors.As(goErr, &goRC) || rc != goRC {
		t.Errorf("missing handle: error %v; go-tpm returned %v", err, goErr)
	}
	if !errors.Is(err, tpm2.TPMRCHandle) {
		t.Errorf("missing handle: error %v is not TPM_RC_HANDLE", err)
	}
}

func TestParseReadPublicResponseRejects(t *testing.T) {
	valid := []byte{
		0x80, 0x01, 0, 0, 0, 20, 0, 0, 0, 0, // header, 20 bytes, success
		0, 2, 0xaa, 0xbb, // outPublic
		0, 2, 0x00, 0x0b, // name
		0, 0, // qualifiedName
	}
	if public, name, err := parseReadPublicResponse(valid); err != nil || !bytes.Equal(public, []byte{0xaa, 0xbb}) || !bytes.Equal(name.Buffer, []byte{0, 0x0b}) {
		t.Fatalf("valid response: %x, %x, %v", public, name.Buffer, err)
	}

	with := func(change func(b []byte) []byte) []byte {
		return change(append([]byte(nil), valid...))
	}
	cases := map[string][]byte{
		"empty":              nil,
		"short header":       valid[:9],
		"size too large":     with(func(b []byte) []byte { b[5] = 21; return b }),
		"size too small":     with(func(b []byte) []byte { b[5] = 19; return b }),
		"sessions tag":       with(func(b []byte) []byte { b[1] = 0x02; return b }),
		"outPublic overruns": with(func(b []byte) []byte { b[11] = 9; return b }),
		"empty outPublic":    {0x80, 0x01, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		"no qualifiedName":   with(func(b []byte) []byte { b[5] = 18; return b[:18] }),
		"trailing bytes":     with(func(b []byte) []byte { b[5] = 21; return append(b, 0) }),
	}
	for name, rsp := range cases {
		if _, _, err := parseReadPublicResponse(rsp); err == nil {
			t.Errorf("%s: parsed; want an error", name)
		}
	}

	failure := []byte{0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x01, 0x8b}
	if _, _, err := parseReadPublicResponse(failure); !errors.Is(err, tpm2.TPMRCHandle) {
		t.Errorf("error response: %v; want TPM_RC_HANDLE", err)
	}
}

func FuzzParseReadPublicResponse(f *testing.F) {
	f.Add([]byte{0x80, 0x01, 0, 0, 0, 20, 0, 0, 0, 0, 0, 2, 0xaa, 0xbb, 0, 2, 0, 0x0b, 0, 0})
	f.Add([]byte{0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x01, 0x8b})
	f.Fuzz(func(t *testing.T, rsp []byte) {
		public, _, err := parseReadPublicResponse(rsp)
		if err == nil && len(public) == 0 {
			t.Fatalf("parsed an empty public area from %x", rsp)
		}
	})
}
