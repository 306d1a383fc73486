package server

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/policy"
)

func TestRefusalLogNamesWhatItLeftOut(t *testing.T) {
	var out bytes.Buffer
	l := newRefusalLog(slog.New(slog.NewTextHandler(&out, nil)), time.Minute, "further refusals were not logged")

	// Thirty handles, each refused twice: the first ten get a line each.
	// The count line names the first eight handles left out, each refused
	// twice, and counts the other 34 refusals.
	for range 2 {
		for h := range 30 {
			label := fmt.Sprintf("403 readnv 0x%08x", 0x01000000+h)
			l.record("vm:probe", label, label)
		}
	}
	l.flush()

	want := `count=50 interval=1m0s omitted="403 readnv 0x0100000a: 2, 403 readnv 0x0100000b: 2, ` +
		`403 readnv 0x0100000c: 2, 403 readnv 0x0100000d: 2, 403 readnv 0x0100000e: 2, ` +
		`403 readnv 0x0100000f: 2, 403 readnv 0x01000010: 2, 403 readnv 0x01000011: 2, and 34 others"`
	if !strings.Contains(out.String(), want) {
		t.Errorf("count line is\n%s\nwant it to contain\n%s", out.String(), want)
	}
}

func TestDebugLogNamesHandles(t *testing.T) {
	debug := &logBuffer{}
	a := startAgentWith(t, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(debug, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	a.mustServe(t, "with debug logging")
	r := a.post(t, vcom.PathSign, &vcom.TpmRequestSign{Index: vcom.HandleECDHKey, Data: []byte("not a digest")})
	checkError(t, "digest of the wrong length", r, http.StatusBadRequest, "")
	r = a.post(t, vcom.PathActivateCredential, &vcom.TpmRequestGeneratedCred{AikIndex: vcom.HandleAIK})
	checkError(t, "empty credential", r, http.StatusBadRequest, "")

	for _, want := range [][]string{
		{"request served", "op=getpub", "handle=0x81000003", "status=200"},
		{"request failed", "op=sign", "handle=0x81000005", "status=400"},
		{"request failed", "op=activatecred", "handle=0x81000003", "status=400"},
	} {
		if lines := debug.lines(want...); len(lines) != 1 {
			t.Errorf("debug log has %d lines with %q; want 1:\n%s", len(lines), want, debug)
		}
	}
}

func TestTPMErrorsLoggedAfterRefusals(t *testing.T) {
	grants, err := policy.Parse([]byte("default:\n  - ops: [sign]\n    handles: [0x81000005]\n"))
	if err != nil {
		t.Fatal(err)
	}
	a := startAgentWith(t, func(c *Config) { c.Policy = grants })
	// Refusals on more handles than the log shows.
	for h := range uint32(2 * refusalLinesPerPeer) {
		r := a.post(t, vcom.PathReadNV, &vcom.TpmRequestReadNv{Index: vcom.HandleEKCert + h})
		checkError(t, "readnv refused", r, http.StatusForbidden, "grants no readnv")
	}
	a.sim.Fail(tpm2.TPMCCSign, tpm2.TPMRCFailure)
	r := a.post(t, vcom.PathSign, &vcom.TpmRequestSign{Index: vcom.HandleECDHKey, Data: make([]byte, 32)})
	checkError(t, "sign on a failing TPM", r, http.StatusInternalServerError, "TPM_RC_FAILURE")
	if lines := a.log.lines("level=ERROR", "request failed", "peer=vm:guest", "op=sign"); len(lines) != 1 {
		t.Errorf("log has %d lines about the TPM error after the peer's refusals; want 1:\n%s", len(lines), a.log)
	}
}

func TestRefusalLogTellsLimitsApart(t *testing.T) {
	a := startAgentWith(t, func(c *Config) {
		c.RequestRate = 0.01
		c.RequestBurst = 1
		c.MaxConnsPerPeer = 1
		c.RefusalLogInterval = time.Hour
	})
	a.mustServe(t, "within the burst")
	extra := a.dial(t)
	extra.Write(rawRequest(vcom.PathGetPub, mustMarshal(t, &vcom.TpmRequestGetPub{Index: vcom.HandleAIK})))
	waitFor(t, "the second connection's 429", func() bool {
		return len(a.log.lines("request refused", "status=429")) >= 1
	})
	r := a.post(t, vcom.PathGetPub, &vcom.TpmRequestGetPub{Index: vcom.HandleAIK})
	checkError(t, "over the rate", r, http.StatusTooManyRequests, "requests per second")

	if lines := a.log.lines("request refused", "peer=vm:guest", "status=429"); len(lines) != 2 {
		t.Errorf("log has %d lines for a connection-limit 429 and a rate 429; want one each:\n%s", len(lines), a.log)
	}
}
