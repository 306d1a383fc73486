package main

import (
	"log/slog"
	"sort"
	"strings"

	"github.com/vcomlink/vcomlink/policy"
	"github.com/vcomlink/vcomlink/tpm"
	"github.com/vcomlink/vcomlink/transport"
)

// loadPolicy reads the access policy file at path, or returns the built-in
// policy when path is empty. A mistake in the file names its line.
func loadPolicy(path string) (policy.Checker, error) {
	if path == "" {
		return policy.NewDefault(), nil
	}
	return policy.LoadFile(path)
}

// warnLifted logs the handles that the built-in policy protects and the
// policy c does not, if any.
func warnLifted(log *slog.Logger, c policy.Checker, file string) {
	if lifted := liftedHandles(c); lifted != "" {
		log.Warn("the access policy leaves out handles of the built-in never or read_public_only lists; guests granted them may use them", "file", file, "handles", lifted)
	}
}

// liftedHandles lists, as text, the handles that the built-in policy
// protects and the policy c does not.
func liftedHandles(c policy.Checker) string {
	f, ok := c.(*policy.File)
	if !ok {
		return ""
	}
	var names []string
	for _, h := range f.Lifted() {
		names = append(names, tpm.FormatHandle(h))
	}
	return strings.Join(names, " ")
}

// vmMismatches compares the VM names of the Unix listeners with the vm:
// entries of the policy c. unnamed lists the listeners' VMs that the policy
// has no entry for, which get its default entry, and unmatched the policy's
// vm: entries that no listener serves. Either is often a misspelt name. A
// built-in policy, or a file without vm: entries, has nothing to compare.
func vmMismatches(c policy.Checker, listens []string) (unnamed, unmatched []string) {
	f, ok := c.(*policy.File)
	if !ok {
		return nil, nil
	}
	entries := make(map[string]bool)
	for peer := range f.Peers {
		if strings.HasPrefix(peer, "vm:") {
			entries[peer] = true
		}
	}
	if len(entries) == 0 {
		return nil, nil
	}
	served := make(map[string]bool)
	for _, l := range listens {
		a, err := transport.ParseAddress(l)
		if err != nil || a.VM == "" {
			continue
		}
		peer := "vm:" + a.VM
		served[peer] = true
		if !entries[peer] {
			unnamed = append(unnamed, peer)
		}
	}
	for peer := range entries {
		if !served[peer] {
			unmatched = append(unmatched, peer)
		}
	}
	sort.Strings(unnamed)
	sort.Strings(unmatched)
	return unnamed, unmatched
}

// warnVMMismatches logs what vmMismatches finds.
func warnVMMismatches(log *slog.Logger, c policy.Checker, listens []string) {
	unnamed, unmatched := vmMismatches(c, listens)
	if len(unnamed) > 0 {
		log.Warn("the access policy has no entry for these listeners' VMs, so its default entry applies to them; check the spelling of the names", "vms", strings.Join(unnamed, " "))
	}
	if len(unmatched) > 0 {
		log.Warn("the access policy has entries for VMs that no listener serves; check the spelling of the names", "vms", strings.Join(unmatched, " "))
	}
}

// ownerReadNV returns the NV indices that the policy c lets readnv read
// with owner authorisation.
func ownerReadNV(c policy.Checker) map[uint32]bool {
	if f, ok := c.(*policy.File); ok {
		return f.OwnerReadNV()
	}
	return nil
}

// policyReloader puts a policy file in force again on SIGHUP.
type policyReloader struct {
	path    string   // empty when the built-in policy is in force
	listens []string // the --listen values, to compare VM names with
	store   *policy.Store
	svc     *tpm.Service
	log     *slog.Logger
}

// reload reads the policy file and puts it in force. A file with a mistake
// is logged and leaves the policy in force as it was. Connections and
// requests in flight are not touched.
func (r *policyReloader) reload() {
	if r.path == "" {
		r.log.Warn("SIGHUP received, but there is no access policy file to reload; start vcomlink serve with --policy FILE")
		return
	}
	f, err := policy.LoadFile(r.path)
	if err != nil {
		r.log.Error("reloading the access policy failed; the previous policy stays in force", "file", r.path, "err", err)
		return
	}

	// Owner authorisation is used for an index only while both the old and
	// the new policy name it, until the new policy is in force.
	previous := ownerReadNV(r.store.Get())
	next := f.OwnerReadNV()
	both := make(map[uint32]bool)
	for h := range next {
		if previous[h] {
			both[h] = true
		}
	}
	r.svc.SetOwnerReadNV(both)
	r.store.Set(f)
	r.svc.SetOwnerReadNV(next)
	r.log.Info("access policy reloaded", "file", r.path, "policy", f.Summary())
	warnLifted(r.log, f, r.path)
	warnVMMismatches(r.log, f, r.listens)
}
