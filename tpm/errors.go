package tpm

import (
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-tpm/tpm2"
)

// Error classes. Every error that the Service returns wraps exactly one of
// them, so that the HTTP layer can map a failure to a status with errors.Is.
var (
	// ErrInvalid marks a request that is malformed or names a key or NV
	// index of the wrong kind for the operation.
	ErrInvalid = errors.New("invalid request")
	// ErrForbidden marks a request that the host's configuration does not
	// allow, such as an authorisation the agent must not present.
	ErrForbidden = errors.New("forbidden")
	// ErrNotFound marks a handle that does not exist in the TPM.
	ErrNotFound = errors.New("not found")
	// ErrTPM marks an error response from the TPM that no other class covers.
	ErrTPM = errors.New("TPM error")
	// ErrUnavailable marks a TPM that cannot be reached, or a service that is
	// closing.
	ErrUnavailable = errors.New("TPM unavailable")
	// ErrTimeout marks a TPM command that did not complete within the
	// command timeout.
	ErrTimeout = errors.New("TPM timed out")
)

// Error is a failed operation on one handle.
type Error struct {
	Op     string // operation name, such as "sign"
	Handle uint32 // the handle the failure concerns
	Class  error  // one of ErrInvalid, ErrForbidden, ErrNotFound, ErrTPM, ErrUnavailable, ErrTimeout
	Msg    string // what failed and what to do, in one line
	Err    error  // the cause, such as a tpm2.TPMRC; may be nil
}

func (e *Error) Error() string {
	// Handle 0 is a missing handle or an operation on no handle.
	s := fmt.Sprintf("%s 0x%08x: %s", e.Op, e.Handle, e.Msg)
	if e.Handle == 0 {
		s = fmt.Sprintf("%s: %s", e.Op, e.Msg)
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the class and the cause, so that errors.Is matches both.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Class}
	}
	return []error{e.Class, e.Err}
}

// ResponseCode returns the TPM response code behind err, if there is one.
func ResponseCode(err error) (tpm2.TPMRC, bool) {
	var rc tpm2.TPMRC
	if errors.As(err, &rc) {
		return rc, true
	}
	return 0, false
}

// rcName is a response code that reads as its name alone, such as
// "TPM_RC_HANDLE (handle 1)", where the description that go-tpm adds
// would contradict the message before it.
type rcName struct{ rc error }

func (e rcName) Error() string {
	name, _, _ := strings.Cut(e.rc.Error(), ": ")
	return name
}

func (e rcName) Unwrap() error { return e.rc }

func newError(op string, h uint32, class error, format string, args ...any) *Error {
	return &Error{Op: op, Handle: h, Class: class, Msg: fmt.Sprintf(format, args...)}
}

// tpmError classifies an error from a TPM command that ran for op on h.
// Handle errors become ErrNotFound, errors in guest-supplied parameters
// become ErrInvalid, and the rest ErrTPM, each with the response code in the
// message.
func tpmError(op string, h uint32, command string, err error) error {
	var already *Error
	if errors.As(err, &already) {
		return err
	}
	if errors.Is(err, ErrTimeout) {
		return &Error{Op: op, Handle: h, Class: ErrTimeout, Msg: command + " did not complete in time; retry later", Err: err}
	}
	if errors.Is(err, ErrUnavailable) {
		return &Error{Op: op, Handle: h, Class: ErrUnavailable, Msg: command + " could not reach the TPM; retry later", Err: err}
	}
	if errors.Is(err, errCommandTooLarge) {
		return &Error{Op: op, Handle: h, Class: ErrInvalid, Msg: command + " was not sent", Err: err}
	}

	rc, ok := ResponseCode(err)
	if !ok {
		return &Error{Op: op, Handle: h, Class: ErrTPM, Msg: command + " failed", Err: err}
	}

	var fmt1 tpm2.TPMFmt1Error
	isFmt1 := errors.As(rc, &fmt1)
	switch {
	case errors.Is(rc, tpm2.TPMRCHandle), isReferenceWarning(rc):
		return &Error{Op: op, Handle: h, Class: ErrNotFound, Msg: command + ": the handle does not exist in the TPM", Err: rcName{rc}}
	case errors.Is(rc, tpm2.TPMRCLockout):
		return &Error{Op: op, Handle: h, Class: ErrUnavailable, Msg: command + ": the TPM is in dictionary-attack lockout; the host operator must reset it", Err: rc}
	case errors.Is(rc, tpm2.TPMRCNVLocked):
		return &Error{Op: op, Handle: h, Class: ErrForbidden, Msg: command + ": the NV index is locked", Err: rc}
	}
	if isFmt1 {
		if param, _ := fmt1.Parameter(); param {
			return &Error{Op: op, Handle: h, Class: ErrInvalid, Msg: command + " rejected a parameter", Err: rc}
		}
		if handle, _ := fmt1.Handle(); handle {
			return &Error{Op: op, Handle: h, Class: ErrInvalid, Msg: command + ": the key is not of the kind this operation needs", Err: rc}
		}
	}
	return &Error{Op: op, Handle: h, Class: ErrTPM, Msg: command + " failed", Err: rc}
}

// isReferenceWarning reports TPM_RC_REFERENCE_H0 to H6, which a resource
// manager returns for a handle that is not loaded.
func isReferenceWarning(rc tpm2.TPMRC) bool {
	const referenceH0, referenceH6 = 0x910, 0x916
	return rc >= referenceH0 && rc <= referenceH6
}

// hostKeyError marks a failure that concerns a key of the host's
// configuration, such as the EK or the attestation key, which the guest did
// not name. It is the host's to fix, so a guest never gets 400, 403 or 404
// for it.
func hostKeyError(err error, role string, h uint32) error {
	var e *Error
	if !errors.As(err, &e) {
		return err
	}
	e.Msg = fmt.Sprintf("the host's %s %s: %s; the host operator must fix its provisioning or configuration", role, FormatHandle(h), e.Msg)
	switch e.Class {
	case ErrInvalid, ErrForbidden, ErrNotFound:
		e.Class = ErrTPM
	}
	return e
}
