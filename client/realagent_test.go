package client_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/client"
	"github.com/vcomlink/vcomlink/internal/simtest"
	"github.com/vcomlink/vcomlink/policy"
	"github.com/vcomlink/vcomlink/provision"
	"github.com/vcomlink/vcomlink/server"
	"github.com/vcomlink/vcomlink/tpm"
	"github.com/vcomlink/vcomlink/transport"
	"github.com/vcomlink/vcomlink/verify"
)

// realAgent is the agent's server and TPM service, in process, on a
// provisioned simulator, serving a Unix socket.
type realAgent struct {
	addr        string
	provisioned *provision.Result
	accepted    *atomic.Int64
	shutdown    func()
}

// countingListener counts the connections that the agent accepts. It
// returns the transport's connections unchanged, so the agent still reads
// the peer's identity from them.
type countingListener struct {
	net.Listener
	accepted *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return conn, err
}

func startRealAgent(t *testing.T) *realAgent {
	t.Helper()
	sim := simtest.Start(t)
	svc, err := tpm.New(sim.Opener(t), tpm.DefaultConfig())
	if err != nil {
		t.Fatalf("start the TPM service: %v", err)
	}
	t.Cleanup(func() { svc.Close() })

	dir, err := os.MkdirTemp("", "vc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	socket := filepath.Join(dir, "agent.sock")
	l, err := transport.Listen("unix://" + socket + "?vm=guest")
	if err != nil {
		t.Fatal(err)
	}

	accepted := new(atomic.Int64)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := server.New(server.Config{TPM: svc, Policy: policy.NewDefault(), Logger: log})
	go srv.Serve(countingListener{Listener: l, accepted: accepted})
	shutdown := sync.OnceFunc(func() { srv.Shutdown(context.Background()) })
	t.Cleanup(shutdown)

	return &realAgent{
		addr:        "unix://" + socket,
		provisioned: sim.Result,
		accepted:    accepted,
		shutdown:    shutdown,
	}
}

func (a *realAgent) newClient(t *testing.T) *client.Client {
	t.Helper()
	c, err := client.New(a.addr)
	if err != nil {
		t.Fatalf("New(%q): %v", a.addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func equalKeys(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

func TestAgentOperations(t *testing.T) {
	a := startRealAgent(t)
	c := a.newClient(t)
	ctx := context.Background()
	p := a.provisioned

	t.Run("getpub", func(t *testing.T) {
		for _, key := range []provision.Key{p.AIK, p.ECDHKey, p.EK} {
			got, err := c.GetPub(ctx, uint32(key.Handle))
			if err != nil {
				t.Fatalf("GetPub(0x%08x): %v", uint32(key.Handle), err)
			}
			if !bytes.Equal(got.Bytes, tpm2.Marshal(key.Public)) {
				t.Errorf("0x%08x: Bytes differ from the provisioned public area", uint32(key.Handle))
			}
			if !bytes.Equal(got.Name, key.Name.Buffer) {
				t.Errorf("0x%08x: Name = 0x%x, want 0x%x", uint32(key.Handle), got.Name, key.Name.Buffer)
			}
			want, err := key.PublicKey()
			if err != nil {
				t.Fatal(err)
			}
			if !equalKeys(got.Key, want) {
				t.Errorf("0x%08x: Key differs from the provisioned key", uint32(key.Handle))
			}
		}
	})

	t.Run("sign restricted", func(t *testing.T) {
		// Longer than the TPM's input buffer, so the agent hashes it in
		// a sequence.
		message := bytes.Repeat([]byte("message "), 300)
		got, err := c.Sign(ctx, vcom.HandleAIK, message)
		if err != nil {
			t.Fatalf("Sign: %v", err)
		}
		if got.Scheme != tpm2.TPMAlgRSASSA {
			t.Errorf("Scheme = 0x%04x, want RSASSA", uint16(got.Scheme))
		}
		if got.Hash != crypto.SHA256 {
			t.Errorf("Hash = %v, want SHA-256", got.Hash)
		}
		if err := verify.VerifySignature(&p.AIK.Public, message, got.Response); err != nil {
			t.Errorf("verify.VerifySignature: %v", err)
		}
		key, err := p.AIK.PublicKey()
		if err != nil {
			t.Fatal(err)
		}
		digest := sha256.Sum256(message)
		if err := rsa.VerifyPKCS1v15(key.(*rsa.PublicKey), crypto.SHA256, digest[:], got.Signature); err != nil {
			t.Errorf("rsa.VerifyPKCS1v15 of Signature: %v", err)
		}
	})

	t.Run("sign unrestricted", func(t *testing.T) {
		digest := sha256.Sum256([]byte("message hashed by the guest"))
		got, err := c.Sign(ctx, vcom.HandleECDHKey, digest[:])
		if err != nil {
			t.Fatalf("Sign: %v", err)
		}
		if got.Scheme != tpm2.TPMAlgECDSA {
			t.Errorf("Scheme = 0x%04x, want ECDSA", uint16(got.Scheme))
		}
		key, err := p.ECDHKey.PublicKey()
		if err != nil {
			t.Fatal(err)
		}
		if !ecdsa.VerifyASN1(key.(*ecdsa.PublicKey), digest[:], got.Signature) {
			t.Error("ecdsa.VerifyASN1 rejected Signature")
		}
	})

	t.Run("readnv", func(t *testing.T) {
		got, err := c.ReadNV(ctx, vcom.HandleEKCert)
		if err != nil {
			t.Fatalf("ReadNV: %v", err)
		}
		cert, err := got.Certificate()
		if err != nil {
			t.Fatalf("Certificate: %v", err)
		}
		if !bytes.Equal(cert.Raw, p.EKCert.Raw) {
			t.Error("the EK certificate differs from the provisioned one")
		}
		roots := x509.NewCertPool()
		roots.AddCert(p.CA.Certificate)
		if err := verify.VerifyEKCert(&p.EK.Public, cert, roots); err != nil {
			t.Errorf("verify.VerifyEKCert: %v", err)
		}
	})

	t.Run("activate credential", func(t *testing.T) {
		params, err := c.ActivateCredParams(ctx, vcom.HandleAIK)
		if err != nil {
			t.Fatalf("ActivateCredParams: %v", err)
		}
		if !bytes.Equal(tpm2.Marshal(params.EK), tpm2.Marshal(p.EK.Public)) {
			t.Error("EK differs from the provisioned EK")
		}
		if !bytes.Equal(params.AIKName, tpm2.Marshal(p.AIK.Name)) {
			t.Errorf("AIKName = 0x%x, want 0x%x", params.AIKName, tpm2.Marshal(p.AIK.Name))
		}

		secret := []byte("credential for the real agent")
		cred, encSecret, err := verify.MakeCredential(rand.Reader, params.EK, params.AIKName, secret)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.ActivateCredential(ctx, vcom.HandleAIK, cred, encSecret)
		if err != nil {
			t.Fatalf("ActivateCredential: %v", err)
		}
		if !bytes.Equal(got.Secret, secret) {
			t.Errorf("Secret = %q, want %q", got.Secret, secret)
		}
	})

	t.Run("certify", func(t *testing.T) {
		nonce := []byte("nonce of the verifier")
		got, err := c.Certify(ctx, vcom.HandleECDHKey, nonce)
		if err != nil {
			t.Fatalf("Certify: %v", err)
		}
		if !bytes.Equal(got.Name, p.ECDHKey.Name.Buffer) {
			t.Errorf("Name = 0x%x, want 0x%x", got.Name, p.ECDHKey.Name.Buffer)
		}
		want, err := p.ECDHKey.PublicKey()
		if err != nil {
			t.Fatal(err)
		}
		if !equalKeys(got.Key, want) {
			t.Error("Key differs from the ECDH key")
		}
		if !bytes.Equal(got.Attest.ExtraData.Buffer, nonce) {
			t.Errorf("Attest.ExtraData = %q, want %q", got.Attest.ExtraData.Buffer, nonce)
		}
		if _, err := verify.VerifyCertify(&p.AIK.Public, nonce, got.Response); err != nil {
			t.Errorf("verify.VerifyCertify: %v", err)
		}
	})
}

func TestAgentStatusErrors(t *testing.T) {
	a := startRealAgent(t)
	c := a.newClient(t)
	ctx := context.Background()
	short := []byte("not a digest")

	for _, tc := range []struct {
		name   string
		call   func() error
		op     string
		handle uint32
		status int
	}{
		{"readnv never readable", func() error { _, err := c.ReadNV(ctx, vcom.HandleDeviceKeyCredential); return err },
			"readnv", vcom.HandleDeviceKeyCredential, http.StatusForbidden},
		{"sign with quote key", func() error { _, err := c.Sign(ctx, vcom.HandleQuoteKey, short); return err },
			"sign", vcom.HandleQuoteKey, http.StatusForbidden},
		{"getpub missing handle", func() error { _, err := c.GetPub(ctx, 0x81000099); return err },
			"getpub", 0x81000099, http.StatusNotFound},
		{"getpub hierarchy", func() error { _, err := c.GetPub(ctx, 0x40000001); return err },
			"getpub", 0x40000001, http.StatusBadRequest},
		{"sign wrong digest size", func() error { _, err := c.Sign(ctx, vcom.HandleECDHKey, short); return err },
			"sign", vcom.HandleECDHKey, http.StatusBadRequest},
		{"activatecredparams of EK", func() error { _, err := c.ActivateCredParams(ctx, vcom.HandleEK); return err },
			"activatecredparams", vcom.HandleEK, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var statusErr *client.StatusError
			if !errors.As(err, &statusErr) {
				t.Fatalf("error is %v, want a *client.StatusError", err)
			}
			if statusErr.StatusCode != tc.status {
				t.Errorf("StatusCode = %d, want %d (message %q)", statusErr.StatusCode, tc.status, statusErr.Message)
			}
			if statusErr.Op != tc.op || statusErr.Handle != tc.handle {
				t.Errorf("error names %s 0x%08x, want %s 0x%08x", statusErr.Op, statusErr.Handle, tc.op, tc.handle)
			}
			if statusErr.Message == "" {
				t.Error("Message is empty, want the agent's message")
			}
			own := strings.TrimPrefix(statusErr.Message, fmt.Sprintf("%s 0x%08x: ", tc.op, tc.handle))
			if !strings.Contains(err.Error(), own) {
				t.Errorf("error %q does not contain the agent's message %q", err, own)
			}
			if strings.Count(err.Error(), tc.op+" ") != 1 {
				t.Errorf("error %q names the operation more than once", err)
			}
		})
	}
}

func TestAgentConcurrentCalls(t *testing.T) {
	a := startRealAgent(t)
	c := a.newClient(t)
	ctx := context.Background()
	const goroutines, calls = 16, 5

	var wg sync.WaitGroup
	errs := make(chan error, goroutines*calls)
	for g := range goroutines {
		wg.Go(func() {
			for i := range calls {
				data := []byte{byte(g), byte(i)}
				sig, err := c.Sign(ctx, vcom.HandleAIK, data)
				if err != nil {
					errs <- err
					continue
				}
				if err := verify.VerifySignature(&a.provisioned.AIK.Public, data, sig.Response); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// A call that waits for a free connection makes the transport dial
	// one, and an idle one may serve the call first, so a few more
	// connections than goroutines are possible.
	if n := a.accepted.Load(); n > 2*goroutines {
		t.Errorf("the agent accepted %d connections for %d calls, want at most %d", n, goroutines*calls, 2*goroutines)
	}
}

func TestAgentKeepAlive(t *testing.T) {
	a := startRealAgent(t)
	c := a.newClient(t)
	ctx := context.Background()

	for i := range 5 {
		if _, err := c.GetPub(ctx, vcom.HandleAIK); err != nil {
			t.Fatalf("GetPub %d: %v", i, err)
		}
		if _, err := c.ReadNV(ctx, vcom.HandleDeviceKeyCredential); err == nil {
			t.Fatalf("ReadNV %d of a never-readable index succeeded", i)
		}
	}
	if n := a.accepted.Load(); n != 1 {
		t.Errorf("the agent accepted %d connections for 10 sequential calls, want 1", n)
	}
}

func TestAgentStopped(t *testing.T) {
	a := startRealAgent(t)
	c := a.newClient(t)
	a.shutdown()

	_, err := c.GetPub(context.Background(), vcom.HandleAIK)
	var transportErr *client.TransportError
	if !errors.As(err, &transportErr) {
		t.Fatalf("error is %v, want a *client.TransportError", err)
	}
	if transportErr.Address != a.addr {
		t.Errorf("Address = %q, want %q", transportErr.Address, a.addr)
	}
	var statusErr *client.StatusError
	if errors.As(err, &statusErr) {
		t.Error("a transport error is also a *client.StatusError")
	}
}

func TestStatusErrorNamesOperationOnce(t *testing.T) {
	c := startRealAgent(t).newClient(t)
	_, err := c.ReadNV(context.Background(), 0x01600000)
	want := "readnv 0x01600000: agent returned 403 Forbidden: refused by the access policy: guests never use this handle"
	if err == nil || err.Error() != want {
		t.Errorf("error is %q, want %q", err, want)
	}
	var statusErr *client.StatusError
	if errors.As(err, &statusErr) && !strings.HasPrefix(statusErr.Message, "readnv 0x01600000: ") {
		t.Errorf("Message %q lost the agent's own prefix", statusErr.Message)
	}
}
