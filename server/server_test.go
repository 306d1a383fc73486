package server

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/internal/simtest"
	"github.com/vcomlink/vcomlink/tpm"
)

func startAgent(t *testing.T) *agent {
	t.Helper()
	return startAgentWith(t, nil)
}

// startAgentWith starts an agent on a provisioned simulator, with the
// server configuration that configure changes, if not nil.
func startAgentWith(t *testing.T, configure func(*Config)) *agent {
	t.Helper()
	sim := simtest.Start(t)
	svc, err := tpm.New(sim.Opener(t), tpm.DefaultConfig())
	if err != nil {
		t.Fatalf("start service: %v", err)
	}
	t.Cleanup(func() { svc.Close() })
	a := newAgent(t, svc, configure)
	a.sim = sim
	return a
}

// response is what the agent sent back.
type response struct {
	status int
	header http.Header
	body   []byte
	close  bool // the response closes the connection
}

func (a *agent) do(t *testing.T, method, path string, body []byte) response {
	t.Helper()
	req, err := http.NewRequest(method, "http://vcomlink"+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	rsp, err := a.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer rsp.Body.Close()
	data, err := io.ReadAll(rsp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{rsp.StatusCode, rsp.Header, data, rsp.Close}
}

func (a *agent) post(t *testing.T, path string, m proto.Message) response {
	t.Helper()
	body, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return a.do(t, http.MethodPost, path, body)
}

// checkError checks the status and that the body is one line of text
// containing want.
func checkError(t *testing.T, name string, r response, status int, want string) {
	t.Helper()
	if r.status != status {
		t.Errorf("%s: status %d (%q); want %d", name, r.status, r.body, status)
		return
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("%s: Content-Type %q; want text/plain", name, ct)
	}
	text := strings.TrimSuffix(string(r.body), "\n")
	if text == "" || strings.Contains(text, "\n") {
		t.Errorf("%s: body %q is not one line", name, r.body)
	}
	if !strings.Contains(text, want) {
		t.Errorf("%s: message %q does not contain %q", name, text, want)
	}
}

func TestServeGetPub(t *testing.T) {
	a := startAgent(t)
	r := a.post(t, vcom.PathGetPub, &vcom.TpmRequestGetPub{Index: vcom.HandleAIK})
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != vcom.ContentType {
		t.Errorf("Content-Type %q; want %q", ct, vcom.ContentType)
	}
	var m vcom.TpmResponseGetPub
	if err := proto.Unmarshal(r.body, &m); err != nil {
		t.Fatal(err)
	}
	if m.Algorithm != 0x0001 {
		t.Errorf("algorithm 0x%04x; want RSA (0x0001)", m.Algorithm)
	}
	if len(m.Public) == 0 {
		t.Errorf("public is empty")
	}
}

func varintField(num protowire.Number, v uint64) []byte {
	b := protowire.AppendTag(nil, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func bytesField(num protowire.Number, v []byte) []byte {
	b := protowire.AppendTag(nil, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func TestMalformedRequests(t *testing.T) {
	a := startAgent(t)
	index := varintField(1, uint64(vcom.HandleAIK))

	cases := []struct {
		name   string
		method string
		path   string
		body   []byte
		status int
		want   string
	}{
		{"GET", http.MethodGet, vcom.PathGetPub, nil, 405, "with POST"},
		{"PUT", http.MethodPut, vcom.PathSign, index, 405, "with POST"},
		{"unknown path", http.MethodPost, "/tpm/quote", index, 404, "/tpm/getpub"},
		{"trailing slash", http.MethodPost, "/tpm/getpub/", index, 404, "no operation"},
		{"double slash", http.MethodPost, "/tpm//getpub", index, 404, "no operation"},
		{"root", http.MethodPost, "/", nil, 404, "no operation"},
		{"garbage", http.MethodPost, vcom.PathGetPub, []byte{0xff, 0xff, 0xff}, 400, "not a valid TpmRequestGetPub"},
		{"truncated varint", http.MethodPost, vcom.PathGetPub, []byte{0x08, 0xff}, 400, "not a valid"},
		{"truncated length", http.MethodPost, vcom.PathSign, append(index, 0x12, 0x10, 1), 400, "not a valid TpmRequestSign"},
		{"index as bytes", http.MethodPost, vcom.PathGetPub, bytesField(1, []byte{1, 2}), 400, "field 1 (index) has wire type length-delimited"},
		{"data as varint", http.MethodPost, vcom.PathSign, append(index, varintField(2, 5)...), 400, "field 2 (data) has wire type varint"},
		{"index as fixed32", http.MethodPost, vcom.PathReadNV, protowire.AppendFixed32(protowire.AppendTag(nil, 1, protowire.Fixed32Type), vcom.HandleEKCert), 400, "wire type fixed32"},
		{"empty getpub", http.MethodPost, vcom.PathGetPub, nil, 400, "index is missing"},
		{"empty sign", http.MethodPost, vcom.PathSign, nil, 400, "index is missing"},
		{"empty readnv", http.MethodPost, vcom.PathReadNV, nil, 400, "index is missing"},
		{"empty activatecredparams", http.MethodPost, vcom.PathActivateCredParams, nil, 400, "index is missing"},
		{"empty activatecred", http.MethodPost, vcom.PathActivateCredential, nil, 400, "aik_index is missing"},
		{"empty certifykey", http.MethodPost, vcom.PathCertifyKey, nil, 400, "index is missing"},
		{"hierarchy as key", http.MethodPost, vcom.PathGetPub, varintField(1, 0x40000001), 400, "getpub 0x40000001: the handle is a hierarchy or permanent handle; this operation needs a persistent key handle"},
		{"key as NV index", http.MethodPost, vcom.PathReadNV, varintField(1, uint64(vcom.HandleAIK)), 400, "readnv 0x81000003: the handle is a persistent object; this operation needs an NV index"},
		{"transient as AIK", http.MethodPost, vcom.PathActivateCredential, varintField(3, 0x80000001), 400, "the aik_index handle is a transient object"},
		{"over the body limit", http.MethodPost, vcom.PathSign, make([]byte, vcom.MaxBodySize+1), 413, "larger than the limit of 65536 bytes"},
	}
	for _, c := range cases {
		r := a.do(t, c.method, c.path, c.body)
		checkError(t, c.name, r, c.status, c.want)
		if c.status == 405 && r.header.Get("Allow") != http.MethodPost {
			t.Errorf("%s: Allow %q; want POST", c.name, r.header.Get("Allow"))
		}
	}

	// A normal request still works afterwards.
	if r := a.do(t, http.MethodPost, vcom.PathGetPub, index); r.status != http.StatusOK {
		t.Fatalf("getpub after bad requests: %d %s", r.status, r.body)
	}
}

func TestUnknownFieldsIgnored(t *testing.T) {
	a := startAgent(t)
	body := append(varintField(9, 7), varintField(1, uint64(vcom.HandleAIK))...)
	body = append(body, bytesField(15, []byte("extra"))...)
	if r := a.do(t, http.MethodPost, vcom.PathGetPub, body); r.status != http.StatusOK {
		t.Fatalf("status %d (%s); want 200", r.status, r.body)
	}
}

func TestBodyLimit(t *testing.T) {
	a := startAgent(t)

	// A sign request of exactly the limit is accepted.
	data := make([]byte, vcom.MaxBodySize-16)
	for len(mustMarshal(t, &vcom.TpmRequestSign{Index: vcom.HandleAIK, Data: data})) < vcom.MaxBodySize {
		data = append(data, 1)
	}
	body := mustMarshal(t, &vcom.TpmRequestSign{Index: vcom.HandleAIK, Data: data})
	if len(body) != vcom.MaxBodySize {
		t.Fatalf("built a body of %d bytes", len(body))
	}
	if r := a.do(t, http.MethodPost, vcom.PathSign, body); r.status != http.StatusOK {
		t.Fatalf("body of exactly %d bytes: status %d (%s)", len(body), r.status, r.body)
	}

	// A body over the limit without Content-Length (chunked) is refused.
	req, err := http.NewRequest(http.MethodPost, "http://vcomlink"+vcom.PathSign, io.MultiReader(bytes.NewReader(body), strings.NewReader("x")))
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = -1
	rsp, err := a.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	rsp.Body.Close()
	if rsp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked body over the limit: status %d; want 413", rsp.StatusCode)
	}
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// handleRequest builds the request of an operation with h in its handle
// field.
func handleRequest(path string, h uint32) proto.Message {
	switch path {
	case vcom.PathGetPub:
		return &vcom.TpmRequestGetPub{Index: h}
	case vcom.PathSign:
		return &vcom.TpmRequestSign{Index: h, Data: make([]byte, 32)}
	case vcom.PathReadNV:
		return &vcom.TpmRequestReadNv{Index: h}
	case vcom.PathActivateCredParams:
		return &vcom.TpmRequestActivateCredParams{Index: h}
	case vcom.PathActivateCredential:
		return &vcom.TpmRequestGeneratedCred{AikIndex: h, Cred: []byte{0, 1, 1}, Secret: []byte{0, 1, 1}}
	case vcom.PathCertifyKey:
		return &vcom.TpmRequestCertify{Index: h}
	}
	panic("unknown path " + path)
}

// TestHandlesOfEveryType sends a handle of every type to every operation
// and checks the status: the wrong type is 400 before the policy or the TPM
// sees it, the never handles are 403, and a missing handle of the right
// type is 404.
func TestHandlesOfEveryType(t *testing.T) {
	a := startAgent(t)
	keyOps := []string{vcom.PathGetPub, vcom.PathSign, vcom.PathActivateCredParams, vcom.PathActivateCredential, vcom.PathCertifyKey}

	type handleCase struct {
		h         uint32
		keyStatus int
		nvStatus  int
		what      string
	}
	cases := []handleCase{
		{0x00000007, 400, 400, "a PCR"},
		{0x02000000, 400, 400, "an HMAC session"},
		{0x03000001, 400, 400, "a policy session"},
		{0x40000001, 400, 400, "a hierarchy"},
		{0x4000000b, 400, 400, "a hierarchy"},
		{0x40000009, 400, 400, "a hierarchy"}, // TPM_RS_PW
		{0x80000000, 400, 400, "a transient object"},
		{0x80000001, 400, 400, "a transient object"},
		{0xff000000, 400, 400, "not a valid handle"},
		{0x81000099, 404, 400, ""},
		{0x01000099, 400, 404, ""},
		{vcom.HandleEKCert, 400, 200, ""},
		{vcom.HandleDeviceKeyCredential, 400, 403, "guests never use this handle"},
		{vcom.HandleDiskKey1, 400, 403, "guests never use this handle"},
		{vcom.HandleDiskKey2, 400, 403, "guests never use this handle"},
		{vcom.HandleDiskKey3, 400, 403, "guests never use this handle"},
	}
	for _, c := range cases {
		for _, path := range keyOps {
			r := a.post(t, path, handleRequest(path, c.h))
			name := fmt.Sprintf("%s 0x%08x", path, c.h)
			want := c.what
			if c.nvStatus == 403 || want == "" {
				want = "persistent key handle"
			}
			if c.keyStatus == 404 {
				want = "the handle does not exist in the TPM: TPM_RC_HANDLE"
				if strings.Contains(string(r.body), "not correct for the use") {
					t.Errorf("%s: message %q adds go-tpm's description of TPM_RC_HANDLE", name, r.body)
				}
			}
			checkError(t, name, r, c.keyStatus, want)
		}
		r := a.post(t, vcom.PathReadNV, handleRequest(vcom.PathReadNV, c.h))
		name := fmt.Sprintf("readnv 0x%08x", c.h)
		if c.nvStatus == 200 {
			if r.status != 200 {
				t.Errorf("%s: status %d (%s); want 200", name, r.status, r.body)
			}
			continue
		}
		want := c.what
		switch {
		case c.nvStatus == 400 && want == "":
			want = "needs an NV index"
		case c.nvStatus == 404:
			want = "does not exist"
		}
		checkError(t, name, r, c.nvStatus, want)
	}

	if loaded := a.sim.Loaded(t); len(loaded) != 0 {
		t.Errorf("handles left loaded: %v", loaded)
	}
}

func TestRefusals(t *testing.T) {
	a := startAgent(t)
	digest := make([]byte, 32)
	cases := []struct {
		name   string
		path   string
		req    proto.Message
		status int
		want   string
	}{
		{"sign with the quote key", vcom.PathSign, &vcom.TpmRequestSign{Index: vcom.HandleQuoteKey, Data: digest}, 403, "only read this key's public area"},
		{"sign with the device key", vcom.PathSign, &vcom.TpmRequestSign{Index: vcom.HandleDeviceKey, Data: digest}, 403, "only read this key's public area"},
		{"certify the quote key", vcom.PathCertifyKey, &vcom.TpmRequestCertify{Index: vcom.HandleQuoteKey}, 403, "public area"},
		{"certify the device key", vcom.PathCertifyKey, &vcom.TpmRequestCertify{Index: vcom.HandleDeviceKey}, 403, "public area"},
		{"activate for the quote key", vcom.PathActivateCredential, &vcom.TpmRequestGeneratedCred{AikIndex: vcom.HandleQuoteKey, Cred: []byte{0, 1, 1}, Secret: []byte{0, 1, 1}}, 403, "public area"},
		{"sign with the EK", vcom.PathSign, &vcom.TpmRequestSign{Index: vcom.HandleEK, Data: digest}, 400, "sign attribute"},
		{"digest too short", vcom.PathSign, &vcom.TpmRequestSign{Index: vcom.HandleECDHKey, Data: digest[:20]}, 400, "32 bytes"},
		{"quote forgery", vcom.PathSign, &vcom.TpmRequestSign{Index: vcom.HandleAIK, Data: []byte{0xff, 'T', 'C', 'G', 0x80, 0x18}}, 400, "TPM_GENERATED_VALUE"},
		{"params for an unrestricted key", vcom.PathActivateCredParams, &vcom.TpmRequestActivateCredParams{Index: vcom.HandleECDHKey}, 400, "not a restricted signing key"},
		{"cred prefix too long", vcom.PathActivateCredential, &vcom.TpmRequestGeneratedCred{AikIndex: vcom.HandleAIK, Cred: []byte{0, 9, 1}, Secret: []byte{0, 1, 1}}, 400, "size prefix says 9 bytes but 1 follow"},
		{"secret prefix too short", vcom.PathActivateCredential, &vcom.TpmRequestGeneratedCred{AikIndex: vcom.HandleAIK, Cred: []byte{0, 1, 1}, Secret: []byte{0, 1, 1, 2}}, 400, "size prefix says 1 bytes but 2 follow"},
		{"cred of one byte", vcom.PathActivateCredential, &vcom.TpmRequestGeneratedCred{AikIndex: vcom.HandleAIK, Cred: []byte{0}, Secret: []byte{0, 1, 1}}, 400, "too short"},
		{"cred garbage", vcom.PathActivateCredential, &vcom.TpmRequestGeneratedCred{AikIndex: vcom.HandleAIK, Cred: []byte{0, 4, 1, 2, 3, 4}, Secret: []byte{0, 2, 1, 2}}, 400, "the TPM rejected the credential"},
		{"nonce too long", vcom.PathCertifyKey, &vcom.TpmRequestCertify{Index: vcom.HandleECDHKey, QualifyingData: make([]byte, 65)}, 400, "maximum is 64"},
	}
	for _, c := range cases {
		checkError(t, c.name, a.post(t, c.path, c.req), c.status, c.want)
	}
	if loaded := a.sim.Loaded(t); len(loaded) != 0 {
		t.Errorf("handles left loaded: %v", loaded)
	}
}

func TestSixteenConcurrentGuests(t *testing.T) {
	// The simulator answers faster than a TPM, so sixteen guests in a loop
	// would exceed the default request rate.
	a := startAgentWith(t, func(c *Config) { c.RequestRate = -1 })
	var wg sync.WaitGroup
	errs := make(chan string, 16*20)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				var r response
				switch i % 3 {
				case 0:
					r = a.postNoFatal(vcom.PathGetPub, &vcom.TpmRequestGetPub{Index: vcom.HandleAIK})
				case 1:
					r = a.postNoFatal(vcom.PathSign, &vcom.TpmRequestSign{Index: vcom.HandleAIK, Data: []byte("hello")})
				case 2:
					r = a.postNoFatal(vcom.PathReadNV, &vcom.TpmRequestReadNv{Index: vcom.HandleEKCert})
				}
				if r.status != http.StatusOK {
					errs <- fmt.Sprintf("status %d: %s", r.status, r.body)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// postNoFatal is post for goroutines other than the test's, which must not
// call t.Fatal.
func (a *agent) postNoFatal(path string, m proto.Message) response {
	body, err := proto.Marshal(m)
	if err != nil {
		return response{status: -1, body: []byte(err.Error())}
	}
	rsp, err := a.client.Post("http://vcomlink"+path, "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		return response{status: -1, body: []byte(err.Error())}
	}
	defer rsp.Body.Close()
	data, _ := io.ReadAll(rsp.Body)
	return response{rsp.StatusCode, rsp.Header, data, rsp.Close}
}
