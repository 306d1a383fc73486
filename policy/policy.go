// Package policy decides which peer may run which operation on which TPM
// handle.
package policy

import (
	"errors"
	"fmt"

	"github.com/vcomlink/vcomlink/api/vcom"
)

// Operation names one of the six guest operations, as the URL path names it.
type Operation string

// The guest operations.
const (
	GetPub             Operation = "getpub"
	Sign               Operation = "sign"
	ReadNV             Operation = "readnv"
	ActivateCredParams Operation = "activatecredparams"
	ActivateCredential Operation = "activatecred"
	CertifyKey         Operation = "certifykey"
)

// Operations lists every operation, in the order of the wire contract.
var Operations = []Operation{GetPub, Sign, ReadNV, ActivateCredParams, ActivateCredential, CertifyKey}

// ErrDenied is the class of every refusal; errors.Is(err, ErrDenied) holds
// for a *Denied.
var ErrDenied = errors.New("denied by the access policy")

// Denied is a refusal of one operation on one handle to one peer.
type Denied struct {
	Peer   string
	Op     Operation
	Handle uint32
	Reason string
}

func (d *Denied) Error() string {
	return fmt.Sprintf("%s 0x%08x: refused by the access policy: %s", d.Op, d.Handle, d.Reason)
}

// Is reports whether target is ErrDenied.
func (d *Denied) Is(target error) bool { return target == ErrDenied }

// Checker decides whether peer may run op on handle h. It returns nil to
// allow, and a *Denied to refuse.
type Checker interface {
	Allow(peer string, op Operation, h uint32) error
}

// Default is the built-in policy that applies without a policy file: every
// operation on persistent keys and NV indices, except that no peer may use
// the never handles at all, and the read-public-only keys only with getpub
// and activatecredparams, which read public data.
type Default struct {
	Never          map[uint32]bool
	ReadPublicOnly map[uint32]bool
}

// NewDefault returns the built-in policy for the well-known layout: the
// device-key credential and the disk-key material are never used, and the
// quote key and the device identity key only have their public areas read.
func NewDefault() *Default {
	return &Default{
		Never: map[uint32]bool{
			vcom.HandleDeviceKeyCredential: true,
			vcom.HandleDiskKey1:            true,
			vcom.HandleDiskKey2:            true,
			vcom.HandleDiskKey3:            true,
		},
		ReadPublicOnly: map[uint32]bool{
			vcom.HandleQuoteKey:  true,
			vcom.HandleDeviceKey: true,
		},
	}
}

// Allow implements Checker.
func (d *Default) Allow(peer string, op Operation, h uint32) error {
	if d.Never[h] {
		return &Denied{Peer: peer, Op: op, Handle: h, Reason: "guests never use this handle"}
	}
	switch h >> 24 {
	case 0x01, 0x81:
	default:
		return &Denied{Peer: peer, Op: op, Handle: h, Reason: "guests use only persistent keys and NV indices"}
	}
	if d.ReadPublicOnly[h] && op != GetPub && op != ActivateCredParams {
		return &Denied{Peer: peer, Op: op, Handle: h, Reason: "guests may only read this key's public area"}
	}
	return nil
}
