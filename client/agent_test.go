package client

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"google.golang.org/protobuf/proto"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/verify"
)

// Handles on which the fake agent misbehaves or fails in a known way.
const (
	handleMissing      uint32 = 0x81000099 // 404
	handleRateLimited  uint32 = 0x81000042 // 429 with Retry-After
	handleMultiline    uint32 = 0x81000044 // 500 with a two-line message
	handleProtoBody    uint32 = 0x81000055 // 400 whose body is a valid protobuf
	handleGarbage      uint32 = 0x81000066 // 200 with a body that is not protobuf
	handleSlow         uint32 = 0x81000077 // no response until the request ends
	handleHuge         uint32 = 0x81000088 // 200 with 2 MiB and Content-Length
	handleHugeChunked  uint32 = 0x81000089 // 200 with 2 MiB, chunked
	handleBadAlgorithm uint32 = 0x81000033 // getpub with a wrong algorithm field
	handleBadName      uint32 = 0x81000034 // activatecredparams with a wrong aik_name
	handleLargeNV      uint32 = 0x01500000 // 4 KiB of NV data
)

// hugeSize is larger than DefaultMaxResponseSize.
const hugeSize = 2 << 20

// recoveredSecret is what the fake agent returns for ActivateCredential.
var recoveredSecret = []byte("recovered secret")

// fakeAgent serves the vcomlink protocol from software keys. It checks the
// method, Content-Type and body of each request and records what it
// received.
type fakeAgent struct {
	t *testing.T

	aik      *rsa.PrivateKey
	aikPub   *tpm2.TPMTPublic
	ecc      *ecdsa.PrivateKey
	eccPub   *tpm2.TPMTPublic
	ekPub    *tpm2.TPMTPublic
	ekCertNV []byte

	requests atomic.Int64
	// lastCred and lastSecret are the last ActivateCredential inputs.
	lastCred, lastSecret atomic.Pointer[[]byte]
}

// softwareKeys are the private keys of a fake agent. RSA key generation
// takes a while, so the tests share one set.
type softwareKeys struct {
	aik, ek *rsa.PrivateKey
	ecc     *ecdsa.PrivateKey
}

var generateKeys = sync.OnceValues(func() (*softwareKeys, error) {
	aik, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	ek, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	ecc, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return &softwareKeys{aik: aik, ek: ek, ecc: ecc}, nil
})

func newFakeAgent(t *testing.T) *fakeAgent {
	t.Helper()
	keys, err := generateKeys()
	if err != nil {
		t.Fatalf("generating keys: %v", err)
	}
	aik, ek, ecc := keys.aik, keys.ek, keys.ecc

	a := &fakeAgent{t: t, aik: aik, ecc: ecc}
	a.aikPub = rsaPublic(aik, tpm2.TPMAObject{
		FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true, UserWithAuth: true,
		NoDA: true, Restricted: true, SignEncrypt: true,
	}, tpm2.TPMTRSAScheme{
		Scheme:  tpm2.TPMAlgRSASSA,
		Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSigSchemeRSASSA{HashAlg: tpm2.TPMAlgSHA256}),
	})

	ekPub := tpm2.RSAEKTemplate
	ekPub.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: ek.N.Bytes()})
	a.ekPub = &ekPub

	point, err := ecc.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	a.eccPub = &tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgECC,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true, UserWithAuth: true,
			NoDA: true, SignEncrypt: true, Decrypt: true,
		},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Scheme:  tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull},
			CurveID: tpm2.TPMECCNistP256,
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: point[1:33]},
			Y: tpm2.TPM2BECCParameter{Buffer: point[33:]},
		}),
	}

	// The EK certificate is stored in a larger NV index, padded with 0xFF.
	a.ekCertNV = append(selfSignedCert(t, &ek.PublicKey), bytes.Repeat([]byte{0xFF}, 300)...)
	return a
}

func rsaPublic(key *rsa.PrivateKey, attrs tpm2.TPMAObject, scheme tpm2.TPMTRSAScheme) *tpm2.TPMTPublic {
	return &tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgRSA,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: attrs,
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
			Scheme:  scheme,
			KeyBits: 2048,
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: key.N.Bytes()}),
	}
}

func selfSignedCert(t *testing.T, pub crypto.PublicKey) []byte {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	template := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: "test EK"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageKeyEncipherment,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, pub, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// ServeHTTP serves one request as the agent does.
func (a *fakeAgent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.requests.Add(1)
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if got := r.Header.Get("Content-Type"); got != vcom.ContentType {
		a.t.Errorf("request Content-Type is %q, want %q", got, vcom.ContentType)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, vcom.MaxBodySize))
	if err != nil {
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}

	var req proto.Message
	switch r.URL.Path {
	case vcom.PathGetPub:
		req = &vcom.TpmRequestGetPub{}
	case vcom.PathSign:
		req = &vcom.TpmRequestSign{}
	case vcom.PathReadNV:
		req = &vcom.TpmRequestReadNv{}
	case vcom.PathActivateCredParams:
		req = &vcom.TpmRequestActivateCredParams{}
	case vcom.PathActivateCredential:
		req = &vcom.TpmRequestGeneratedCred{}
	case vcom.PathCertifyKey:
		req = &vcom.TpmRequestCertify{}
	default:
		http.Error(w, "unknown path "+r.URL.Path, http.StatusNotFound)
		return
	}
	if err := proto.Unmarshal(body, req); err != nil {
		http.Error(w, "invalid request: "+err.Error(), http.StatusBadRequest)
		return
	}

	var handle uint32
	switch req := req.(type) {
	case interface{ GetIndex() uint32 }:
		handle = req.GetIndex()
	case *vcom.TpmRequestGeneratedCred:
		handle = req.GetAikIndex()
	}
	if a.fail(w, r, handle) {
		return
	}

	var rsp proto.Message
	switch req := req.(type) {
	case *vcom.TpmRequestGetPub:
		rsp = a.getPub(w, handle)
	case *vcom.TpmRequestSign:
		rsp = a.sign(w, handle, req.GetData())
	case *vcom.TpmRequestReadNv:
		rsp = a.readNV(w, handle)
	case *vcom.TpmRequestActivateCredParams:
		rsp = a.activateCredParams(handle)
	case *vcom.TpmRequestGeneratedCred:
		a.lastCred.Store(&req.Cred)
		a.lastSecret.Store(&req.Secret)
		rsp = &vcom.TpmResponseActivatedCred{Secret: recoveredSecret}
	case *vcom.TpmRequestCertify:
		rsp = a.certify(req.GetQualifyingData())
	}
	if rsp == nil {
		return
	}

	out, err := proto.Marshal(rsp)
	if err != nil {
		a.t.Errorf("encoding the response: %v", err)
		return
	}
	w.Header().Set("Content-Type", vcom.ContentType)
	w.Write(out)
}

// fail writes the response for the handles that misbehave in every
// operation, and reports whether handle is one of them.
func (a *fakeAgent) fail(w http.ResponseWriter, r *http.Request, handle uint32) bool {
	switch handle {
	case handleMissing:
		http.Error(w, "handle 0x81000099 not found in the TPM: check the host's key layout", http.StatusNotFound)
		return true
	case vcom.HandleDeviceKeyCredential:
		http.Error(w, "the access policy does not allow this VM to read NV index 0x01600000", http.StatusForbidden)
		return true
	case handleRateLimited:
		w.Header().Set("Retry-After", "3")
		http.Error(w, "too many requests from this VM: retry later", http.StatusTooManyRequests)
		return true
	case handleMultiline:
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, "  TPM error \x1b[31mTPM_RC_FAILURE\r\nsecond line\n")
		return true
	case handleProtoBody:
		body, _ := proto.Marshal(&vcom.TpmResponseGetPub{Public: tpm2.Marshal(a.aikPub), Algorithm: 1})
		w.WriteHeader(http.StatusBadRequest)
		w.Write(body)
		return true
	case handleGarbage:
		w.Write([]byte{0xFF, 0xFF, 0xFF, 0xFF})
		return true
	case handleSlow:
		<-r.Context().Done()
		return true
	case handleHuge:
		w.Header().Set("Content-Length", "2097152")
		w.Write(make([]byte, hugeSize))
		return true
	case handleHugeChunked:
		chunk := make([]byte, 64<<10)
		for range hugeSize / len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				break
			}
			w.(http.Flusher).Flush()
		}
		return true
	}
	return false
}

func (a *fakeAgent) getPub(w http.ResponseWriter, handle uint32) proto.Message {
	var pub *tpm2.TPMTPublic
	switch handle {
	case vcom.HandleAIK, handleBadAlgorithm:
		pub = a.aikPub
	case vcom.HandleECDHKey:
		pub = a.eccPub
	default:
		http.Error(w, "unknown handle", http.StatusNotFound)
		return nil
	}

	raw := tpm2.Marshal(pub)
	rsp := &vcom.TpmResponseGetPub{
		Public:     raw,
		Algorithm:  uint32(pub.Type),
		Attributes: binary.BigEndian.Uint32(raw[4:8]),
	}
	if handle == handleBadAlgorithm {
		rsp.Algorithm = uint32(tpm2.TPMAlgECC)
	}
	return rsp
}

func (a *fakeAgent) sign(w http.ResponseWriter, handle uint32, data []byte) proto.Message {
	switch handle {
	case vcom.HandleAIK:
		digest := sha256.Sum256(data)
		sig, err := rsa.SignPKCS1v15(rand.Reader, a.aik, crypto.SHA256, digest[:])
		if err != nil {
			a.t.Errorf("signing: %v", err)
		}
		return &vcom.TpmResponseSign{Algorithm: "RSASSA", RsaSignature: sig, RsaHash: "SHA256"}
	case vcom.HandleECDHKey:
		if len(data) != sha256.Size {
			http.Error(w, "digest must be 32 bytes for ECDSA-SHA256", http.StatusBadRequest)
			return nil
		}
		r, s, err := ecdsa.Sign(rand.Reader, a.ecc, data)
		if err != nil {
			a.t.Errorf("signing: %v", err)
		}
		return &vcom.TpmResponseSign{Algorithm: "ECDSA", EccSignatureR: r.Bytes(), EccSignatureS: s.Bytes(), EccHash: "SHA256"}
	}
	http.Error(w, "unknown handle", http.StatusNotFound)
	return nil
}

func (a *fakeAgent) readNV(w http.ResponseWriter, handle uint32) proto.Message {
	switch handle {
	case vcom.HandleEKCert:
		return &vcom.TpmResponseReadNv{Data: a.ekCertNV}
	case handleLargeNV:
		return &vcom.TpmResponseReadNv{Data: bytes.Repeat([]byte{0x5A}, 4096)}
	}
	http.Error(w, "unknown NV index", http.StatusNotFound)
	return nil
}

func (a *fakeAgent) activateCredParams(handle uint32) proto.Message {
	name, err := verify.Name(a.aikPub)
	if err != nil {
		a.t.Errorf("computing the AIK name: %v", err)
	}
	if handle == handleBadName {
		name[len(name)-1] ^= 0x01
	}
	return &vcom.TpmResponseActivateCredParams{
		Ek:      tpm2.Marshal(a.ekPub),
		AikPub:  tpm2.Marshal(a.aikPub),
		AikName: tpm2.Marshal(tpm2.TPM2BName{Buffer: name}),
	}
}

func (a *fakeAgent) certify(nonce []byte) proto.Message {
	name, err := verify.Name(a.eccPub)
	if err != nil {
		a.t.Errorf("computing the name: %v", err)
	}
	attest := tpm2.Marshal(tpm2.TPMSAttest{
		Magic:     tpm2.TPMGeneratedValue,
		Type:      tpm2.TPMSTAttestCertify,
		ExtraData: tpm2.TPM2BData{Buffer: nonce},
		ClockInfo: tpm2.TPMSClockInfo{Clock: 12345, Safe: true},
		Attested: tpm2.NewTPMUAttest(tpm2.TPMSTAttestCertify, &tpm2.TPMSCertifyInfo{
			Name:          tpm2.TPM2BName{Buffer: name},
			QualifiedName: tpm2.TPM2BName{Buffer: name},
		}),
	})
	digest := sha256.Sum256(attest)
	sig, err := rsa.SignPKCS1v15(rand.Reader, a.aik, crypto.SHA256, digest[:])
	if err != nil {
		a.t.Errorf("signing: %v", err)
	}
	return &vcom.TpmResponseCertify{
		Public: tpm2.Marshal(a.eccPub),
		Sig: tpm2.Marshal(tpm2.TPMTSignature{
			SigAlg: tpm2.TPMAlgRSASSA,
			Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgRSASSA, &tpm2.TPMSSignatureRSA{
				Hash: tpm2.TPMAlgSHA256,
				Sig:  tpm2.TPM2BPublicKeyRSA{Buffer: sig},
			}),
		}),
		Attest: attest,
	}
}

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return conn, err
}

// testServer is a fake agent on a Unix socket.
type testServer struct {
	agent    *fakeAgent
	listener *countingListener
	addr     string
}

// startAgent serves a fake agent on a Unix socket in a new temporary
// directory, short enough for the 108-byte limit of socket paths.
func startAgent(t *testing.T) *testServer {
	t.Helper()
	dir, err := os.MkdirTemp("", "vc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })

	path := filepath.Join(dir, "agent.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	listener := &countingListener{Listener: ln}
	agent := newFakeAgent(t)
	server := &http.Server{Handler: agent, ReadHeaderTimeout: 10 * time.Second}
	go server.Serve(listener)
	t.Cleanup(func() { server.Close() })

	return &testServer{agent: agent, listener: listener, addr: "unix://" + path}
}

// newClient returns a client of s that is closed when the test ends.
func (s *testServer) newClient(t *testing.T, opts ...Option) *Client {
	t.Helper()
	c, err := New(s.addr, opts...)
	if err != nil {
		t.Fatalf("New(%q): %v", s.addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
