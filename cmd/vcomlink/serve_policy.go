package main

import (
	"log/slog"
	"strings"

	"github.com/vcomlink/vcomlink/policy"
	"github.com/vcomlink/vcomlink/tpm"
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
	path  string // empty when the built-in policy is in force
	store *policy.Store
	svc   *tpm.Service
	log   *slog.Logger
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
}
