package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/internal/load"
	"github.com/vcomlink/vcomlink/internal/simtest"
	"github.com/vcomlink/vcomlink/metrics"
	"github.com/vcomlink/vcomlink/policy"
	"github.com/vcomlink/vcomlink/tpm"
	"github.com/vcomlink/vcomlink/transport"
	"github.com/vcomlink/vcomlink/verify"
)

// The benchmarks here run on the embedded simulator in process: the
// handler alone with requests built in memory, and the whole stack with
// an HTTP client on a Unix socket. tpm's BenchmarkRawTPM gives the TPM's
// own time for the same operations.

// startBenchServer starts a Server on a provisioned simulator.
func startBenchServer(b *testing.B) (*Server, *tpm.Service) {
	b.Helper()
	sim := simtest.Start(b)
	svc, err := tpm.New(sim.Opener(b), tpm.DefaultConfig())
	if err != nil {
		b.Fatalf("start service: %v", err)
	}
	b.Cleanup(func() { svc.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	return New(Config{TPM: svc, Policy: policy.NewDefault(), Logger: log, RequestRate: -1, MaxConnsPerPeer: -1, Metrics: metrics.New()}), svc
}

// benchBodies returns the request body of each operation, with the handles
// that bench uses by default.
func benchBodies(b *testing.B, svc *tpm.Service) map[load.Op][]byte {
	b.Helper()
	params, err := svc.ActivateCredParams(context.Background(), "bench", vcom.HandleAIK)
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

	bodies := make(map[load.Op][]byte)
	for _, op := range load.Ops {
		r := &load.Request{
			Op:     op,
			Handle: load.DefaultHandle(op),
			Data:   make([]byte, 32),
			Nonce:  make([]byte, load.NonceSize),
			Cred:   cred,
			Secret: secret,
		}
		req, _ := r.Messages()
		body, err := proto.Marshal(req)
		if err != nil {
			b.Fatal(err)
		}
		bodies[op] = body
	}
	return bodies
}

// memoryResponse is an http.ResponseWriter that keeps the status and body.
type memoryResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *memoryResponse) Header() http.Header         { return w.header }
func (w *memoryResponse) WriteHeader(status int)      { w.status = status }
func (w *memoryResponse) Write(p []byte) (int, error) { return w.body.Write(p) }

func (w *memoryResponse) reset() {
	clear(w.header)
	w.status = http.StatusOK
	w.body.Reset()
}

// BenchmarkHandler runs each operation through the handler with a request
// built in memory, so no socket and no HTTP parsing is involved.
func BenchmarkHandler(b *testing.B) {
	srv, svc := startBenchServer(b)
	bodies := benchBodies(b, svc)
	handler := srv.Handler()
	ctx := context.WithValue(context.Background(), connKey{}, connInfo{peer: transport.Peer{Network: "unix", VM: "bench"}})

	for _, op := range load.Ops {
		b.Run(string(op), func(b *testing.B) {
			body := bodies[op]
			w := &memoryResponse{header: make(http.Header)}
			for b.Loop() {
				r, err := http.NewRequestWithContext(ctx, http.MethodPost, op.Path(), bytes.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				w.reset()
				handler.ServeHTTP(w, r)
				if w.status != http.StatusOK {
					b.Fatalf("status %d: %s", w.status, w.body.Bytes())
				}
			}
		})
	}
}

// BenchmarkUnixSocket runs each operation through the whole stack: an HTTP
// client with one keep-alive connection, a Unix socket, the server and the
// service.
func BenchmarkUnixSocket(b *testing.B) {
	srv, svc := startBenchServer(b)
	bodies := benchBodies(b, svc)

	dir, err := os.MkdirTemp("", "vcomlink")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	socket := filepath.Join(dir, "agent.sock")
	l, err := transport.Listen("unix://" + socket + "?vm=bench")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(l)
	b.Cleanup(func() { srv.Shutdown(context.Background()) })

	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		},
	}}
	for _, op := range load.Ops {
		b.Run(string(op), func(b *testing.B) {
			body := bodies[op]
			for b.Loop() {
				rsp, err := client.Post("http://vcomlink"+op.Path(), vcom.ContentType, bytes.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, rsp.Body)
				rsp.Body.Close()
				if rsp.StatusCode != http.StatusOK {
					b.Fatalf("status %d", rsp.StatusCode)
				}
			}
		})
	}
}
