package load

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2/transport"
	"google.golang.org/protobuf/proto"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/client"
)

func TestPercentileNearestRank(t *testing.T) {
	samples := make([]time.Duration, 100)
	for i := range samples {
		samples[i] = time.Duration(100-i) * time.Millisecond
	}
	l := summarise(samples)
	if l.P50 != 50*time.Millisecond {
		t.Errorf("p50 = %s, want 50ms", l.P50)
	}
	if l.P99 != 99*time.Millisecond {
		t.Errorf("p99 = %s, want 99ms", l.P99)
	}
	if l.Max != 100*time.Millisecond {
		t.Errorf("max = %s, want 100ms", l.Max)
	}
	if l.Mean != 50500*time.Microsecond {
		t.Errorf("mean = %s, want 50.5ms", l.Mean)
	}
}

func TestPercentileOneSample(t *testing.T) {
	l := summarise([]time.Duration{time.Second})
	if l.P50 != time.Second || l.P99 != time.Second || l.Max != time.Second {
		t.Errorf("latency of one sample = %+v, want 1s everywhere", l)
	}
	if got := summarise(nil); got != (Latency{}) {
		t.Errorf("latency of no samples = %+v, want zero", got)
	}
}

func TestErrorLogKeepsDistinctSamples(t *testing.T) {
	var log errorLog
	for i := range 20 {
		log.add(errors.New(strings.Repeat("x", i%7+1)))
	}
	if log.count != 20 {
		t.Errorf("count = %d, want 20", log.count)
	}
	if len(log.samples) != maxErrorSamples {
		t.Errorf("kept %d samples, want %d", len(log.samples), maxErrorSamples)
	}
}

func TestParseOp(t *testing.T) {
	for _, op := range Ops {
		got, err := ParseOp(string(op))
		if err != nil || got != op {
			t.Errorf("ParseOp(%q) = %q, %v", op, got, err)
		}
	}
	if _, err := ParseOp("quote"); err == nil {
		t.Error("ParseOp(quote) succeeded, want an error")
	}
}

// serveTrivial serves TrivialHandler with bodies on a Unix socket and
// returns its address.
func serveTrivial(t *testing.T, bodies map[string][]byte) string {
	t.Helper()
	return serveHandler(t, TrivialHandler(bodies))
}

// serveHandler serves h on a Unix socket and returns its address.
func serveHandler(t *testing.T, h http.Handler) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "load")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "s.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return "unix://" + path
}

func TestRunAgainstTrivialServer(t *testing.T) {
	body, err := proto.Marshal(&vcom.TpmResponseGetPub{Public: []byte{1, 2, 3}, Algorithm: 1})
	if err != nil {
		t.Fatal(err)
	}
	address := serveTrivial(t, map[string][]byte{vcom.PathGetPub: body})

	r := &Request{Op: GetPub, Handle: vcom.HandleAIK}
	res, err := Run(context.Background(), Config{
		Address:  address,
		Target:   TargetTrivial,
		Request:  r,
		Guests:   3,
		Duration: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 0 {
		t.Errorf("%d errors: %v", res.Errors, res.ErrorSamples)
	}
	if res.Calls < 3 {
		t.Errorf("%d calls, want at least one per guest", res.Calls)
	}
	if res.Rate() <= 0 {
		t.Errorf("rate %f, want above 0", res.Rate())
	}
	if res.Op != GetPub || res.Target != TargetTrivial || res.Guests != 3 {
		t.Errorf("result names %s on %s with %d guests, want getpub on trivial with 3", res.Op, res.Target, res.Guests)
	}
}

func TestWireGuestReportsStatus(t *testing.T) {
	address := serveTrivial(t, map[string][]byte{})
	g, err := newWireGuest(address, &Request{Op: Sign, Handle: vcom.HandleAIK, Data: []byte("data")}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer g.close()

	err = g.do(context.Background())
	if err == nil {
		t.Fatal("a 404 response succeeded, want an error")
	}
	var status *client.StatusError
	if !errors.As(err, &status) {
		t.Fatalf("error %q is not a *client.StatusError", err)
	}
	if status.StatusCode != http.StatusNotFound {
		t.Errorf("status %d, want 404", status.StatusCode)
	}
	if status.Op != "sign" || status.Handle != vcom.HandleAIK {
		t.Errorf("error names %s on 0x%08x, want sign on 0x%08x", status.Op, status.Handle, vcom.HandleAIK)
	}
}

func TestWireGuestReportsTransportError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "none.sock")
	g, err := newWireGuest("unix://"+path, &Request{Op: GetPub, Handle: vcom.HandleAIK}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	err = g.do(context.Background())
	var transport *client.TransportError
	if !errors.As(err, &transport) {
		t.Fatalf("do without a server = %v, want a *client.TransportError", err)
	}
}

// TestRunCountsOnlySuccessfulCalls runs one guest against a server that
// returns 429 to every second request, so that Calls, Errors and Rate can
// be checked against each other.
func TestRunCountsOnlySuccessfulCalls(t *testing.T) {
	body, err := proto.Marshal(&vcom.TpmResponseGetPub{Public: []byte{1, 2, 3}, Algorithm: 1})
	if err != nil {
		t.Fatal(err)
	}
	trivial := TrivialHandler(map[string][]byte{vcom.PathGetPub: body})
	var requests atomic.Int64
	address := serveHandler(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The first request, which Run sends before the measurement,
		// succeeds.
		if requests.Add(1)%2 == 0 {
			http.Error(w, "getpub: over the rate", http.StatusTooManyRequests)
			return
		}
		trivial.ServeHTTP(w, r)
	}))

	res, err := Run(context.Background(), Config{
		Address:  address,
		Target:   TargetTrivial,
		Request:  &Request{Op: GetPub, Handle: vcom.HandleAIK},
		Guests:   1,
		Duration: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Requests 2, 4, 6 and so on failed, and the rest after the first
	// succeeded.
	all := int(requests.Load())
	failed := all / 2
	if res.Errors != failed {
		t.Errorf("%d errors, want %d of the %d requests", res.Errors, failed, all)
	}
	if succeeded := all - 1 - failed; res.Calls != succeeded {
		t.Errorf("%d calls, want the %d that succeeded", res.Calls, succeeded)
	}
	if res.ErrorsByStatus[http.StatusTooManyRequests] != res.Errors {
		t.Errorf("errors by status %v, want all %d under 429", res.ErrorsByStatus, res.Errors)
	}
	if want := float64(res.Calls) / res.Elapsed.Seconds(); res.Rate() != want {
		t.Errorf("rate %f, want calls / elapsed = %f", res.Rate(), want)
	}
}

func TestRunFirstRequestFailuresInOneLine(t *testing.T) {
	address := serveTrivial(t, map[string][]byte{})
	_, err := Run(context.Background(), Config{
		Address:  address,
		Request:  &Request{Op: GetPub, Handle: vcom.HandleAIK},
		Guests:   3,
		Duration: time.Millisecond,
	})
	if err == nil {
		t.Fatal("Run against a server that returns 404 succeeded, want an error")
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") {
		t.Errorf("error has several lines: %q", msg)
	}
	if want := "3 of 3 guests failed their first request: getpub 0x81000003: agent returned 404 Not Found"; !strings.HasPrefix(msg, want) {
		t.Errorf("error %q does not begin with %q", msg, want)
	}
	if n := strings.Count(msg, "agent returned"); n != 1 {
		t.Errorf("error names the response %d times, want once for the 3 guests: %q", n, msg)
	}
	var status *client.StatusError
	if !errors.As(err, &status) || status.StatusCode != http.StatusNotFound {
		t.Errorf("errors.As finds no 404 *client.StatusError in %q", msg)
	}
}

func TestFirstRequestErrorCountsEachMessage(t *testing.T) {
	dialErr := errors.New("connection refused")
	limited := errors.New("status 429")
	err := firstRequestsFailed("guest", []error{nil, limited, dialErr, limited, nil})
	want := "3 of 5 guests failed their first request: 2 guests: status 429; 1 guest: connection refused"
	if err == nil || err.Error() != want {
		t.Errorf("error = %v, want %q", err, want)
	}
	if !errors.Is(err, dialErr) {
		t.Errorf("errors.Is does not find a guest's cause in %v", err)
	}

	single := firstRequestsFailed("idle guest", []error{dialErr, nil})
	if want := "1 of 2 idle guests failed its first request: connection refused"; single == nil || single.Error() != want {
		t.Errorf("error = %v, want %q", single, want)
	}
	if err := firstRequestsFailed("guest", []error{nil, nil}); err != nil {
		t.Errorf("error = %v with no failure, want nil", err)
	}
}

// TestRawRunCountsOnlySuccessfulCalls reads a handle that the simulator
// does not have, so that every call of the raw sequence fails.
func TestRawRunCountsOnlySuccessfulCalls(t *testing.T) {
	sim, err := simulator.Get()
	if err != nil {
		t.Fatalf("start the simulator: %v", err)
	}
	tpm := transport.FromReadWriteCloser(sim)
	defer tpm.Close()

	seq, err := PrepareRaw(tpm, GetPub, 0x81000099, vcom.HandleEK, vcom.HandleAIK, 0)
	if err != nil {
		t.Fatal(err)
	}
	run := &RawRun{Seq: seq}
	run.Run(context.Background(), tpm, 20*time.Millisecond)
	res := run.Result()
	if res.Errors == 0 {
		t.Fatal("0 errors, want every ReadPublic of a missing handle to fail")
	}
	if res.Calls != 0 {
		t.Errorf("%d calls, want 0: no call succeeded", res.Calls)
	}
	if res.Rate() != 0 {
		t.Errorf("rate %f, want 0", res.Rate())
	}
}

func TestWireGuestRejectsBadBody(t *testing.T) {
	address := serveTrivial(t, map[string][]byte{vcom.PathReadNV: {0xff, 0xff}})
	g, err := newWireGuest(address, &Request{Op: ReadNV, Handle: vcom.HandleEKCert}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer g.close()

	err = g.do(context.Background())
	if err == nil || !strings.Contains(err.Error(), "does not decode") {
		t.Errorf("do = %v, want an error saying the body does not decode", err)
	}
}

func TestRunFailsWithoutServer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "none.sock")
	_, err := Run(context.Background(), Config{
		Address:  "unix://" + path,
		Request:  &Request{Op: GetPub, Handle: vcom.HandleAIK},
		Guests:   2,
		Duration: time.Millisecond,
	})
	if err == nil {
		t.Fatal("Run without a server succeeded, want an error")
	}
}

func TestResidentMemoryOfSelf(t *testing.T) {
	rss, err := ResidentMemory(os.Getpid())
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	if rss <= 0 {
		t.Errorf("resident memory %d bytes, want above 0", rss)
	}
}

func TestPeerPIDOfOwnListener(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()

	pid, err := PeerPID(path)
	if err != nil {
		t.Skipf("SO_PEERCRED is not available: %v", err)
	}
	if pid != os.Getpid() {
		t.Errorf("PeerPID = %d, want this process, %d", pid, os.Getpid())
	}
}
