// Package simtest starts the embedded TPM simulator for tests, provisioned
// with the host layout, and lets a test make chosen TPM commands fail.
package simtest

import (
	"encoding/binary"
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/vcomlink/vcomlink/provision"
)

// sharedCA issues the certificates of every simulator a test binary
// provisions, because a new 4096-bit CA key takes about a second.
var sharedCA = sync.OnceValues(func() (*provision.CA, error) { return provision.NewCA(nil) })

// TPM is a provisioned simulator. Commands sent through it reach the
// simulator unless Fail or FailTimes chose them to fail.
type TPM struct {
	Result *provision.Result

	tpm   transport.TPM
	mu    sync.Mutex
	fail  map[tpm2.TPMCC]*failure
	count map[tpm2.TPMCC]int
}

// failure is a response code injected in place of a command's response.
// remaining counts the commands still to fail; below zero, all of them fail.
type failure struct {
	rc        tpm2.TPMRC
	remaining int
}

// Start starts and provisions a simulator that is closed when the test
// ends. Only one simulator runs in a process, and Start waits until the
// previous one is closed, so tests that use it must not run in parallel.
func Start(tb testing.TB) *TPM {
	tb.Helper()
	ca, err := sharedCA()
	if err != nil {
		tb.Fatalf("create CA: %v", err)
	}
	sim, err := simulator.Get()
	if err != nil {
		tb.Fatalf("start simulator: %v", err)
	}
	tb.Cleanup(func() { sim.Close() })

	t := &TPM{
		tpm:   transport.FromReadWriter(sim),
		fail:  make(map[tpm2.TPMCC]*failure),
		count: make(map[tpm2.TPMCC]int),
	}
	// The simulator's NV has no room for the SRK next to the other keys.
	t.Result, err = provision.Provision(t, provision.Options{CA: ca, OmitSRK: true})
	if err != nil {
		tb.Fatalf("provision simulator: %v", err)
	}
	return t
}

// Send implements transport.TPM. A command chosen with Fail or FailTimes
// gets an error response with the chosen code and never reaches the
// simulator.
func (t *TPM) Send(cmd []byte) ([]byte, error) {
	if len(cmd) < 10 {
		return nil, fmt.Errorf("command of %d bytes is shorter than a command header", len(cmd))
	}
	cc := tpm2.TPMCC(binary.BigEndian.Uint32(cmd[6:10]))
	t.mu.Lock()
	t.count[cc]++
	var rc tpm2.TPMRC
	f := t.fail[cc]
	if f != nil {
		rc = f.rc
		if f.remaining > 0 {
			f.remaining--
		}
		if f.remaining == 0 {
			delete(t.fail, cc)
		}
	}
	t.mu.Unlock()
	if f == nil {
		return t.tpm.Send(cmd)
	}
	rsp := make([]byte, 10)
	binary.BigEndian.PutUint16(rsp[0:2], uint16(tpm2.TPMSTNoSessions))
	binary.BigEndian.PutUint32(rsp[2:6], 10)
	binary.BigEndian.PutUint32(rsp[6:10], uint32(rc))
	return rsp, nil
}

// Fail makes every later command cc fail with response code rc; rc 0 ends
// the failures.
func (t *TPM) Fail(cc tpm2.TPMCC, rc tpm2.TPMRC) {
	t.FailTimes(cc, rc, -1)
}

// FailTimes makes the next n commands cc fail with response code rc, and
// the ones after reach the simulator again. n below zero fails every later
// command; rc 0 or n 0 ends the failures.
func (t *TPM) FailTimes(cc tpm2.TPMCC, rc tpm2.TPMRC, n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if rc == 0 || n == 0 {
		delete(t.fail, cc)
		return
	}
	t.fail[cc] = &failure{rc: rc, remaining: n}
}

// Sent returns how many times command cc was sent, failed ones included.
func (t *TPM) Sent(cc tpm2.TPMCC) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.count[cc]
}

// Opener returns an opener for a service under test. It hands out a
// connection whose Close leaves the simulator running, so that the test can
// still inspect the TPM, and fails the test if called a second time.
func (t *TPM) Opener(tb testing.TB) func() (transport.TPMCloser, error) {
	opened := false
	return func() (transport.TPMCloser, error) {
		if opened {
			tb.Errorf("the simulator was opened a second time")
			return nil, fmt.Errorf("the simulator cannot be reopened")
		}
		opened = true
		return keepOpen{t}, nil
	}
}

type keepOpen struct{ transport.TPM }

func (keepOpen) Close() error { return nil }

// Loaded returns the transient objects and the loaded and saved sessions
// in the TPM. GetCapability lists sessions from TPM_HT_LOADED_SESSION
// (0x02) and TPM_HT_SAVED_SESSION (0x03), each with HMAC or policy session
// handles.
func (t *TPM) Loaded(tb testing.TB) []tpm2.TPMHandle {
	tb.Helper()
	var all []tpm2.TPMHandle
	seen := make(map[tpm2.TPMHandle]bool)
	for _, ht := range []tpm2.TPMHT{tpm2.TPMHTTransient, tpm2.TPMHTHMACSession, tpm2.TPMHTPolicySession} {
		rsp, err := tpm2.GetCapability{
			Capability:    tpm2.TPMCapHandles,
			Property:      uint32(ht) << 24,
			PropertyCount: 64,
		}.Execute(t.tpm)
		if err != nil {
			tb.Fatalf("list loaded handles: %v", err)
		}
		handles, err := rsp.CapabilityData.Data.Handles()
		if err != nil {
			tb.Fatalf("list loaded handles: %v", err)
		}
		for _, h := range handles.Handle {
			switch tpm2.TPMHT(h >> 24) {
			case tpm2.TPMHTTransient, tpm2.TPMHTHMACSession, tpm2.TPMHTPolicySession:
				if !seen[h] {
					seen[h] = true
					all = append(all, h)
				}
			}
		}
	}
	return all
}

// Evict removes the persistent object at h. The simulator's NV has little
// room to spare, so a test that persists a key of its own evicts one of the
// layout first.
func (t *TPM) Evict(tb testing.TB, h uint32) {
	tb.Helper()
	pub, err := tpm2.ReadPublic{ObjectHandle: tpm2.TPMHandle(h)}.Execute(t.tpm)
	if err != nil {
		tb.Fatalf("ReadPublic(0x%08x): %v", h, err)
	}
	_, err = tpm2.EvictControl{
		Auth:             tpm2.TPMRHOwner,
		ObjectHandle:     tpm2.NamedHandle{Handle: tpm2.TPMHandle(h), Name: pub.Name},
		PersistentHandle: tpm2.TPMHandle(h),
	}.Execute(t.tpm)
	if err != nil {
		tb.Fatalf("EvictControl(0x%08x): %v", h, err)
	}
}

// LockoutCounter returns TPM_PT_LOCKOUT_COUNTER, the count of failed
// authorisations that the dictionary-attack protection keeps.
func (t *TPM) LockoutCounter(tb testing.TB) uint32 {
	tb.Helper()
	rsp, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapTPMProperties,
		Property:      uint32(tpm2.TPMPTLockoutCounter),
		PropertyCount: 1,
	}.Execute(t.tpm)
	if err != nil {
		tb.Fatalf("read TPM_PT_LOCKOUT_COUNTER: %v", err)
	}
	props, err := rsp.CapabilityData.Data.TPMProperties()
	if err != nil || len(props.TPMProperty) == 0 || props.TPMProperty[0].Property != tpm2.TPMPTLockoutCounter {
		tb.Fatalf("read TPM_PT_LOCKOUT_COUNTER: %v", err)
	}
	return props.TPMProperty[0].Value
}
