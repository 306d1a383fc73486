package admin

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/internal/simtest"
	"github.com/vcomlink/vcomlink/metrics"
	"github.com/vcomlink/vcomlink/tpm"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(body)
}

func TestHealthAndReadiness(t *testing.T) {
	sim := simtest.Start(t)
	svc, err := tpm.New(sim.Opener(t), tpm.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	h := Handler(metrics.New(), svc.Ping)

	if code, body := get(t, h, "/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q; want 200 ok", code, body)
	}
	if code, body := get(t, h, "/readyz"); code != 200 {
		t.Errorf("/readyz = %d %q; want 200", code, body)
	}

	// A TPM in failure mode answers every command with TPM_RC_FAILURE.
	sim.Fail(tpm2.TPMCCGetCapability, tpm2.TPMRCFailure)
	code, body := get(t, h, "/readyz")
	if code != http.StatusServiceUnavailable {
		t.Errorf("/readyz with a failing TPM = %d %q; want 503", code, body)
	}
	if !strings.Contains(body, "TPM_RC_FAILURE") {
		t.Errorf("/readyz body %q does not name the TPM's response code", body)
	}
	if strings.Contains(body, "retry") || strings.Contains(body, "0x00000000") {
		t.Errorf("/readyz body %q carries a guest's advice or a handle", body)
	}
	sim.Fail(tpm2.TPMCCGetCapability, 0)
	if code, _ := get(t, h, "/readyz"); code != 200 {
		t.Errorf("/readyz after the TPM recovered = %d; want 200", code)
	}

	svc.Close()
	if code, body := get(t, h, "/readyz"); code != http.StatusServiceUnavailable || strings.Contains(body, "retry") {
		t.Errorf("/readyz after the service closed = %d %q; want 503 without advice to retry", code, body)
	}
	if code, _ := get(t, h, "/healthz"); code != 200 {
		t.Errorf("/healthz after the service closed = %d; want 200 while the process runs", code)
	}
}

func TestMetricsExposition(t *testing.T) {
	sim := simtest.Start(t)
	m := metrics.New()
	svc, err := tpm.New(sim.Opener(t), tpm.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	m.WatchQueue(svc.QueueDepth)
	m.WatchTPM(svc.Healthy)
	if _, err := svc.GetPub(context.Background(), "vm:a", vcom.HandleAIK); err != nil {
		t.Fatal(err)
	}
	m.ObserveRequest("getpub", 200, 1000)
	m.ObserveTPMCommand(uint32(tpm2.TPMCCReadPublic), 0, 1000)
	m.Refused("policy")
	m.ConnectionOpened()

	code, body := get(t, Handler(m, svc.Ping), "/metrics")
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		`vcomlink_requests_total{op="getpub",status="200"} 1`,
		`vcomlink_request_duration_seconds_bucket{op="getpub",le="0.0001"} 1`,
		`vcomlink_tpm_command_duration_seconds_count{command="ReadPublic"} 1`,
		`vcomlink_tpm_responses_total{command="ReadPublic",rc="0x000"} 1`,
		`vcomlink_refusals_total{reason="policy"} 1`,
		`vcomlink_open_connections 1`,
		`vcomlink_tpm_up 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestListenRejectsGuestReachableAddresses(t *testing.T) {
	for _, spec := range []string{
		"vsock://:2001",
		"tcp://0.0.0.0:9000",
		"tcp://192.0.2.1:9000",
		"unix://relative",
		"http://127.0.0.1:9000",
	} {
		if l, err := Listen(spec); err == nil {
			l.Close()
			t.Errorf("Listen(%q) succeeded; want an error", spec)
		}
	}
}

func TestListenUnixAndLoopback(t *testing.T) {
	dir, err := os.MkdirTemp("", "vca")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	for _, spec := range []string{"unix://" + filepath.Join(dir, "admin.sock"), "tcp://127.0.0.1:0"} {
		l, err := Listen(spec)
		if err != nil {
			t.Errorf("Listen(%q): %v", spec, err)
			continue
		}
		l.Close()
	}
}

func TestListenErrorNamesTheAdminListener(t *testing.T) {
	dir, err := os.MkdirTemp("", "vca")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	spec := "unix://" + filepath.Join(dir, "admin.sock")
	l, err := Listen(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = Listen(spec)
	if err == nil || !strings.HasPrefix(err.Error(), "admin listener "+spec+": ") {
		t.Errorf("second Listen(%q) = %v; want an error that names the admin listener", spec, err)
	}
}
