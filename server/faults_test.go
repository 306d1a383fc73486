package server

import (
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/internal/simtest"
	"github.com/vcomlink/vcomlink/tpm"
)

// socketTPM serves the simulator as a raw TPM command socket, as swtpm
// does, and can stop responding: while frozen it reads commands and holds
// them until thawed.
type socketTPM struct {
	path string
	sim  *simtest.TPM

	simMu   sync.Mutex // one command at a time at the simulator
	gateMu  sync.Mutex
	gate    chan struct{} // closed while the TPM responds
	waiting atomic.Int32  // commands that wait for the gate
}

func startSocketTPM(t *testing.T, sim *simtest.TPM, dir string) *socketTPM {
	t.Helper()
	p := &socketTPM{path: filepath.Join(dir, "tpm.sock"), sim: sim, gate: make(chan struct{})}
	close(p.gate)
	l, err := net.Listen("unix", p.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		l.Close()
		p.thaw()
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *socketTPM) serve(c net.Conn) {
	defer c.Close()
	for {
		header := make([]byte, 10)
		if _, err := io.ReadFull(c, header); err != nil {
			return
		}
		size := binary.BigEndian.Uint32(header[2:6])
		if size < 10 || size > 64<<10 {
			return
		}
		cmd := make([]byte, size)
		copy(cmd, header)
		if _, err := io.ReadFull(c, cmd[10:]); err != nil {
			return
		}

		p.gateMu.Lock()
		gate := p.gate
		p.gateMu.Unlock()
		p.waiting.Add(1)
		<-gate
		p.waiting.Add(-1)

		p.simMu.Lock()
		rsp, err := p.sim.Send(cmd)
		p.simMu.Unlock()
		if err != nil {
			return
		}
		if _, err := c.Write(rsp); err != nil {
			return
		}
	}
}

// freeze makes the TPM stop responding.
func (p *socketTPM) freeze() {
	p.gateMu.Lock()
	defer p.gateMu.Unlock()
	select {
	case <-p.gate:
		p.gate = make(chan struct{})
	default:
	}
}

// thaw makes the TPM respond to the commands it holds and the ones after.
func (p *socketTPM) thaw() {
	p.gateMu.Lock()
	defer p.gateMu.Unlock()
	select {
	case <-p.gate:
	default:
		close(p.gate)
	}
}

// Log messages of the TPM service about an outage.
const (
	outageStarted = "lost the connection to the TPM"
	outageEnded   = "reconnected to the TPM"
)

// checkOutage checks the response to a request while the TPM is out: 503
// with Retry-After, or 504, with a one-line message.
func checkOutage(t *testing.T, when string, r response) {
	t.Helper()
	switch r.status {
	case http.StatusServiceUnavailable:
		if ra := r.header.Get("Retry-After"); ra != "1" {
			t.Errorf("%s: 503 with Retry-After %q; want 1", when, ra)
		}
	case http.StatusGatewayTimeout:
	default:
		t.Errorf("%s: status %d (%s); want 503 or 504", when, r.status, r.body)
		return
	}
	text := strings.TrimSuffix(string(r.body), "\n")
	if text == "" || strings.Contains(text, "\n") {
		t.Errorf("%s: body %q is not one line", when, r.body)
	}
}

// waitServed sends getpub requests until one gets 200, checking that every
// other response is that of an outage, and fails after a minute.
func waitServed(t *testing.T, a *agent, when string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		r := a.postNoFatal(vcom.PathGetPub, &vcom.TpmRequestGetPub{Index: vcom.HandleAIK})
		if r.status == http.StatusOK {
			return
		}
		checkOutage(t, when, r)
		if time.Now().After(deadline) {
			t.Fatalf("%s: no 200 within a minute; last status %d (%s)", when, r.status, r.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkOneEpisode checks that the log records the outage and the recovery
// once each.
func checkOneEpisode(t *testing.T, logs *logBuffer) {
	t.Helper()
	if lines := logs.lines(outageStarted); len(lines) != 1 {
		t.Errorf("log has %d lines about the lost connection; want 1:\n%s", len(lines), logs)
	}
	if lines := logs.lines(outageEnded); len(lines) != 1 {
		t.Errorf("log has %d lines about the reconnection; want 1:\n%s", len(lines), logs)
	}
	if lines := logs.lines("level=ERROR"); len(lines) != 1 {
		t.Errorf("log has %d error lines for one outage; want 1:\n%s", len(lines), logs)
	}
}

func TestTPMStopsAnswering(t *testing.T) {
	sim := simtest.Start(t)
	logs := &logBuffer{}
	dir := shortTempDir(t)
	socket := startSocketTPM(t, sim, dir)

	a := newLoggedAgent(t, startSocketService(t, socket.path, logs, 500*time.Millisecond), logs, nil)
	other := a.as(t, "other")
	a.mustServe(t, "before the TPM stops answering")

	socket.freeze()
	r := a.post(t, vcom.PathGetPub, &vcom.TpmRequestGetPub{Index: vcom.HandleAIK})
	checkError(t, "first request to a TPM that does not answer", r, http.StatusGatewayTimeout, "ReadPublic did not complete in time")
	for range 2 {
		checkOutage(t, "while the TPM does not answer", a.postNoFatal(vcom.PathGetPub, &vcom.TpmRequestGetPub{Index: vcom.HandleEK}))
		checkOutage(t, "another peer while the TPM does not answer", other.postNoFatal(vcom.PathReadNV, &vcom.TpmRequestReadNv{Index: vcom.HandleEKCert}))
	}

	socket.thaw()
	waitServed(t, a, "after the TPM answers again")
	other.mustServe(t, "after the TPM answers again")
	checkOneEpisode(t, logs)
}

func TestGoneGuestLeavesQueue(t *testing.T) {
	sim := simtest.Start(t)
	logs := &logBuffer{}
	socket := startSocketTPM(t, sim, shortTempDir(t))
	svc := startSocketService(t, socket.path, logs, tpm.DefaultConfig().CommandTimeout)
	a := newLoggedAgent(t, svc, logs, nil)
	b := a.as(t, "b")

	// vm:guest's readnv holds the frozen TPM.
	socket.freeze()
	first := make(chan response, 1)
	go func() { first <- a.postNoFatal(vcom.PathReadNV, &vcom.TpmRequestReadNv{Index: vcom.HandleEKCert}) }()
	waitFor(t, "a command waits at the TPM", func() bool { return socket.waiting.Load() == 1 })

	// vm:b's request queues behind it, and vm:b hangs up.
	c, err := net.Dial("unix", b.socket)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := proto.Marshal(&vcom.TpmRequestReadNv{Index: vcom.HandleEKCert})
	if _, err := c.Write(rawRequest(vcom.PathReadNV, body)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "vm:b's request queues", func() bool { return svc.QueueDepth()["vm:b"] == 1 })
	c.Close()

	// The queue empties while the TPM is still frozen.
	waitFor(t, "vm:b's request leaves the queue", func() bool { return svc.QueueDepth()["vm:b"] == 0 })
	socket.thaw()
	if r := <-first; r.status != http.StatusOK {
		t.Errorf("the request that held the TPM got %d (%s); want 200", r.status, r.body)
	}
	b.mustServe(t, "after vm:b hung up while queued")
	if lines := logs.lines("level=ERROR"); len(lines) != 0 {
		t.Errorf("a guest that hung up caused error lines:\n%s", logs)
	}
}

// waitFor polls cond until it holds, and fails after ten seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "vct")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
