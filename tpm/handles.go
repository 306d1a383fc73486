package tpm

import (
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// handleType returns the type of h: its most significant octet (TPM_HT).
func handleType(h uint32) tpm2.TPMHT {
	return tpm2.TPMHT(h >> 24)
}

// HandleType names the type of handle h, as a guest would need to read it in
// an error message.
func HandleType(h uint32) string {
	switch handleType(h) {
	case tpm2.TPMHTPCR:
		return "a PCR"
	case tpm2.TPMHTNVIndex:
		return "an NV index"
	case tpm2.TPMHTHMACSession:
		return "an HMAC session"
	case tpm2.TPMHTPolicySession:
		return "a policy session"
	case tpm2.TPMHTPermanent:
		return "a hierarchy or permanent handle"
	case tpm2.TPMHTTransient:
		return "a transient object"
	case tpm2.TPMHTPersistent:
		return "a persistent object"
	}
	return "not a valid handle"
}

// CheckPersistent returns an ErrInvalid error unless h is a persistent
// object handle (0x81xxxxxx). Operations on keys accept no other type, so
// hierarchy, PCR, session and transient handles never reach the TPM.
func CheckPersistent(op string, field string, h uint32) error {
	if h == 0 {
		return newError(op, h, ErrInvalid, "%s is missing; set it to a persistent key handle such as 0x81000003", field)
	}
	if handleType(h) != tpm2.TPMHTPersistent {
		return newError(op, h, ErrInvalid, "%s is %s; this operation needs a persistent key handle (0x81xxxxxx)", handleSubject(field), HandleType(h))
	}
	return nil
}

// CheckNVIndex returns an ErrInvalid error unless h is an NV index handle
// (0x01xxxxxx).
func CheckNVIndex(op string, field string, h uint32) error {
	if h == 0 {
		return newError(op, h, ErrInvalid, "%s is missing; set it to an NV index such as 0x01c00002", field)
	}
	if handleType(h) != tpm2.TPMHTNVIndex {
		return newError(op, h, ErrInvalid, "%s is %s; this operation needs an NV index (0x01xxxxxx)", handleSubject(field), HandleType(h))
	}
	return nil
}

// handleSubject names the handle of a request field in a message: "the
// handle" for index, which every operation but activatecred has, and
// "the aik_index handle" for another field.
func handleSubject(field string) string {
	if field == "index" {
		return "the handle"
	}
	return "the " + field + " handle"
}

// FormatHandle writes h as the TPM specification does: 0x and eight hex
// digits.
func FormatHandle(h uint32) string {
	return fmt.Sprintf("0x%08x", h)
}
