package tpm

import (
	"testing"

	"github.com/vcomlink/vcomlink/internal/simtest"
)

// newService starts a Service on a provisioned simulator with the default
// configuration as changed by configure, if not nil.
func newService(t *testing.T, sim *simtest.TPM, configure func(*Config)) *Service {
	t.Helper()
	cfg := DefaultConfig()
	if configure != nil {
		configure(&cfg)
	}
	s, err := New(sim.Opener(t), cfg)
	if err != nil {
		t.Fatalf("start service: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
