package server

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/internal/swtpmtest"
	"github.com/vcomlink/vcomlink/metrics"
)

func TestMetricsCountRequests(t *testing.T) {
	m := metrics.New()
	a := startAgentWith(t, func(c *Config) {
		c.Metrics = m
		c.RequestRate = 0.01
		c.RequestBurst = 8
	})
	// A connection pauses after a 429, so each request gets its own.
	a.client.Transport.(*http.Transport).DisableKeepAlives = true

	a.mustServe(t, "first getpub")
	a.post(t, vcom.PathReadNV, &vcom.TpmRequestReadNv{Index: vcom.HandleDiskKey1})
	a.do(t, http.MethodPost, vcom.PathGetPub, []byte{0xff})
	a.do(t, http.MethodPost, "/tpm/quote", nil)
	a.do(t, http.MethodGet, vcom.PathSign, nil)
	for range 8 {
		a.postNoFatal(vcom.PathGetPub, &vcom.TpmRequestGetPub{Index: vcom.HandleAIK})
	}

	cases := []struct {
		metric string
		labels string
		want   float64
	}{
		{"vcomlink_requests_total", `op="readnv",status="403"`, 1},
		{"vcomlink_requests_total", `op="getpub",status="400"`, 1},
		{"vcomlink_requests_total", `op="unknown",status="404"`, 1},
		{"vcomlink_requests_total", `op="sign",status="405"`, 1},
		{"vcomlink_refusals_total", `reason="policy"`, 1},
		{"vcomlink_refusals_total", `reason="invalid"`, 1},
		{"vcomlink_refusals_total", `reason="unknown_path"`, 1},
		{"vcomlink_refusals_total", `reason="method"`, 1},
		{"vcomlink_refusals_total", `reason="rate"`, 5},
	}
	for _, c := range cases {
		if got := metricValue(t, m, c.metric, c.labels); got != c.want {
			t.Errorf("%s{%s} = %g; want %g", c.metric, c.labels, got, c.want)
		}
	}
	if got := metricValue(t, m, "vcomlink_requests_total", `op="getpub",status="200"`); got < 1 {
		t.Errorf("no successful getpub counted")
	}
	a.dial(t)
	waitFor(t, "vcomlink_open_connections counts an open connection", func() bool {
		return metricValue(t, m, "vcomlink_open_connections", "") >= 1
	})
}

// metricValue returns the value of the series of name with exactly the
// labels given, in the text format's order, or -1 if there is none.
func metricValue(t *testing.T, m *metrics.Metrics, name, labels string) float64 {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, metric := range f.GetMetric() {
			var parts []string
			for _, l := range metric.GetLabel() {
				parts = append(parts, l.GetName()+`="`+l.GetValue()+`"`)
			}
			if strings.Join(parts, ",") != labels {
				continue
			}
			switch {
			case metric.Counter != nil:
				return metric.Counter.GetValue()
			case metric.Gauge != nil:
				return metric.Gauge.GetValue()
			}
		}
	}
	return -1
}

func TestRefusalSeriesExistAtStart(t *testing.T) {
	m := metrics.New()
	for _, reason := range metrics.RefusalReasons {
		if got := metricValue(t, m, "vcomlink_refusals_total", `reason="`+reason+`"`); got != 0 {
			t.Errorf("vcomlink_refusals_total{reason=%q} = %g at start; want 0", reason, got)
		}
	}
}

func TestMetricsLint(t *testing.T) {
	problems, err := testutil.GatherAndLint(metrics.New().Registry)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric %s: %s", p.Metric, p.Text)
	}
}

// TestShutdownDrains holds a request in the TPM (a paused swtpm) while the
// server shuts down, and checks that the request in flight completes, that
// a request on a connection that was already open gets 503, and that new
// connections are refused.
func TestShutdownDrains(t *testing.T) {
	sw := swtpmtest.Start(t)
	logs := &logBuffer{}
	a := newLoggedAgent(t, startSocketService(t, sw.SocketPath, logs, 30*time.Second), logs, nil)

	// A keep-alive connection that carried a request and is idle.
	open := a.dial(t)
	reader := bufio.NewReader(open)
	body := mustMarshal(t, &vcom.TpmRequestGetPub{Index: vcom.HandleAIK})
	open.Write(rawRequest(vcom.PathGetPub, body))
	if rsp, msg := readResponse(t, open, reader); rsp.StatusCode != http.StatusOK {
		t.Fatalf("getpub before the shutdown: status %d (%s)", rsp.StatusCode, msg)
	}

	if err := sw.Pause(); err != nil {
		t.Fatal(err)
	}
	inFlight := make(chan response, 1)
	go func() {
		inFlight <- a.postNoFatal(vcom.PathGetPub, &vcom.TpmRequestGetPub{Index: vcom.HandleAIK})
	}()
	for a.srv.inFlight.Load() == 0 {
		time.Sleep(time.Millisecond)
	}

	shutdown := make(chan error, 1)
	go func() { shutdown <- a.srv.Shutdown(context.Background()) }()
	for !a.srv.draining.Load() {
		time.Sleep(time.Millisecond)
	}

	open.Write(rawRequest(vcom.PathGetPub, body))
	rsp, msg := readResponse(t, open, reader)
	if rsp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("request on an open connection during the shutdown: status %d (%s); want 503", rsp.StatusCode, msg)
	}
	if !strings.Contains(string(msg), "shutting down") {
		t.Errorf("request during the shutdown: message %q does not say the agent is shutting down", msg)
	}
	if rsp.Header.Get("Retry-After") == "" {
		t.Errorf("request during the shutdown: no Retry-After")
	}
	if !rsp.Close {
		t.Errorf("request during the shutdown: the response keeps the connection open")
	}
	if c, err := net.Dial("unix", a.socket); err == nil {
		c.Close()
		t.Errorf("a new connection during the shutdown was accepted")
	}

	if err := sw.Resume(); err != nil {
		t.Fatal(err)
	}
	r := <-inFlight
	if r.status != http.StatusOK {
		t.Errorf("request in flight at the shutdown: status %d (%s); want 200", r.status, r.body)
	}
	if !r.close {
		t.Errorf("request in flight at the shutdown: the response keeps the connection open; want Connection: close")
	}
	if err := <-shutdown; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}
