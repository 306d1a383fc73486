package tpm

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/internal/simtest"
)

// failureRuns is how often each failing path runs: many times more than
// the three or so transient object and session slots of a TPM, so that one
// leak per failure would exhaust them.
const failureRuns = 20

// TestFailurePathsFlush drives every failure path that holds a transient
// object or session many times, then checks that nothing is left loaded and
// that normal requests still work.
func TestFailurePathsFlush(t *testing.T) {
	tt := simtest.Start(t)
	s := newService(t, tt, nil)
	ctx := context.Background()
	long := make([]byte, 3000)
	rand.Read(long)
	generated := append(append([]byte(nil), tpmGeneratedValue...), long...)
	cred, enc := makeCredential(t, tt.Result.EK.Public, tt.Result.AIK.Name, []byte("secret"))
	wrongCred, wrongEnc := makeCredential(t, tt.Result.EK.Public, tt.Result.ECDHKey.Name, []byte("secret"))

	paths := []struct {
		name   string
		inject tpm2.TPMCC // command that fails, or 0 for a failure of the TPM's own
		run    func() error
	}{
		{"sign: SequenceUpdate fails", tpm2.TPMCCSequenceUpdate, func() error {
			_, err := s.Sign(ctx, peer, vcom.HandleAIK, long)
			return err
		}},
		{"sign: SequenceComplete fails", tpm2.TPMCCSequenceComplete, func() error {
			_, err := s.Sign(ctx, peer, vcom.HandleAIK, long)
			return err
		}},
		{"sign: Sign fails after a hash sequence", tpm2.TPMCCSign, func() error {
			_, err := s.Sign(ctx, peer, vcom.HandleAIK, long)
			return err
		}},
		{"sign: long data begins with TPM_GENERATED_VALUE", 0, func() error {
			_, err := s.Sign(ctx, peer, vcom.HandleAIK, generated)
			return err
		}},
		{"activatecred: PolicySecret fails", tpm2.TPMCCPolicySecret, func() error {
			_, err := s.ActivateCredential(ctx, peer, vcom.HandleAIK, cred, enc)
			return err
		}},
		{"activatecred: ActivateCredential fails", tpm2.TPMCCActivateCredential, func() error {
			_, err := s.ActivateCredential(ctx, peer, vcom.HandleAIK, cred, enc)
			return err
		}},
		{"activatecred: credential for another name", 0, func() error {
			_, err := s.ActivateCredential(ctx, peer, vcom.HandleAIK, wrongCred, wrongEnc)
			return err
		}},
		{"certifykey: Certify fails", tpm2.TPMCCCertify, func() error {
			_, err := s.Certify(ctx, peer, vcom.HandleECDHKey, []byte("nonce"))
			return err
		}},
		{"readnv: NV_Read fails", tpm2.TPMCCNVRead, func() error {
			_, err := s.ReadNV(ctx, peer, vcom.HandleEKCert)
			return err
		}},
	}

	for _, p := range paths {
		if p.inject != 0 {
			tt.Fail(p.inject, tpm2.TPMRCFailure)
		}
		for i := range failureRuns {
			if err := p.run(); err == nil {
				t.Fatalf("%s: run %d succeeded; want an error", p.name, i)
			}
		}
		if p.inject != 0 {
			tt.Fail(p.inject, 0)
		}
		if loaded := tt.Loaded(t); len(loaded) != 0 {
			t.Fatalf("%s: handles left loaded after %d failures: %v", p.name, failureRuns, loaded)
		}
	}

	if _, err := s.Sign(ctx, peer, vcom.HandleAIK, long); err != nil {
		t.Errorf("sign after the failures: %v", err)
	}
	rsp, err := s.ActivateCredential(ctx, peer, vcom.HandleAIK, cred, enc)
	if err != nil {
		t.Errorf("activatecred after the failures: %v", err)
	} else if !bytes.Equal(rsp.Secret, []byte("secret")) {
		t.Errorf("activatecred after the failures recovered %q", rsp.Secret)
	}
	if _, err := s.Certify(ctx, peer, vcom.HandleECDHKey, nil); err != nil {
		t.Errorf("certifykey after the failures: %v", err)
	}
	if _, err := s.ReadNV(ctx, peer, vcom.HandleEKCert); err != nil {
		t.Errorf("readnv after the failures: %v", err)
	}
}

// TestNewFlushesLeftovers loads a transient object and a session before the
// service starts, as an earlier connection to a socket TPM can leave them,
// and checks that the service flushes both.
func TestNewFlushesLeftovers(t *testing.T) {
	tt := simtest.Start(t)
	created, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHOwner,
		InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
	}.Execute(tt)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := tpm2.PolicySession(tt, tpm2.TPMAlgSHA256, 16); err != nil {
		t.Fatal(err)
	}
	if loaded := tt.Loaded(t); len(loaded) != 2 {
		t.Fatalf("loaded before the service starts: %v; want an object and a session", loaded)
	}

	newService(t, tt, nil)
	if loaded := tt.Loaded(t); len(loaded) != 0 {
		t.Fatalf("handles left loaded after the service started: %v (created 0x%08x)", loaded, uint32(created.ObjectHandle))
	}
}

// TestConcurrentGuests runs sixteen callers at once, each with every
// operation, and expects no errors.
func TestConcurrentGuests(t *testing.T) {
	tt := simtest.Start(t)
	s := newService(t, tt, nil)
	ctx := context.Background()
	cred, enc := makeCredential(t, tt.Result.EK.Public, tt.Result.AIK.Name, []byte("secret"))
	digest := make([]byte, 32)

	const guests, rounds = 16, 5
	errs := make(chan error, guests)
	for g := range guests {
		go func() {
			name := string(rune('a' + g))
			for range rounds {
				for _, call := range []func() error{
					func() error { _, err := s.GetPub(ctx, name, vcom.HandleAIK); return err },
					func() error { _, err := s.Sign(ctx, name, vcom.HandleAIK, []byte("data")); return err },
					func() error { _, err := s.Sign(ctx, name, vcom.HandleECDHKey, digest); return err },
					func() error { _, err := s.ReadNV(ctx, name, vcom.HandleEKCert); return err },
					func() error { _, err := s.ActivateCredParams(ctx, name, vcom.HandleAIK); return err },
					func() error { _, err := s.ActivateCredential(ctx, name, vcom.HandleAIK, cred, enc); return err },
					func() error { _, err := s.Certify(ctx, name, vcom.HandleECDHKey, []byte("n")); return err },
				} {
					if err := call(); err != nil {
						errs <- err
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for range guests {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if loaded := tt.Loaded(t); len(loaded) != 0 {
		t.Errorf("handles left loaded: %v", loaded)
	}
}

func TestClosedServiceIsUnavailable(t *testing.T) {
	tt := simtest.Start(t)
	s := newService(t, tt, nil)
	s.Close()
	_, err := s.GetPub(context.Background(), peer, vcom.HandleAIK)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("GetPub after Close = %v; want ErrUnavailable", err)
	}
}
