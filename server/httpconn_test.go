package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vcomlink/vcomlink/api/vcom"
)

// exchange sends raw request bytes on a new connection and reads one
// response.
func exchangeRaw(t *testing.T, a *agent, request string) (*http.Response, []byte, *bufio.Reader) {
	t.Helper()
	c := a.dial(t)
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	rsp, body := readResponse(t, c, br)
	return rsp, body, br
}

func getPubBody(t *testing.T) string {
	return string(mustMarshal(t, &vcom.TpmRequestGetPub{Index: vcom.HandleAIK}))
}

func TestHTTPPipelinedRequests(t *testing.T) {
	a := startAgent(t)
	body := getPubBody(t)
	one := fmt.Sprintf("POST /tpm/getpub HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	c := a.dial(t)
	io.WriteString(c, one+one+one)
	br := bufio.NewReader(c)
	for i := range 3 {
		rsp, text := readResponse(t, c, br)
		if rsp.StatusCode != http.StatusOK {
			t.Fatalf("pipelined request %d: status %d (%s)", i, rsp.StatusCode, text)
		}
		if rsp.Close {
			t.Fatalf("pipelined request %d: the response closes the connection", i)
		}
	}
}

func TestHTTPChunkedBody(t *testing.T) {
	a := startAgent(t)
	body := getPubBody(t)
	request := fmt.Sprintf("POST /tpm/getpub HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(body), body)
	rsp, text, _ := exchangeRaw(t, a, request)
	if rsp.StatusCode != http.StatusOK {
		t.Fatalf("chunked body: status %d (%s)", rsp.StatusCode, text)
	}
}

func TestHTTPExpectContinue(t *testing.T) {
	a := startAgent(t)
	body := getPubBody(t)
	c := a.dial(t)
	postExpectingContinue(t, c, bufio.NewReader(c), body)

	rsp, text, _ := exchangeRaw(t, a, "POST /tpm/getpub HTTP/1.1\r\nHost: h\r\nExpect: something-else\r\nContent-Length: 0\r\n\r\n")
	if rsp.StatusCode != http.StatusExpectationFailed {
		t.Fatalf("unknown Expect: status %d (%s); want 417", rsp.StatusCode, text)
	}
}

func TestHTTPConnectionClose(t *testing.T) {
	a := startAgent(t)
	body := getPubBody(t)
	cases := map[string]string{
		"HTTP/1.1 with Connection: close": "POST /tpm/getpub HTTP/1.1\r\nHost: h\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
		"HTTP/1.0":                        "POST /tpm/getpub HTTP/1.0\r\nContent-Length: %d\r\n\r\n%s",
	}
	for name, format := range cases {
		rsp, text, br := exchangeRaw(t, a, fmt.Sprintf(format, len(body), body))
		if rsp.StatusCode != http.StatusOK {
			t.Errorf("%s: status %d (%s)", name, rsp.StatusCode, text)
		}
		if !rsp.Close {
			t.Errorf("%s: the response does not close the connection", name)
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Errorf("%s: the connection stays open after the response (%v)", name, err)
		}
	}

	// HTTP/1.0 with keep-alive keeps it.
	rsp, text, _ := exchangeRaw(t, a, fmt.Sprintf("POST /tpm/getpub HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
	if rsp.StatusCode != http.StatusOK || rsp.Close {
		t.Errorf("HTTP/1.0 keep-alive: status %d (%s), close %v", rsp.StatusCode, text, rsp.Close)
	}
}

func TestHTTPMalformedRequests(t *testing.T) {
	a := startAgent(t)
	well := a.as(t, "well")
	cases := map[string]string{
		"no version":         "POST /tpm/getpub\r\n\r\n",
		"bad version":        "POST /tpm/getpub HTTP/x.y\r\n\r\n",
		"bad header line":    "POST /tpm/getpub HTTP/1.1\r\nno colon here\r\n\r\n",
		"bad content length": "POST /tpm/getpub HTTP/1.1\r\nHost: h\r\nContent-Length: -4\r\n\r\n",
		"two lengths":        "POST /tpm/getpub HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
		"bad chunk size":     "POST /tpm/getpub HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"binary garbage":     "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
	}
	for name, request := range cases {
		c := a.dial(t)
		io.WriteString(c, request)
		got := waitClosed(t, c)
		status := strings.SplitN(string(got), "\r\n", 2)[0]
		if !strings.HasPrefix(status, "HTTP/1.1 400") {
			t.Errorf("%s: response %q; want 400 and a close", name, status)
		}
	}
	c := a.dial(t)
	io.WriteString(c, "POST /tpm/getpub HTTP/2.0\r\nHost: h\r\nContent-Length: 0\r\n\r\n")
	if got := string(waitClosed(t, c)); !strings.HasPrefix(got, "HTTP/1.1 505") {
		t.Errorf("HTTP/2.0 request line: response %q; want 505 and a close", got)
	}
	well.mustServe(t, "after the malformed requests")
}

func TestHTTPUnreadBodyClosesConnection(t *testing.T) {
	a := startAgent(t)
	// A GET with a large body gets 405 without the body being read; the
	// rest is too long to discard, so the connection closes.
	big := strings.Repeat("x", maxDiscard+1024)
	rsp, text, _ := exchangeRaw(t, a, fmt.Sprintf("GET /tpm/getpub HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s", len(big), big))
	if rsp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("status %d (%s); want 405", rsp.StatusCode, text)
	}
	if !rsp.Close {
		t.Errorf("a response that left a long body unread keeps the connection")
	}

	// A short unread body is discarded and the connection stays.
	body := getPubBody(t)
	c := a.dial(t)
	fmt.Fprintf(c, "GET /tpm/getpub HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello")
	fmt.Fprintf(c, "POST /tpm/getpub HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	br := bufio.NewReader(c)
	if rsp, _ := readResponse(t, c, br); rsp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("first: status %d; want 405", rsp.StatusCode)
	}
	if rsp, text := readResponse(t, c, br); rsp.StatusCode != http.StatusOK {
		t.Fatalf("second request on the same connection: status %d (%s)", rsp.StatusCode, text)
	}
}

func TestHTTPHeaderInjectionInValues(t *testing.T) {
	var b strings.Builder
	w := bufio.NewWriter(&b)
	h := http.Header{"X-Test": {"a\r\nInjected: yes"}}
	writeResponse(w, 200, h, nil)
	w.Flush()
	if strings.Contains(b.String(), "\r\nInjected:") {
		t.Fatalf("a header value split the response: %q", b.String())
	}
}

func TestHTTPHeadHasNoBody(t *testing.T) {
	a := startAgent(t)
	body := getPubBody(t)
	c := a.dial(t)
	io.WriteString(c, "HEAD /tpm/getpub HTTP/1.1\r\nHost: h\r\n\r\n")
	fmt.Fprintf(c, "POST /tpm/getpub HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(time.Minute))
	head, err := http.ReadResponse(br, &http.Request{Method: http.MethodHead})
	if err != nil {
		t.Fatal(err)
	}
	if head.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("HEAD: status %d; want 405", head.StatusCode)
	}
	if rsp, text := readResponse(t, c, br); rsp.StatusCode != http.StatusOK {
		t.Fatalf("the request after HEAD: status %d (%s); a body after the HEAD response would break this", rsp.StatusCode, text)
	}
}

// TestHTTPRefusalBeforeBodyArrives sends requests that are refused before
// their body is read, with the body still on its way, at the default
// timeouts. The refusal goes out at once, and the connection closes.
func TestHTTPRefusalBeforeBodyArrives(t *testing.T) {
	a := startAgent(t)
	cases := []struct {
		name, request string
		status        int
	}{
		{"Content-Length over the limit, no body", "POST /tpm/sign HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000\r\n\r\n", 413},
		{"GET with 3 of 10 body bytes", "GET /tpm/getpub HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc", 405},
		{"unknown path with a chunked body cut short", "POST /tpm/quote HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc", 404},
	}
	for _, tc := range cases {
		rsp, text, br := exchangeRaw(t, a, tc.request)
		if rsp.StatusCode != tc.status {
			t.Errorf("%s: status %d (%s); want %d", tc.name, rsp.StatusCode, text, tc.status)
		}
		if !rsp.Close {
			t.Errorf("%s: the response keeps the connection open; want Connection: close", tc.name)
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Errorf("%s: the connection stays open after the response (%v)", tc.name, err)
		}
	}
	a.mustServe(t, "after the refusals")
}

// TestHTTPRefusalKeepsConnectionWithWholeBody checks that a refused request
// whose body has arrived whole keeps its connection.
func TestHTTPRefusalKeepsConnectionWithWholeBody(t *testing.T) {
	a := startAgent(t)
	body := getPubBody(t)
	c := a.dial(t)
	fmt.Fprintf(c, "GET /tpm/getpub HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	br := bufio.NewReader(c)
	rsp, text := readResponse(t, c, br)
	if rsp.StatusCode != http.StatusMethodNotAllowed || rsp.Close {
		t.Fatalf("GET with a whole body: status %d (%s), close %v; want 405 on an open connection", rsp.StatusCode, text, rsp.Close)
	}
	fmt.Fprintf(c, "POST /tpm/getpub HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	if rsp, text := readResponse(t, c, br); rsp.StatusCode != http.StatusOK {
		t.Fatalf("the next request on the connection: status %d (%s); want 200", rsp.StatusCode, text)
	}
}

// TestHTTPExpectContinueAfterIdle sends a request with Expect:
// 100-continue on a connection that has idled longer than the write
// timeout.
func TestHTTPExpectContinueAfterIdle(t *testing.T) {
	const writeTimeout = 200 * time.Millisecond
	a := startAgentWith(t, func(c *Config) { c.WriteTimeout = writeTimeout })
	body := getPubBody(t)
	c := a.dial(t)
	br := bufio.NewReader(c)
	fmt.Fprintf(c, "POST /tpm/getpub HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	if rsp, text := readResponse(t, c, br); rsp.StatusCode != http.StatusOK {
		t.Fatalf("first request: status %d (%s)", rsp.StatusCode, text)
	}

	time.Sleep(2 * writeTimeout)
	postExpectingContinue(t, c, br, body)
}

// postExpectingContinue sends the headers of a getpub with Expect:
// 100-continue, checks for 100 Continue, then sends body and checks for
// 200.
func postExpectingContinue(t *testing.T, c net.Conn, br *bufio.Reader, body string) {
	t.Helper()
	fmt.Fprintf(c, "POST /tpm/getpub HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n", len(body))
	c.SetReadDeadline(time.Now().Add(time.Minute))
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100 Continue") {
		t.Fatalf("first line %q, %v; want 100 Continue", line, err)
	}
	br.ReadString('\n')
	io.WriteString(c, body)
	if rsp, text := readResponse(t, c, br); rsp.StatusCode != http.StatusOK {
		t.Fatalf("after 100 Continue: status %d (%s)", rsp.StatusCode, text)
	}
}

func TestHTTPConnectMethod(t *testing.T) {
	a := startAgent(t)
	rsp, text, _ := exchangeRaw(t, a, "CONNECT host.example:443 HTTP/1.1\r\nHost: host.example:443\r\n\r\n")
	if rsp.StatusCode != http.StatusNotFound {
		t.Fatalf("CONNECT: status %d (%s); want 404", rsp.StatusCode, text)
	}
	checkOneLine(t, "CONNECT", string(text), `no operation at "host.example:443"`)
}

func TestHTTPSpaceBeforeHeaderColon(t *testing.T) {
	a := startAgent(t)
	body := getPubBody(t)
	request := fmt.Sprintf("POST /tpm/getpub HTTP/1.1\r\nHost: h\r\nContent-Length : %d\r\n\r\n%s", len(body), body)
	rsp, text, _ := exchangeRaw(t, a, request)
	if rsp.StatusCode != http.StatusBadRequest || !rsp.Close {
		t.Fatalf("Content-Length with a space before the colon: status %d (%s), close %v; want 400 and a close", rsp.StatusCode, text, rsp.Close)
	}
	checkOneLine(t, "space before the colon", string(text), `the header name "Content-Length " has white space before its colon`)
}

func TestHTTPEmptyLinesBeforeRequest(t *testing.T) {
	a := startAgent(t)
	body := getPubBody(t)
	request := fmt.Sprintf("\r\n\nPOST /tpm/getpub HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	if rsp, text, _ := exchangeRaw(t, a, request); rsp.StatusCode != http.StatusOK {
		t.Errorf("two empty lines before the request: status %d (%s); want 200", rsp.StatusCode, text)
	}
	many := strings.Repeat("\r\n", maxEmptyLines+1) + "POST /tpm/getpub HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"
	if rsp, text, _ := exchangeRaw(t, a, many); rsp.StatusCode != http.StatusBadRequest {
		t.Errorf("%d empty lines before the request: status %d (%s); want 400", maxEmptyLines+1, rsp.StatusCode, text)
	}
}
