package tpm

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/internal/simtest"
)

// logBuffer collects a service's log output.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// count returns the number of log lines that contain s.
func (b *logBuffer) count(s string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), s)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newLoggedService starts a service whose log goes to the returned buffer.
func newLoggedService(t *testing.T, sim *simtest.TPM, configure func(*Config)) (*Service, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	s := newService(t, sim, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
		if configure != nil {
			configure(c)
		}
	})
	return s, logs
}

const (
	retryStarted = "TPM asked for a command to be retried"
	retryEnded   = "TPM accepts commands again"
)

// TestRetryWarningsRetried makes ReadPublic return each retry warning three
// times, and checks that the service sends it again until it succeeds and
// logs each episode once.
func TestRetryWarningsRetried(t *testing.T) {
	tt := simtest.Start(t)
	s, logs := newLoggedService(t, tt, nil)
	ctx := context.Background()

	warnings := []struct {
		name string
		rc   tpm2.TPMRC
	}{
		{"TPM_RC_RETRY", tpm2.TPMRCRetry},
		{"TPM_RC_YIELDED", tpm2.TPMRCYielded},
		{"TPM_RC_TESTING", tpm2.TPMRCTesting},
	}
	for i, w := range warnings {
		before := tt.Sent(tpm2.TPMCCReadPublic)
		tt.FailTimes(tpm2.TPMCCReadPublic, w.rc, 3)
		rsp, err := s.GetPub(ctx, peer, vcom.HandleAIK)
		if err != nil {
			t.Fatalf("%s three times: GetPub = %v; want success after retries", w.name, err)
		}
		if !bytes.Equal(rsp.Public, tpm2.Marshal(tt.Result.AIK.Public)) {
			t.Errorf("%s: GetPub after retries returned another public area", w.name)
		}
		if n := tt.Sent(tpm2.TPMCCReadPublic) - before; n != 4 {
			t.Errorf("%s three times: ReadPublic sent %d times; want 4", w.name, n)
		}
		if n := logs.count(retryStarted); n != i+1 {
			t.Errorf("after %s: %d lines about retries; want one for each of %d episodes:\n%s", w.name, n, i+1, logs)
		}
		if n := logs.count(retryEnded); n != i+1 {
			t.Errorf("after %s: %d lines about the end of retries; want %d:\n%s", w.name, n, i+1, logs)
		}
	}
}

// TestRetryEpisodeLoggedOnce keeps the TPM asking for a retry for longer
// than the command timeout, over several requests of several peers, and
// checks that each request fails as unavailable and that the episode is
// logged once.
func TestRetryEpisodeLoggedOnce(t *testing.T) {
	tt := simtest.Start(t)
	s, logs := newLoggedService(t, tt, func(c *Config) { c.CommandTimeout = 100 * time.Millisecond })
	ctx := context.Background()

	tt.Fail(tpm2.TPMCCReadPublic, tpm2.TPMRCYielded)
	for i, p := range []string{"a", "b", "a", "c", "b"} {
		_, err := s.GetPub(ctx, p, vcom.HandleAIK)
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("request %d while the TPM yields: %v; want ErrUnavailable", i+1, err)
		}
		if !strings.Contains(err.Error(), "still asks for a retry after 100ms") {
			t.Errorf("request %d: error %q does not say how long the agent retried", i+1, err)
		}
	}
	if n := logs.count(retryStarted); n != 1 {
		t.Errorf("%d lines about retries for one episode of five requests; want 1:\n%s", n, logs)
	}
	if n := logs.count(retryEnded); n != 0 {
		t.Errorf("the log says the episode ended while it goes on:\n%s", logs)
	}

	tt.Fail(tpm2.TPMCCReadPublic, 0)
	if _, err := s.GetPub(ctx, "b", vcom.HandleAIK); err != nil {
		t.Fatalf("GetPub after the TPM stopped yielding: %v", err)
	}
	if n := logs.count(retryEnded); n != 1 {
		t.Errorf("%d lines about the end of the episode; want 1:\n%s", n, logs)
	}
}

// TestFailTimesEnds checks the fault injection itself: a command fails the
// chosen number of times and then reaches the simulator again.
func TestFailTimesEnds(t *testing.T) {
	tt := simtest.Start(t)
	s := newService(t, tt, nil)
	ctx := context.Background()

	tt.FailTimes(tpm2.TPMCCReadPublic, tpm2.TPMRCFailure, 2)
	for i := range 2 {
		if _, err := s.GetPub(ctx, peer, vcom.HandleAIK); !errors.Is(err, tpm2.TPMRCFailure) {
			t.Fatalf("injected failure %d: GetPub = %v; want TPM_RC_FAILURE", i+1, err)
		}
	}
	if _, err := s.GetPub(ctx, peer, vcom.HandleAIK); err != nil {
		t.Fatalf("GetPub after the injected failures: %v", err)
	}
}
