package server

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/internal/simtest"
	"github.com/vcomlink/vcomlink/policy"
	"github.com/vcomlink/vcomlink/tpm"
)

// The decoder targets check that decode never panics, and that a message
// it accepts marshals to bytes that decode to an equal message. Their seed
// corpora are in testdata/fuzz.

// fuzzDecode runs the decoder target for messages that newMessage makes.
func fuzzDecode[M proto.Message](f *testing.F, newMessage func() M, seeds ...M) {
	for _, seed := range seeds {
		b, err := proto.Marshal(seed)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		m := newMessage()
		if err := decode(body, m); err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("decode(%x) error %q is not one line", body, err)
			}
			return
		}
		again, err := proto.Marshal(m)
		if err != nil {
			t.Fatalf("decode(%x) accepted a message that does not marshal: %v", body, err)
		}
		m2 := newMessage()
		if err := decode(again, m2); err != nil {
			t.Fatalf("decode(%x) accepted a message whose encoding %x it rejects: %v", body, again, err)
		}
		if !proto.Equal(m, m2) {
			t.Fatalf("decode(%x) = %v, but its encoding decodes to %v", body, m, m2)
		}
	})
}

func FuzzDecodeGetPub(f *testing.F) {
	fuzzDecode(f, func() *vcom.TpmRequestGetPub { return new(vcom.TpmRequestGetPub) },
		&vcom.TpmRequestGetPub{Index: vcom.HandleAIK})
}

func FuzzDecodeSign(f *testing.F) {
	fuzzDecode(f, func() *vcom.TpmRequestSign { return new(vcom.TpmRequestSign) },
		&vcom.TpmRequestSign{Index: vcom.HandleAIK, Data: []byte("data")},
		&vcom.TpmRequestSign{Index: vcom.HandleECDHKey, Data: make([]byte, 32)})
}

func FuzzDecodeReadNV(f *testing.F) {
	fuzzDecode(f, func() *vcom.TpmRequestReadNv { return new(vcom.TpmRequestReadNv) },
		&vcom.TpmRequestReadNv{Index: vcom.HandleEKCert})
}

func FuzzDecodeActivateCredParams(f *testing.F) {
	fuzzDecode(f, func() *vcom.TpmRequestActivateCredParams { return new(vcom.TpmRequestActivateCredParams) },
		&vcom.TpmRequestActivateCredParams{Index: vcom.HandleAIK})
}

func FuzzDecodeGeneratedCred(f *testing.F) {
	fuzzDecode(f, func() *vcom.TpmRequestGeneratedCred { return new(vcom.TpmRequestGeneratedCred) },
		&vcom.TpmRequestGeneratedCred{AikIndex: vcom.HandleAIK, Cred: []byte{0, 2, 1, 2}, Secret: []byte{0, 1, 9}})
}

func FuzzDecodeCertify(f *testing.F) {
	fuzzDecode(f, func() *vcom.TpmRequestCertify { return new(vcom.TpmRequestCertify) },
		&vcom.TpmRequestCertify{Index: vcom.HandleECDHKey, QualifyingData: []byte("nonce")})
}

// handlerStatuses are the statuses that the guest API may send to a
// request of arbitrary bytes. 500 is not among them: bad input must get a
// status that names the guest's mistake.
var handlerStatuses = map[int]bool{
	http.StatusOK:                    true,
	http.StatusBadRequest:            true,
	http.StatusForbidden:             true,
	http.StatusNotFound:              true,
	http.StatusRequestEntityTooLarge: true,
}

// FuzzHandler sends arbitrary bodies to each operation of the whole guest
// API, on the simulator, and checks that every response has a status the
// wire contract lists for bad input, and that every error is one line of
// text. path selects the operation, or an unknown path.
func FuzzHandler(f *testing.F) {
	paths := append(operationPaths(), "/tpm/unknown")
	seeds := []proto.Message{
		&vcom.TpmRequestGetPub{Index: vcom.HandleAIK},
		&vcom.TpmRequestSign{Index: vcom.HandleAIK, Data: []byte("data")},
		&vcom.TpmRequestReadNv{Index: vcom.HandleEKCert},
		&vcom.TpmRequestActivateCredParams{Index: vcom.HandleAIK},
		&vcom.TpmRequestGeneratedCred{AikIndex: vcom.HandleAIK, Cred: []byte{0, 1, 1}, Secret: []byte{0, 1, 1}},
		&vcom.TpmRequestCertify{Index: vcom.HandleECDHKey, QualifyingData: []byte("nonce")},
	}
	for i, m := range seeds {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(i), b)
	}

	sim := simtest.Start(f)
	svc, err := tpm.New(sim.Opener(f), tpm.DefaultConfig())
	if err != nil {
		f.Fatalf("start service: %v", err)
	}
	f.Cleanup(func() { svc.Close() })
	logs := &logBuffer{}
	handler := New(Config{TPM: svc, Policy: policy.NewDefault(), Logger: logs.logger(), RequestRate: -1}).Handler()

	f.Fuzz(func(t *testing.T, path uint8, body []byte) {
		target := paths[int(path)%len(paths)]
		req := httptest.NewRequest(http.MethodPost, target, bytes.NewReader(body))
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)

		if !handlerStatuses[rec.Code] {
			t.Fatalf("POST %s with body %x: status %d (%s)", target, body, rec.Code, rec.Body)
		}
		if rec.Code == http.StatusOK {
			return
		}
		if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("POST %s with body %x: error with Content-Type %q", target, body, ct)
		}
		text := strings.TrimSuffix(rec.Body.String(), "\n")
		if text == "" || strings.Contains(text, "\n") {
			t.Errorf("POST %s with body %x: error %q is not one line", target, body, rec.Body)
		}
	})
}

// FuzzHTTPConn feeds arbitrary bytes to one connection of the server, on
// the simulator, and checks that every response is well formed HTTP/1.1
// with a status the guest API uses, and that the connection ends.
func FuzzHTTPConn(f *testing.F) {
	getPub, err := proto.Marshal(&vcom.TpmRequestGetPub{Index: vcom.HandleAIK})
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(string(rawRequest(vcom.PathGetPub, getPub)) + string(rawRequest(vcom.PathGetPub, getPub))))
	f.Add([]byte("POST /tpm/getpub HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n" + string(getPub) + "\r\n0\r\n\r\n"))
	f.Add([]byte("POST /tpm/getpub HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 6\r\n\r\n" + string(getPub)))
	f.Add([]byte("GET / HTTP/1.0\r\n\r\n"))
	f.Add([]byte("POST /tpm/sign HTTP/1.1\r\nContent-Length: 99999999\r\n\r\nab"))

	sim := simtest.Start(f)
	svc, err := tpm.New(sim.Opener(f), tpm.DefaultConfig())
	if err != nil {
		f.Fatalf("start service: %v", err)
	}
	f.Cleanup(func() { svc.Close() })
	logs := &logBuffer{}
	srv := New(Config{TPM: svc, Policy: policy.NewDefault(), Logger: logs.logger(), RequestRate: -1,
		ReadHeaderTimeout: time.Second, BodyTimeout: time.Second, IdleTimeout: time.Second})

	statuses := map[int]bool{100: true, 405: true, 408: true, 417: true, 431: true, 505: true}
	for code := range handlerStatuses {
		statuses[code] = true
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		server, client := socketPair(t)
		done := make(chan struct{})
		go func() {
			srv.serveConn(server)
			close(done)
		}()
		go func() {
			client.Write(input)
			client.CloseWrite()
		}()
		client.SetReadDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(client)
		for {
			rsp, err := http.ReadResponse(br, nil)
			if err != nil {
				break
			}
			io.Copy(io.Discard, rsp.Body)
			rsp.Body.Close()
			if !statuses[rsp.StatusCode] {
				t.Fatalf("input %q: status %d", input, rsp.StatusCode)
			}
		}
		client.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("input %q: the connection did not end", input)
		}
	})
}

// socketPair returns the two ends of a connected Unix stream socket pair.
func socketPair(t *testing.T) (net.Conn, *net.UnixConn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	return conns[0], conns[1].(*net.UnixConn)
}
