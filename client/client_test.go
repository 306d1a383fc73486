package client

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/verify"
)

func TestGetPub(t *testing.T) {
	s := startAgent(t)
	c := s.newClient(t)

	for _, tc := range []struct {
		name   string
		handle uint32
		public *tpm2.TPMTPublic
		key    crypto.PublicKey
	}{
		{"RSA AIK", vcom.HandleAIK, s.agent.aikPub, &s.agent.aik.PublicKey},
		{"ECC key", vcom.HandleECDHKey, s.agent.eccPub, &s.agent.ecc.PublicKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.GetPub(context.Background(), tc.handle)
			if err != nil {
				t.Fatalf("GetPub: %v", err)
			}
			if want := tpm2.Marshal(tc.public); !bytes.Equal(got.Bytes, want) {
				t.Errorf("Bytes = 0x%x, want 0x%x", got.Bytes, want)
			}
			if got.Public.Type != tc.public.Type {
				t.Errorf("Public.Type = 0x%04x, want 0x%04x", uint16(got.Public.Type), uint16(tc.public.Type))
			}
			if !bytes.Equal(got.Response.GetPublic(), got.Bytes) {
				t.Error("Response.Public differs from Bytes")
			}
			wantName, err := verify.Name(tc.public)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Name, wantName) {
				t.Errorf("Name = 0x%x, want 0x%x", got.Name, wantName)
			}
			if key, ok := got.Key.(interface{ Equal(crypto.PublicKey) bool }); !ok || !key.Equal(tc.key) {
				t.Errorf("Key = %v, want %v", got.Key, tc.key)
			}
		})
	}
}

func TestGetPubInconsistentAlgorithm(t *testing.T) {
	c := startAgent(t).newClient(t)
	_, err := c.GetPub(context.Background(), handleBadAlgorithm)
	if !errors.Is(err, ErrInvalidResponse) {
		t.Fatalf("GetPub error is %v, want one that wraps ErrInvalidResponse", err)
	}
	if want := "algorithm is 0x0023 but the public area is of type 0x0001"; !containsAll(err.Error(), want, "getpub 0x81000033") {
		t.Errorf("GetPub error %q does not contain %q and the handle", err, want)
	}
}

func TestSignRSA(t *testing.T) {
	s := startAgent(t)
	c := s.newClient(t)
	data := []byte("data signed by the AIK")

	got, err := c.Sign(context.Background(), vcom.HandleAIK, data)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if got.Scheme != tpm2.TPMAlgRSASSA {
		t.Errorf("Scheme = 0x%04x, want RSASSA", uint16(got.Scheme))
	}
	if got.Hash != crypto.SHA256 {
		t.Errorf("Hash = %v, want SHA-256", got.Hash)
	}
	if !bytes.Equal(got.Signature, got.Response.GetRsaSignature()) {
		t.Error("Signature differs from Response.RsaSignature")
	}

	digest := sha256.Sum256(data)
	if err := rsa.VerifyPKCS1v15(&s.agent.aik.PublicKey, crypto.SHA256, digest[:], got.Signature); err != nil {
		t.Errorf("rsa.VerifyPKCS1v15: %v", err)
	}
	if err := verify.VerifySignature(s.agent.aikPub, data, got.Response); err != nil {
		t.Errorf("verify.VerifySignature: %v", err)
	}
}

func TestSignECDSA(t *testing.T) {
	s := startAgent(t)
	c := s.newClient(t)
	digest := sha256.Sum256([]byte("message"))

	got, err := c.Sign(context.Background(), vcom.HandleECDHKey, digest[:])
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if got.Scheme != tpm2.TPMAlgECDSA {
		t.Errorf("Scheme = 0x%04x, want ECDSA", uint16(got.Scheme))
	}
	// Signature is the DER ECDSA-Sig-Value that OpenSSL verifies.
	if !ecdsa.VerifyASN1(&s.agent.ecc.PublicKey, digest[:], got.Signature) {
		t.Error("ecdsa.VerifyASN1 rejected Signature")
	}
	if err := verify.VerifySignature(s.agent.eccPub, digest[:], got.Response); err != nil {
		t.Errorf("verify.VerifySignature: %v", err)
	}
}

func TestSignRequestTooLarge(t *testing.T) {
	s := startAgent(t)
	c := s.newClient(t)

	_, err := c.Sign(context.Background(), vcom.HandleAIK, make([]byte, vcom.MaxBodySize))
	if err == nil {
		t.Fatal("Sign succeeded with a request over the agent's limit")
	}
	if !containsAll(err.Error(), "sign 0x81000003", "over the agent's limit of 65536") {
		t.Errorf("Sign error %q does not name the limit", err)
	}
	if n := s.agent.requests.Load(); n != 0 {
		t.Errorf("the agent received %d requests, want 0", n)
	}
}

func TestReadNVCertificate(t *testing.T) {
	s := startAgent(t)
	c := s.newClient(t)

	got, err := c.ReadNV(context.Background(), vcom.HandleEKCert)
	if err != nil {
		t.Fatalf("ReadNV: %v", err)
	}
	if !bytes.Equal(got.Data, s.agent.ekCertNV) {
		t.Errorf("Data is %d bytes, want the %d bytes of the NV index", len(got.Data), len(s.agent.ekCertNV))
	}
	cert, err := got.Certificate()
	if err != nil {
		t.Fatalf("Certificate: %v", err)
	}
	if cert.Subject.CommonName != "test EK" {
		t.Errorf("certificate subject is %q, want test EK", cert.Subject.CommonName)
	}
}

func TestActivateCredential(t *testing.T) {
	s := startAgent(t)
	c := s.newClient(t)
	ctx := context.Background()

	params, err := c.ActivateCredParams(ctx, vcom.HandleAIK)
	if err != nil {
		t.Fatalf("ActivateCredParams: %v", err)
	}
	if !bytes.Equal(tpm2.Marshal(params.AIK), tpm2.Marshal(s.agent.aikPub)) {
		t.Error("AIK differs from the agent's AIK")
	}
	if !bytes.Equal(tpm2.Marshal(params.EK), tpm2.Marshal(s.agent.ekPub)) {
		t.Error("EK differs from the agent's EK")
	}

	// What the client returns is what a verifier needs.
	cred, secret, err := verify.MakeCredential(rand.Reader, params.EK, params.AIKName, []byte("nonce"))
	if err != nil {
		t.Fatalf("verify.MakeCredential: %v", err)
	}
	got, err := c.ActivateCredential(ctx, vcom.HandleAIK, cred, secret)
	if err != nil {
		t.Fatalf("ActivateCredential: %v", err)
	}
	if !bytes.Equal(got.Secret, recoveredSecret) {
		t.Errorf("Secret = %q, want %q", got.Secret, recoveredSecret)
	}
	if sent := s.agent.lastCred.Load(); sent == nil || !bytes.Equal(*sent, cred) {
		t.Error("the agent did not receive cred unchanged")
	}
	if sent := s.agent.lastSecret.Load(); sent == nil || !bytes.Equal(*sent, secret) {
		t.Error("the agent did not receive secret unchanged")
	}
}

func TestActivateCredParamsWrongName(t *testing.T) {
	c := startAgent(t).newClient(t)
	_, err := c.ActivateCredParams(context.Background(), handleBadName)
	if !errors.Is(err, ErrInvalidResponse) {
		t.Fatalf("ActivateCredParams error is %v, want one that wraps ErrInvalidResponse", err)
	}
	if !containsAll(err.Error(), "aik_name is 0x", "but the name of aik_pub is 0x") {
		t.Errorf("ActivateCredParams error %q does not name the mismatch", err)
	}
}

func TestActivateCredentialRejectsPrefix(t *testing.T) {
	s := startAgent(t)
	c := s.newClient(t)
	good := []byte{0x00, 0x02, 0xAA, 0xBB}

	for _, tc := range []struct {
		name         string
		cred, secret []byte
		want         string
	}{
		{"cred without prefix", good[2:], good, "cred: TPM2B_ID_OBJECT size prefix is 43707 but 0 bytes follow"},
		{"cred too short", []byte{0x00}, good, "cred: TPM2B_ID_OBJECT is 1 bytes"},
		{"cred empty", []byte{0x00, 0x00}, good, "cred: TPM2B_ID_OBJECT is empty"},
		{"secret with long prefix", good, []byte{0x00, 0x03, 0x01}, "secret: TPM2B_ENCRYPTED_SECRET size prefix is 3 but 1 bytes follow"},
		{"secret missing", good, nil, "secret: TPM2B_ENCRYPTED_SECRET is 0 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.ActivateCredential(context.Background(), vcom.HandleAIK, tc.cred, tc.secret)
			if err == nil {
				t.Fatal("ActivateCredential succeeded")
			}
			if !containsAll(err.Error(), "activatecred 0x81000003", tc.want) {
				t.Errorf("ActivateCredential error %q does not contain %q", err, tc.want)
			}
		})
	}
	if n := s.agent.requests.Load(); n != 0 {
		t.Errorf("the agent received %d requests, want 0", n)
	}
}

func TestCertify(t *testing.T) {
	s := startAgent(t)
	c := s.newClient(t)
	nonce := []byte("verifier nonce")

	got, err := c.Certify(context.Background(), vcom.HandleECDHKey, nonce)
	if err != nil {
		t.Fatalf("Certify: %v", err)
	}
	if !bytes.Equal(got.Attest.ExtraData.Buffer, nonce) {
		t.Errorf("Attest.ExtraData = %q, want %q", got.Attest.ExtraData.Buffer, nonce)
	}
	if got.Signature.SigAlg != tpm2.TPMAlgRSASSA {
		t.Errorf("Signature.SigAlg = 0x%04x, want RSASSA", uint16(got.Signature.SigAlg))
	}
	if got.Public.Type != tpm2.TPMAlgECC {
		t.Errorf("Public.Type = 0x%04x, want ECC", uint16(got.Public.Type))
	}
	wantName, err := verify.Name(s.agent.eccPub)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Name, wantName) {
		t.Errorf("Name = 0x%x, want 0x%x", got.Name, wantName)
	}
	if key, ok := got.Key.(*ecdsa.PublicKey); !ok || !key.Equal(&s.agent.ecc.PublicKey) {
		t.Errorf("Key = %v, want the ECC key", got.Key)
	}
	if _, err := verify.VerifyCertify(s.agent.aikPub, nonce, got.Response); err != nil {
		t.Errorf("verify.VerifyCertify: %v", err)
	}
}

func TestStatusErrors(t *testing.T) {
	c := startAgent(t).newClient(t)
	ctx := context.Background()

	for _, tc := range []struct {
		name       string
		call       func() error
		status     int
		message    string
		retryAfter time.Duration
	}{
		{"getpub not found", func() error { _, err := c.GetPub(ctx, handleMissing); return err },
			http.StatusNotFound, "handle 0x81000099 not found in the TPM: check the host's key layout", 0},
		{"readnv forbidden", func() error { _, err := c.ReadNV(ctx, vcom.HandleDeviceKeyCredential); return err },
			http.StatusForbidden, "the access policy does not allow this VM to read NV index 0x01600000", 0},
		{"sign rate limited", func() error { _, err := c.Sign(ctx, handleRateLimited, nil); return err },
			http.StatusTooManyRequests, "too many requests from this VM: retry later", 3 * time.Second},
		{"certify multiline", func() error { _, err := c.Certify(ctx, handleMultiline, nil); return err },
			http.StatusInternalServerError, "TPM error \uFFFD[31mTPM_RC_FAILURE", 0},
		{"sign bad digest", func() error { _, err := c.Sign(ctx, vcom.HandleECDHKey, []byte("short")); return err },
			http.StatusBadRequest, "digest must be 32 bytes for ECDSA-SHA256", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var statusErr *StatusError
			if !errors.As(err, &statusErr) {
				t.Fatalf("error is %v, want a *StatusError", err)
			}
			if statusErr.StatusCode != tc.status {
				t.Errorf("StatusCode = %d, want %d", statusErr.StatusCode, tc.status)
			}
			if statusErr.Message != tc.message {
				t.Errorf("Message = %q, want %q", statusErr.Message, tc.message)
			}
			if statusErr.RetryAfter != tc.retryAfter {
				t.Errorf("RetryAfter = %v, want %v", statusErr.RetryAfter, tc.retryAfter)
			}
			var transportErr *TransportError
			if errors.As(err, &transportErr) {
				t.Error("a status error is also a *TransportError")
			}
		})
	}
}

func TestStatusErrorText(t *testing.T) {
	c := startAgent(t).newClient(t)
	_, err := c.GetPub(context.Background(), handleMissing)
	want := "getpub 0x81000099: agent returned 404 Not Found: handle 0x81000099 not found in the TPM: check the host's key layout"
	if err == nil || err.Error() != want {
		t.Errorf("error is %q, want %q", err, want)
	}
}

// TestNon200BodyNotDecoded checks that a 400 whose body happens to be a
// valid response message is reported as an error, not decoded.
func TestNon200BodyNotDecoded(t *testing.T) {
	c := startAgent(t).newClient(t)
	got, err := c.GetPub(context.Background(), handleProtoBody)
	if got != nil {
		t.Errorf("GetPub returned a result %+v for a 400 response", got)
	}
	var statusErr *StatusError
	if !errors.As(err, &statusErr) {
		t.Fatalf("error is %v, want a *StatusError", err)
	}
	if statusErr.StatusCode != http.StatusBadRequest {
		t.Errorf("StatusCode = %d, want 400", statusErr.StatusCode)
	}
}

func TestInvalidResponseBody(t *testing.T) {
	c := startAgent(t).newClient(t)
	_, err := c.GetPub(context.Background(), handleGarbage)
	if !errors.Is(err, ErrInvalidResponse) {
		t.Fatalf("error is %v, want one that wraps ErrInvalidResponse", err)
	}
	var statusErr *StatusError
	if errors.As(err, &statusErr) {
		t.Error("an invalid 200 response is a *StatusError")
	}
	var transportErr *TransportError
	if errors.As(err, &transportErr) {
		t.Error("an invalid 200 response is a *TransportError")
	}
}

func TestResponseSizeLimit(t *testing.T) {
	s := startAgent(t)
	ctx := context.Background()
	c := s.newClient(t)
	small := s.newClient(t, WithMaxResponseSize(1024))

	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"Content-Length", func() error { _, err := c.ReadNV(ctx, handleHuge); return err }},
		{"chunked", func() error { _, err := c.ReadNV(ctx, handleHugeChunked); return err }},
		{"limit set by option", func() error { _, err := small.ReadNV(ctx, handleLargeNV); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if !errors.Is(err, ErrResponseTooLarge) {
				t.Fatalf("error is %v, want one that wraps ErrResponseTooLarge", err)
			}
		})
	}

	// The same 4 KiB response fits the default limit.
	if _, err := c.ReadNV(ctx, handleLargeNV); err != nil {
		t.Errorf("ReadNV of 4 KiB with the default limit: %v", err)
	}
}

func TestKeepAliveReusesConnection(t *testing.T) {
	s := startAgent(t)
	c := s.newClient(t)
	ctx := context.Background()

	for i := range 10 {
		if _, err := c.GetPub(ctx, vcom.HandleAIK); err != nil {
			t.Fatalf("GetPub %d: %v", i, err)
		}
		// Error responses keep the connection too, because the client
		// reads their bodies to the end.
		if _, err := c.GetPub(ctx, handleMissing); err == nil {
			t.Fatalf("GetPub %d of a missing handle succeeded", i)
		}
	}
	if n := s.listener.accepted.Load(); n != 1 {
		t.Errorf("the agent accepted %d connections for 20 sequential calls, want 1", n)
	}
}

func TestConcurrentCalls(t *testing.T) {
	s := startAgent(t)
	c := s.newClient(t)
	ctx := context.Background()
	const goroutines, calls = 16, 8

	var wg sync.WaitGroup
	errs := make(chan error, goroutines*calls)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range calls {
				data := []byte{byte(g), byte(i)}
				sig, err := c.Sign(ctx, vcom.HandleAIK, data)
				if err != nil {
					errs <- err
					continue
				}
				if err := verify.VerifySignature(s.agent.aikPub, data, sig.Response); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)

	for err := range errs {
		t.Error(err)
	}
	if n := s.agent.requests.Load(); n != goroutines*calls {
		t.Errorf("the agent received %d requests, want %d", n, goroutines*calls)
	}
	// A request that waits for a connection makes the transport dial one,
	// and an idle connection may serve the request before that dial ends,
	// so a few more connections than goroutines are possible.
	if n := s.listener.accepted.Load(); n > 2*goroutines {
		t.Errorf("the agent accepted %d connections for %d calls, want at most %d", n, goroutines*calls, 2*goroutines)
	}
}

func TestContextCanceled(t *testing.T) {
	c := startAgent(t).newClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)

	_, err := c.GetPub(ctx, handleSlow)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error is %v, want one that wraps context.Canceled", err)
	}
	var transportErr *TransportError
	if !errors.As(err, &transportErr) {
		t.Fatalf("error is %v, want a *TransportError", err)
	}
	if transportErr.Op != "getpub" || transportErr.Handle != handleSlow {
		t.Errorf("TransportError names %s 0x%08x, want getpub 0x%08x", transportErr.Op, transportErr.Handle, handleSlow)
	}
}

func TestTimeout(t *testing.T) {
	c := startAgent(t).newClient(t, WithTimeout(100*time.Millisecond))
	_, err := c.ReadNV(context.Background(), handleSlow)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error is %v, want one that wraps context.DeadlineExceeded", err)
	}
}

func TestDialFailure(t *testing.T) {
	dir, err := os.MkdirTemp("", "vc")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	addr := "unix://" + filepath.Join(dir, "missing.sock")

	c, err := New(addr)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer c.Close()

	_, err = c.GetPub(context.Background(), vcom.HandleEK)
	var transportErr *TransportError
	if !errors.As(err, &transportErr) {
		t.Fatalf("error is %v, want a *TransportError", err)
	}
	if transportErr.Address != addr {
		t.Errorf("Address = %q, want %q", transportErr.Address, addr)
	}
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("error %q does not wrap the missing socket's cause", err)
	}
	if !containsAll(err.Error(), "getpub 0x81000001", addr) {
		t.Errorf("error %q does not name the operation and address", err)
	}
}
