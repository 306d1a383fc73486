package tpm

import (
	"context"
	"crypto/rand"
	"testing"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/internal/load"
	"github.com/vcomlink/vcomlink/internal/simtest"
	"github.com/vcomlink/vcomlink/verify"
)

// The benchmarks here run on the embedded simulator in process. Compare a
// BenchmarkService figure with the BenchmarkRawTPM figure of the same
// operation from the same run: the difference is the service's own time
// (scheduler, command timeout, retries, parsing) plus the ReadPublic that
// sign, certifykey and activatecred send first.

// benchCalls returns one call of each operation on svc, with the handles
// that bench uses by default.
func benchCalls(b *testing.B, svc *Service) map[load.Op]func(ctx context.Context) error {
	b.Helper()
	ctx := context.Background()
	params, err := svc.ActivateCredParams(ctx, peer, vcom.HandleAIK)
	if err != nil {
		b.Fatalf("activatecredparams: %v", err)
	}
	ek, err := verify.ParsePublic(params.Ek)
	if err != nil {
		b.Fatalf("parse EK: %v", err)
	}
	cred, secret, err := verify.MakeCredential(rand.Reader, ek, params.AikName, []byte("benchmark credential"))
	if err != nil {
		b.Fatalf("make credential: %v", err)
	}
	data := make([]byte, 32)
	nonce := make([]byte, load.NonceSize)

	return map[load.Op]func(ctx context.Context) error{
		load.GetPub: func(ctx context.Context) error {
			_, err := svc.GetPub(ctx, peer, load.DefaultHandle(load.GetPub))
			return err
		},
		load.Sign: func(ctx context.Context) error {
			_, err := svc.Sign(ctx, peer, load.DefaultHandle(load.Sign), data)
			return err
		},
		load.ReadNV: func(ctx context.Context) error {
			_, err := svc.ReadNV(ctx, peer, load.DefaultHandle(load.ReadNV))
			return err
		},
		load.ActivateCredParams: func(ctx context.Context) error {
			_, err := svc.ActivateCredParams(ctx, peer, load.DefaultHandle(load.ActivateCredParams))
			return err
		},
		load.ActivateCredential: func(ctx context.Context) error {
			_, err := svc.ActivateCredential(ctx, peer, load.DefaultHandle(load.ActivateCredential), cred, secret)
			return err
		},
		load.CertifyKey: func(ctx context.Context) error {
			_, err := svc.Certify(ctx, peer, load.DefaultHandle(load.CertifyKey), nonce)
			return err
		},
	}
}

func startBenchService(b *testing.B) (*simtest.TPM, *Service) {
	b.Helper()
	sim := simtest.Start(b)
	svc, err := New(sim.Opener(b), DefaultConfig())
	if err != nil {
		b.Fatalf("start service: %v", err)
	}
	b.Cleanup(func() { svc.Close() })
	return sim, svc
}

// BenchmarkService runs each operation through the Service, one call at a
// time.
func BenchmarkService(b *testing.B) {
	_, svc := startBenchService(b)
	calls := benchCalls(b, svc)
	for _, op := range load.Ops {
		b.Run(string(op), func(b *testing.B) {
			ctx := context.Background()
			for b.Loop() {
				if err := calls[op](ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkServiceParallel runs getpub and sign from 8 goroutines per
// GOMAXPROCS at once, as concurrent guests reach the scheduler, each as a
// peer of its own.
func BenchmarkServiceParallel(b *testing.B) {
	_, svc := startBenchService(b)
	calls := benchCalls(b, svc)
	for _, op := range []load.Op{load.GetPub, load.Sign} {
		b.Run(string(op), func(b *testing.B) {
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					if err := calls[op](ctx); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkRawTPM sends each operation's TPM commands straight to the
// simulator, with no service, as bench --raw does.
func BenchmarkRawTPM(b *testing.B) {
	sim := simtest.Start(b)
	for _, op := range load.Ops {
		b.Run(string(op), func(b *testing.B) {
			seq, err := load.PrepareRaw(sim, op, load.DefaultHandle(op), vcom.HandleEK, vcom.HandleAIK, 32)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if err := seq.Do(sim); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
