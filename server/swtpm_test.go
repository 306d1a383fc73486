package server

import (
	"context"
	"crypto/rand"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/internal/swtpmtest"
	"github.com/vcomlink/vcomlink/tpm"
	"github.com/vcomlink/vcomlink/tpm/backend"
)

// startSocketService starts a TPM service on the raw TPM command socket at
// path, as swtpm serves, logging into logs, with the command timeout
// given.
func startSocketService(t *testing.T, path string, logs *logBuffer, commandTimeout time.Duration) *tpm.Service {
	t.Helper()
	cfg := tpm.DefaultConfig()
	cfg.CommandTimeout = commandTimeout
	cfg.Logger = logs.logger()
	open := func() (transport.TPMCloser, error) { return backend.OpenSocket(path, 2*time.Second) }
	svc, err := tpm.New(open, cfg)
	if err != nil {
		t.Fatalf("start service on %s: %v", path, err)
	}
	t.Cleanup(func() { svc.Close() })
	return svc
}

func TestSWTPMKilledAndRestarted(t *testing.T) {
	sw := swtpmtest.Start(t)
	logs := &logBuffer{}
	a := newLoggedAgent(t, startSocketService(t, sw.SocketPath, logs, 5*time.Second), logs, nil)
	other := a.as(t, "other")
	a.mustServe(t, "before swtpm is killed")

	if err := sw.Kill(); err != nil {
		t.Fatalf("kill swtpm: %v", err)
	}
	for range 3 {
		r := a.postNoFatal(vcom.PathGetPub, &vcom.TpmRequestGetPub{Index: vcom.HandleAIK})
		checkError(t, "getpub while swtpm is down", r, http.StatusServiceUnavailable, "could not reach the TPM; retry later")
		if ra := r.header.Get("Retry-After"); ra != "1" {
			t.Errorf("getpub while swtpm is down: Retry-After %q; want 1", ra)
		}
		if strings.Contains(string(r.body), sw.SocketPath) {
			t.Errorf("getpub while swtpm is down: message %q shows the host's TPM socket path", r.body)
		}
		checkOutage(t, "another peer while swtpm is down", other.postNoFatal(vcom.PathReadNV, &vcom.TpmRequestReadNv{Index: vcom.HandleEKCert}))
	}

	if err := sw.Restart(); err != nil {
		t.Fatalf("restart swtpm: %v", err)
	}
	waitServed(t, a, "after swtpm restarted")
	r := other.post(t, vcom.PathSign, &vcom.TpmRequestSign{Index: vcom.HandleAIK, Data: []byte("after the restart")})
	if r.status != http.StatusOK {
		t.Errorf("sign after swtpm restarted: status %d (%s)", r.status, r.body)
	}
	checkOneEpisode(t, logs)
}

func TestSWTPMPaused(t *testing.T) {
	sw := swtpmtest.Start(t)
	logs := &logBuffer{}
	a := newLoggedAgent(t, startSocketService(t, sw.SocketPath, logs, 500*time.Millisecond), logs, nil)
	other := a.as(t, "other")
	a.mustServe(t, "before swtpm is paused")

	if err := sw.Pause(); err != nil {
		t.Fatalf("pause swtpm: %v", err)
	}
	r := a.post(t, vcom.PathGetPub, &vcom.TpmRequestGetPub{Index: vcom.HandleAIK})
	checkError(t, "getpub while swtpm is paused", r, http.StatusGatewayTimeout, "did not complete in time")
	for range 2 {
		checkOutage(t, "while swtpm is paused", a.postNoFatal(vcom.PathGetPub, &vcom.TpmRequestGetPub{Index: vcom.HandleEK}))
		checkOutage(t, "another peer while swtpm is paused", other.postNoFatal(vcom.PathReadNV, &vcom.TpmRequestReadNv{Index: vcom.HandleEKCert}))
	}

	if err := sw.Resume(); err != nil {
		t.Fatalf("resume swtpm: %v", err)
	}
	waitServed(t, a, "after swtpm resumed")
	other.mustServe(t, "after swtpm resumed")
	checkOneEpisode(t, logs)
}

// TestLockoutCounterUnchangedSWTPM is TestLockoutCounterUnchanged on swtpm.
// swtpm serves one connection at a time, so the test reads the counter
// before the agent connects and after it disconnects.
func TestLockoutCounterUnchangedSWTPM(t *testing.T) {
	sw := swtpmtest.Start(t)
	setup, err := sw.Dial()
	if err != nil {
		t.Fatal(err)
	}
	createDAObjects(t, setup)
	before := lockoutCounter(t, setup)
	setup.Close()

	logs := &logBuffer{}
	svc := startSocketService(t, sw.SocketPath, logs, 5*time.Second)
	a := newLoggedAgent(t, svc, logs, func(c *Config) { c.RequestRate = -1 })
	sendDARequests(t, a)
	svc.Close()

	check, err := sw.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer check.Close()
	if after := lockoutCounter(t, check); after != before {
		t.Fatalf("TPM_PT_LOCKOUT_COUNTER went from %d to %d after 200 guest requests", before, after)
	}
	signWithWrongAuth(t, check)
	if after := lockoutCounter(t, check); after != before+1 {
		t.Errorf("a wrong auth value moved TPM_PT_LOCKOUT_COUNTER from %d to %d; want %d, or the check above proves nothing", before, after, before+1)
	}
}

// fairnessP99Bound is the 99th percentile latency that a peer's getpub
// requests must stay under while another peer floods the TPM with signs.
const fairnessP99Bound = 25 * time.Millisecond

// TestFairTurnsP99 has peer vm:a run 32 concurrent signers against the
// attestation key while peer vm:b sends getpub requests one after another,
// and checks that vm:b gets no errors and a 99th percentile latency under
// fairnessP99Bound. This is the one test that asserts a latency: it shows
// that the TPM takes peers in turn, so vm:b waits for at most one of
// vm:a's signatures, not for vm:a's queue.
func TestFairTurnsP99(t *testing.T) {
	sw := swtpmtest.Start(t)
	logs := &logBuffer{}
	svc := startSocketService(t, sw.SocketPath, logs, 30*time.Second)
	// The limits would turn vm:a's flood away before it reaches the TPM,
	// so they are raised above what the test sends.
	a := newLoggedAgent(t, svc, logs, func(c *Config) {
		c.MaxConnsPerPeer = 64
		c.RequestRate = -1
	})
	flooder := a.as(t, "a")
	flooder.client.Transport.(*http.Transport).MaxIdleConnsPerHost = 32
	measured := a.as(t, "b")

	const signers = 32
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var signed, failed atomic.Int64
	var firstFailure atomic.Value
	for range signers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data := make([]byte, 32)
			for ctx.Err() == nil {
				rand.Read(data)
				r := flooder.postNoFatal(vcom.PathSign, &vcom.TpmRequestSign{Index: vcom.HandleAIK, Data: data})
				if r.status == http.StatusOK {
					signed.Add(1)
					continue
				}
				failed.Add(1)
				firstFailure.CompareAndSwap(nil, fmt.Sprintf("status %d: %s", r.status, r.body))
			}
		}()
	}
	defer func() {
		stop()
		wg.Wait()
	}()

	// Measure only once vm:a keeps the TPM's queue full.
	deadline := time.Now().Add(time.Minute)
	for svc.QueueDepth()["vm:a"] < signers/2 {
		if time.Now().After(deadline) {
			t.Fatalf("vm:a has %d requests queued after a minute; want %d", svc.QueueDepth()["vm:a"], signers/2)
		}
		time.Sleep(time.Millisecond)
	}

	const requests = 500
	latencies := make([]time.Duration, 0, requests)
	for i := range requests + 10 {
		start := time.Now()
		r := measured.postNoFatal(vcom.PathGetPub, &vcom.TpmRequestGetPub{Index: vcom.HandleAIK})
		elapsed := time.Since(start)
		if r.status != http.StatusOK {
			t.Fatalf("vm:b getpub %d: status %d (%s)", i+1, r.status, r.body)
		}
		if i >= 10 { // the first ones open the connection
			latencies = append(latencies, elapsed)
		}
	}
	depth := svc.QueueDepth()["vm:a"]
	stop()
	wg.Wait()

	if n := failed.Load(); n != 0 {
		t.Errorf("vm:a had %d failed signs; the first: %v", n, firstFailure.Load())
	}
	if depth == 0 {
		t.Errorf("vm:a had no requests queued at the end of the measurement, so it did not flood the TPM throughout")
	}

	slices.Sort(latencies)
	p99 := latencies[int(math.Ceil(0.99*float64(len(latencies))))-1]
	p50 := latencies[len(latencies)/2]
	t.Logf("vm:b getpub latency over %d requests: p50 %v, p99 %v, max %v; vm:a signed %d times", len(latencies), p50, p99, latencies[len(latencies)-1], signed.Load())
	if raceEnabled {
		t.Logf("the race detector slows every step several times, so the bound of %v is not checked", fairnessP99Bound)
		return
	}
	if p99 >= fairnessP99Bound {
		t.Errorf("vm:b's p99 getpub latency is %v while vm:a floods the TPM; want under %v", p99, fairnessP99Bound)
	}
}

// TestOversizedCredentialInjectsNothing sends activatecred requests whose
// secret ends in a whole TPM2_EvictControl of the quote key, at every
// length around swtpm's command buffer. A TPM behind a stream socket reads
// the tail of a command longer than its buffer as a command of its own, so
// each request must fail before anything reaches the TPM.
func TestOversizedCredentialInjectsNothing(t *testing.T) {
	sw := swtpmtest.Start(t)
	logs := &logBuffer{}
	a := newLoggedAgent(t, startSocketService(t, sw.SocketPath, logs, 5*time.Second), logs, nil)

	evict := []byte{
		0x80, 0x02, 0, 0, 0, 35, 0, 0, 0x01, 0x20, // TPM_ST_SESSIONS, 35 bytes, TPM2_EvictControl
		0x40, 0, 0, 1, 0x81, 0, 0, 4, // TPM_RH_OWNER, the quote key
		0, 0, 0, 9, 0x40, 0, 0, 9, 0, 0, 0, 0, 0, // an empty password session
		0x81, 0, 0, 4, // persistentHandle
	}
	secret := append([]byte{0, byte(len(evict))}, evict...)
	for n := 3990; n <= 4110; n++ {
		cred := make([]byte, 2+n)
		cred[0], cred[1] = byte(n>>8), byte(n)
		r := a.post(t, vcom.PathActivateCredential, &vcom.TpmRequestGeneratedCred{AikIndex: vcom.HandleAIK, Cred: cred, Secret: secret})
		checkError(t, fmt.Sprintf("cred of %d bytes", n), r, http.StatusBadRequest, "but a TPMS_ID_OBJECT is at most 132")
	}

	r := a.post(t, vcom.PathGetPub, &vcom.TpmRequestGetPub{Index: vcom.HandleQuoteKey})
	if r.status != http.StatusOK {
		t.Errorf("getpub of the quote key after the oversized credentials: status %d (%s); want 200", r.status, r.body)
	}
	a.mustServe(t, "after the oversized credentials")
	if lines := logs.lines("level=ERROR"); len(lines) != 0 {
		t.Errorf("oversized credentials caused error lines:\n%s", logs)
	}
}

// TestCredentialForAnotherTPM sends activatecred a credential whose seed
// no EK of this TPM encrypted. swtpm rejects such a secret with
// TPM_RC_FAILURE, not a parameter error, and the guest must still get
// 400: the TPM has not failed.
func TestCredentialForAnotherTPM(t *testing.T) {
	sw := swtpmtest.Start(t)
	logs := &logBuffer{}
	a := newLoggedAgent(t, startSocketService(t, sw.SocketPath, logs, 5*time.Second), logs, nil)

	secret := make([]byte, 2+256)
	secret[0], secret[1] = 1, 0
	rand.Read(secret[2:])
	cred := make([]byte, 2+68)
	cred[1] = 68
	cred[2], cred[3] = 0, 32
	rand.Read(cred[4:])
	cred[36], cred[37] = 0, 32
	for range 3 {
		r := a.post(t, vcom.PathActivateCredential, &vcom.TpmRequestGeneratedCred{AikIndex: vcom.HandleAIK, Cred: cred, Secret: secret})
		checkError(t, "credential for another TPM", r, http.StatusBadRequest, "the TPM rejected the credential")
	}
	a.mustServe(t, "after the rejected credentials")
	if lines := logs.lines("level=ERROR"); len(lines) != 0 {
		t.Errorf("rejected credentials caused error lines:\n%s", logs)
	}
}
