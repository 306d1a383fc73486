package policy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/vcomlink/vcomlink/api/vcom"
)

// Range is an inclusive range of TPM handles. A single handle is a range
// whose First and Last are equal.
type Range struct {
	First, Last uint32
}

// Contains reports whether h is in r.
func (r Range) Contains(h uint32) bool {
	return h >= r.First && h <= r.Last
}

func (r Range) String() string {
	if r.First == r.Last {
		return fmt.Sprintf("0x%08x", r.First)
	}
	return fmt.Sprintf("0x%08x-0x%08x", r.First, r.Last)
}

// rangesContain reports whether any of ranges contains h.
func rangesContain(ranges []Range, h uint32) bool {
	for _, r := range ranges {
		if r.Contains(h) {
			return true
		}
	}
	return false
}

// Grant lets a peer run Ops on the handles in Handles.
type Grant struct {
	Ops     []Operation
	Handles []Range
	Line    int // the line of the grant in the policy file
}

func (g Grant) allows(op Operation, h uint32) bool {
	return slices.Contains(g.Ops, op) && rangesContain(g.Handles, h)
}

// names reports whether g lists h as a single handle, not only within a
// range.
func (g Grant) names(h uint32) bool {
	return slices.Contains(g.Handles, Range{h, h})
}

// File is an access policy read from a policy file. Its zero value grants
// nothing. File implements Checker.
type File struct {
	// Never lists the handles that no peer may use, whatever the grants say.
	Never []Range
	// ReadPublicOnly lists the keys on which a peer may run only getpub and
	// activatecredparams, which return public data, whatever the grants say.
	ReadPublicOnly []Range
	// OwnerRead lists the NV indices that readnv reads with owner
	// authorisation. A peer may read such an index only through a readnv
	// grant that names the index itself: a range that covers it is not
	// enough.
	OwnerRead map[uint32]bool
	// Default holds the grants of every peer without an entry in Peers. Nil
	// grants nothing.
	Default []Grant
	// HasDefault records whether the file has a default entry.
	HasDefault bool
	// Peers holds each listed peer's grants by peer identity, such as
	// "cid:5" or "vm:web". A peer's entry replaces the default entry.
	Peers map[string][]Grant
}

// BuiltinNever returns the handles that the built-in policy never lets a
// guest use: the device-key credential and the disk-key material. A policy
// file that has no never list gets these.
func BuiltinNever() []Range {
	return []Range{
		{vcom.HandleDeviceKeyCredential, vcom.HandleDeviceKeyCredential},
		{vcom.HandleDiskKey1, vcom.HandleDiskKey1},
		{vcom.HandleDiskKey2, vcom.HandleDiskKey2},
		{vcom.HandleDiskKey3, vcom.HandleDiskKey3},
	}
}

// Lifted returns the handles of the built-in never and read-public-only
// lists that this policy's lists leave out, so that grants may reach them.
// A host may mean that, as to let one VM read the device-key credential,
// and the agent logs it.
func (f *File) Lifted() []uint32 {
	var lifted []uint32
	for _, r := range BuiltinNever() {
		if !rangesContain(f.Never, r.First) {
			lifted = append(lifted, r.First)
		}
	}
	for _, r := range BuiltinReadPublicOnly() {
		if !rangesContain(f.ReadPublicOnly, r.First) && !rangesContain(f.Never, r.First) {
			lifted = append(lifted, r.First)
		}
	}
	return lifted
}

// BuiltinReadPublicOnly returns the keys whose public area is all that the
// built-in policy lets a guest read: the quote key and the device identity
// key. A policy file that has no read_public_only list gets these.
func BuiltinReadPublicOnly() []Range {
	return []Range{
		{vcom.HandleQuoteKey, vcom.HandleQuoteKey},
		{vcom.HandleDeviceKey, vcom.HandleDeviceKey},
	}
}

// readsPublicData reports whether op returns only public data about its
// handle.
func readsPublicData(op Operation) bool {
	return op == GetPub || op == ActivateCredParams
}

// Allow implements Checker.
func (f *File) Allow(peer string, op Operation, h uint32) error {
	if rangesContain(f.Never, h) {
		return &Denied{Peer: peer, Op: op, Handle: h, Reason: "guests never use this handle"}
	}
	if rangesContain(f.ReadPublicOnly, h) && !readsPublicData(op) {
		return &Denied{Peer: peer, Op: op, Handle: h, Reason: "guests may only read this key's public area"}
	}

	grants, listed := f.Peers[peer]
	if !listed {
		if !f.HasDefault {
			return &Denied{Peer: peer, Op: op, Handle: h, Reason: "the access policy has no entry for this peer and no default entry"}
		}
		grants = f.Default
	}
	ownerRead := op == ReadNV && f.OwnerRead[h]
	coveredByRange := false
	for _, g := range grants {
		if !g.allows(op, h) {
			continue
		}
		if ownerRead && !g.names(h) {
			coveredByRange = true
			continue
		}
		return nil
	}

	entry := "the default entry"
	if listed {
		entry = "the peer's entry"
	}
	if coveredByRange {
		return &Denied{Peer: peer, Op: op, Handle: h, Reason: fmt.Sprintf(
			"the index is read with owner authorisation, and %s of the access policy covers it only with a range; a grant must name the index itself", entry)}
	}
	return &Denied{Peer: peer, Op: op, Handle: h, Reason: fmt.Sprintf("%s of the access policy grants no %s on this handle", entry, op)}
}

// OwnerReadNV returns the NV indices that readnv reads with owner
// authorisation, in the form of tpm.Config.OwnerReadNV.
func (f *File) OwnerReadNV() map[uint32]bool {
	out := make(map[uint32]bool, len(f.OwnerRead))
	for h := range f.OwnerRead {
		out[h] = true
	}
	return out
}

// Summary describes the policy in one line for the log, as "a default
// entry of 2 grants, 3 peer entries, 1 never range, 0 owner-read indices".
func (f *File) Summary() string {
	var parts []string
	if f.HasDefault {
		parts = append(parts, "a default entry of "+count(len(f.Default), "grant", "grants"))
	} else {
		parts = append(parts, "no default entry")
	}
	parts = append(parts,
		count(len(f.Peers), "peer entry", "peer entries"),
		count(len(f.Never), "never range", "never ranges"),
		count(len(f.OwnerRead), "owner-read index", "owner-read indices"))
	return strings.Join(parts, ", ")
}

// count writes n with the singular or plural noun.
func count(n int, singular, plural string) string {
	if n == 1 {
		return "1 " + singular
	}
	return fmt.Sprintf("%d %s", n, plural)
}
