package main

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vcomlink/vcomlink/internal/load"
)

// useTestBinaryForTrivial makes bench --trivial start the test binary as
// vcomlink, as startServe does.
func useTestBinaryForTrivial(t *testing.T) {
	t.Helper()
	saved := trivialCommand
	trivialCommand = func(args ...string) (*exec.Cmd, error) {
		cmd := exec.Command(os.Args[0], args...)
		cmd.Env = append(os.Environ(), "VCOMLINK_RUN_MAIN=1")
		return cmd, nil
	}
	t.Cleanup(func() { trivialCommand = saved })
}

// benchOutput is the part of bench --format json that the tests check.
type benchOutput struct {
	Results []struct {
		load.Result
		Rate  float64  `json:"calls_per_second"`
		VsRaw *float64 `json:"ratio_to_raw"`
	} `json:"results"`
	Split []splitRow `json:"split"`
}

func TestBenchEveryOperation(t *testing.T) {
	useTestBinaryForTrivial(t)
	p := startServe(t, "--tpm", "simulator", "--rate", "0", "--max-conns-per-peer", "0")

	// The trivial server's output goes to stderr from a goroutine of
	// os/exec while bench writes its progress lines, so stderr must take
	// concurrent writes.
	var stdout bytes.Buffer
	var stderr syncBuffer
	args := []string{"bench", "--connect", "unix://" + p.socket,
		"--op", "getpub,sign,readnv", "--op", "activatecredparams,activatecred,certifykey",
		"--concurrency", "1,4", "--duration", "300ms",
		"--raw", "simulator", "--trivial", "--format", "json"}
	if code := run(args, &stdout, &stderr); code != exitOK {
		t.Fatalf("bench exited with %d\n%s\nagent log:\n%s", code, &stderr, p.log)
	}
	for _, want := range []string{
		"measuring getpub on the agent with 1 guest for 300ms\n",
		"measuring certifykey on the trivial server with 4 guests for 300ms\n",
		"measuring sign on the raw TPM simulator for 150ms\n",
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("progress lines do not contain %q:\n%s", want, &stderr)
		}
	}
	var out benchOutput
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("bench output is not JSON: %v\n%s", err, &stdout)
	}

	// 6 raw results, then 6 operations at 2 concurrencies on the agent
	// and on the trivial server.
	if got, want := len(out.Results), 6+2*6*2; got != want {
		t.Fatalf("bench returned %d results, want %d\n%s", got, want, &stdout)
	}
	counts := make(map[load.Target]int)
	for _, r := range out.Results {
		name := string(r.Op) + " " + string(r.Target)
		counts[r.Target]++
		if r.Errors != 0 {
			t.Errorf("%s with %d guests: %d errors: %v", name, r.Guests, r.Errors, r.ErrorSamples)
		}
		if r.Calls < r.Guests {
			t.Errorf("%s with %d guests: %d calls, want at least one per guest", name, r.Guests, r.Calls)
		}
		if r.Rate <= 0 {
			t.Errorf("%s with %d guests: rate %f, want above 0", name, r.Guests, r.Rate)
		}
		l := r.Latency
		if l.P50 <= 0 || l.P50 > l.P99 || l.P99 > l.Max {
			t.Errorf("%s with %d guests: latency p50 %s, p99 %s, max %s are not in order", name, r.Guests, l.P50, l.P99, l.Max)
		}
		if r.Target == load.TargetAgent && r.VsRaw == nil {
			t.Errorf("%s with %d guests: no ratio to the raw rate", name, r.Guests)
		}
	}
	if counts[load.TargetRaw] != 6 || counts[load.TargetAgent] != 12 || counts[load.TargetTrivial] != 12 {
		t.Errorf("results by target: %v, want 6 raw, 12 agent, 12 trivial", counts)
	}
	if len(out.Split) != 12 {
		t.Errorf("bench split %d agent results into TPM, transport and own time, want 12", len(out.Split))
	}
}

func TestBenchTable(t *testing.T) {
	p := startServe(t, "--tpm", "simulator", "--rate", "0", "--max-conns-per-peer", "0")

	var stdout, stderr bytes.Buffer
	args := []string{"bench", "--connect", "unix://" + p.socket, "--op", "sign",
		"--concurrency", "2", "--duration", "200ms", "--client", "go"}
	if code := run(args, &stdout, &stderr); code != exitOK {
		t.Fatalf("bench exited with %d\n%s", code, &stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("bench printed %d lines, want a header and one row:\n%s", len(lines), &stdout)
	}
	for _, column := range []string{"calls/s", "p50 ms", "p99 ms", "max ms", "errors"} {
		if !strings.Contains(lines[0], column) {
			t.Errorf("header %q has no column %q", lines[0], column)
		}
	}
	fields := strings.Fields(lines[1])
	if len(fields) != 10 || fields[0] != "sign" || fields[1] != "agent" || fields[2] != "2" || fields[8] != "0" {
		t.Errorf("row %q: want sign, agent, 2 guests and 0 errors", lines[1])
	}
}

// TestBenchHelp checks that bench --help names each flag's value and
// gives each default once, as the help of the other commands does.
func TestBenchHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"bench", "--help"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("bench --help exited with %d\n%s", code, &stderr)
	}
	help := stdout.String()
	flat := strings.Join(strings.Fields(help), " ")

	for _, want := range []string{
		"--agent-pid ID\n", "--aik-handle HANDLE\n", "--ek-handle HANDLE\n", "--handle HANDLE\n",
		"--concurrency LIST\n", "--op LIST\n", "--duration DURATION\n", "--idle NUMBER\n",
		"--connect ADDRESS\n", "--format FORMAT\n", "--trivial\n",
	} {
		if !strings.Contains(help, "  "+want) {
			t.Errorf("help has no line %q", "  "+strings.TrimSpace(want))
		}
	}
	for _, generic := range []string{" int\n", " value\n", " string\n", " duration\n"} {
		if strings.Contains(help, generic) {
			t.Errorf("help names a value %q, the Go type in place of what the value is", strings.TrimSpace(generic))
		}
	}
	if strings.Contains(help, "(default:") {
		t.Errorf("help writes a default as \"(default: ...)\", not \"(default X)\":\n%s", help)
	}
	for _, line := range strings.Split(flat, "--") {
		if strings.Count(line, "(default ") > 1 {
			t.Errorf("flag --%s gives its default twice", line)
		}
	}
	for _, want := range []string{"(default 0x81000003)", "(default 1,8,64,256)", "(default 10s)", "Exit status: 0 every call succeeded; 1 ", "; 2 invalid command line"} {
		if !strings.Contains(flat, want) {
			t.Errorf("help does not mention %q", want)
		}
	}
}

// TestBenchDefaultLimitsKeepsResults runs bench against an agent with its
// default per-peer limits. The connection limit, 32 per peer, rejects the
// first request of the 33rd and later guests with 429 whatever the speed
// of the machine, so the step of 40 guests cannot start. bench must still
// print the 1-guest step, report the failure in one line with what to do,
// and exit with 1.
func TestBenchDefaultLimitsKeepsResults(t *testing.T) {
	p := startServe(t, "--tpm", "simulator")

	r := runCLI(t, nil, "bench", "--connect", "unix://"+p.socket, "--op", "getpub",
		"--concurrency", "1,40", "--duration", "300ms")
	if r.code != exitFailure {
		t.Errorf("exit status %d, want %d", r.code, exitFailure)
	}

	var rows []string
	for _, line := range strings.Split(strings.TrimSpace(string(r.stdout)), "\n") {
		if fields := strings.Fields(line); len(fields) == 10 && fields[0] == "getpub" {
			rows = append(rows, line)
		}
	}
	if len(rows) != 1 {
		t.Fatalf("bench printed %d result rows, want the 1-guest one:\n%s", len(rows), r.stdout)
	}
	if fields := strings.Fields(rows[0]); fields[1] != "agent" || fields[2] != "1" {
		t.Errorf("row %q: want getpub on the agent with 1 guest", rows[0])
	}

	var failures []string
	for _, line := range strings.Split(strings.TrimSpace(string(r.stderr)), "\n") {
		if !strings.HasPrefix(line, "measuring ") {
			failures = append(failures, line)
		}
	}
	if len(failures) != 1 {
		t.Fatalf("stderr has %d lines besides the progress lines, want 1:\n%s", len(failures), r.stderr)
	}
	failure := failures[0]
	for _, want := range []string{
		"vcomlink bench: getpub with 40 guests on the agent: ",
		" of 40 guests failed their first request: ",
		"agent returned 429 Too Many Requests",
		"run the agent with vcomlink serve --rate 0 --max-conns-per-peer 0",
	} {
		if !strings.Contains(failure, want) {
			t.Errorf("failure %q does not contain %q", failure, want)
		}
	}
	if n := strings.Count(failure, "--max-conns-per-peer 0"); n != 1 {
		t.Errorf("failure gives the advice %d times, want once: %q", n, failure)
	}
	if !strings.Contains(string(r.stderr), "measuring getpub on the agent with 1 guest for 300ms\n") {
		t.Errorf("progress lines do not name 1 guest in the singular:\n%s", r.stderr)
	}
}

// TestBenchFailedCallsExitStatus runs bench against an agent that lets a
// peer send 5 requests at once and 1 a second after that. Every guest
// starts, but calls in the 300 ms of the step get 429, so bench prints
// the full report and exits with 1.
func TestBenchFailedCallsExitStatus(t *testing.T) {
	p := startServe(t, "--tpm", "simulator", "--rate", "1", "--burst", "5")

	r := runCLI(t, nil, "bench", "--connect", "unix://"+p.socket, "--op", "getpub",
		"--concurrency", "1", "--duration", "300ms", "--format", "json")
	if r.code != exitFailure {
		t.Errorf("exit status %d, want %d\n%s", r.code, exitFailure, r.stderr)
	}

	var out struct {
		benchOutput
		Incomplete string `json:"incomplete"`
	}
	if err := json.Unmarshal(r.stdout, &out); err != nil {
		t.Fatalf("bench output is not JSON: %v\n%s", err, r.stdout)
	}
	if out.Incomplete != "" {
		t.Errorf("report says it is incomplete: %q", out.Incomplete)
	}
	if len(out.Results) != 1 {
		t.Fatalf("bench returned %d results, want 1\n%s", len(out.Results), r.stdout)
	}
	res := out.Results[0]
	if res.Errors == 0 {
		t.Errorf("0 errors, want the calls over the rate to fail")
	}
	if res.ErrorsByStatus[http.StatusTooManyRequests] != res.Errors {
		t.Errorf("errors by status %v, want all %d errors under 429", res.ErrorsByStatus, res.Errors)
	}
	// calls counts the successful calls, as calls_per_second does.
	if want := res.Rate * res.Elapsed.Seconds(); math.Abs(float64(res.Calls)-want) > 0.01 {
		t.Errorf("calls %d, but calls_per_second × elapsed is %.2f", res.Calls, want)
	}

	for _, want := range []string{
		"vcomlink bench: " + strconv.Itoa(res.Errors) + " calls failed, in 1 of 1 measurements",
		"run the agent with vcomlink serve --rate 0 --max-conns-per-peer 0",
	} {
		if !strings.Contains(string(r.stderr), want) {
			t.Errorf("stderr does not contain %q:\n%s", want, r.stderr)
		}
	}
}

// TestBenchSplitNote checks the note under the table that divides the time
// per agent call: a negative rest is explained as the error of separate
// measurements, and kept as measured.
func TestBenchSplitNote(t *testing.T) {
	// Calls in one second: 100 µs a call on the raw TPM and 50 µs on the
	// trivial server.
	results := func(agentCalls int) []load.Result {
		return []load.Result{
			{Op: load.GetPub, Target: load.TargetRaw, Guests: 1, Calls: 10000, Elapsed: time.Second},
			{Op: load.GetPub, Target: load.TargetAgent, Guests: 1, Calls: agentCalls, Elapsed: time.Second},
			{Op: load.GetPub, Target: load.TargetTrivial, Guests: 1, Calls: 20000, Elapsed: time.Second},
		}
	}
	for _, tc := range []struct {
		name       string
		agentCalls int
		own        string // in µs
		explained  bool
	}{
		{"positive rest", 5000, "50", false}, // 200 µs a call
		{"negative rest", 8000, "-25", true}, // 125 µs a call
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			report := &benchReport{Duration: time.Second, Results: results(tc.agentCalls)}
			if err := report.write(&out, "table"); err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			last := strings.Fields(lines[len(lines)-1])
			if got := last[len(last)-1]; got != tc.own {
				t.Errorf("own time %s µs, want %s", got, tc.own)
			}
			explained := strings.Contains(out.String(), "A negative rest means that these errors are larger")
			if explained != tc.explained {
				t.Errorf("note explains a negative rest: %t, want %t\n%s", explained, tc.explained, &out)
			}
		})
	}
}

func TestBenchIdleConnections(t *testing.T) {
	p := startServe(t, "--tpm", "simulator", "--rate", "0", "--max-conns-per-peer", "0")

	var stdout, stderr bytes.Buffer
	args := []string{"bench", "--connect", "unix://" + p.socket, "--idle", "50", "--settle", "10ms", "--format", "json"}
	if code := run(args, &stdout, &stderr); code != exitOK {
		t.Fatalf("bench exited with %d\n%s", code, &stderr)
	}
	var r idleReport
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("bench output is not JSON: %v\n%s", err, &stdout)
	}
	if r.AgentPID != p.cmd.Process.Pid {
		t.Errorf("bench read the memory of process %d, want the agent's %d", r.AgentPID, p.cmd.Process.Pid)
	}
	if r.Connections != 50 {
		t.Errorf("bench opened %d connections, want 50", r.Connections)
	}
	if r.Before <= 0 || r.After <= 0 {
		t.Errorf("resident memory before %d and after %d bytes, want both above 0", r.Before, r.After)
	}
}

func TestBenchUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no agent", []string{"bench"}, "missing --connect"},
		{"unknown op", []string{"bench", "--connect", "unix:///tmp/x.sock", "--op", "quote"}, `unknown operation "quote"`},
		{"zero guests", []string{"bench", "--connect", "unix:///tmp/x.sock", "--concurrency", "1,0"}, "not a positive number"},
		{"bad format", []string{"bench", "--connect", "unix:///tmp/x.sock", "--format", "xml"}, "invalid --format"},
		{"bad client", []string{"bench", "--connect", "unix:///tmp/x.sock", "--client", "curl"}, "invalid --client"},
		{"bad raw", []string{"bench", "--connect", "unix:///tmp/x.sock", "--raw", "tpm0"}, "invalid --raw"},
		{"bad handle", []string{"bench", "--connect", "unix:///tmp/x.sock", "--handle", "sign=key"}, "sign=key"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if code := run(test.args, io.Discard, &stderr); code != exitUsage {
				t.Errorf("exit code %d, want %d", code, exitUsage)
			}
			if !strings.Contains(stderr.String(), test.want) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), test.want)
			}
		})
	}
}

// TestBenchRawTimeoutGoverns holds a --raw socket that accepts the
// connection and never responds, as a swtpm that an agent holds does.
// bench must wait for the whole --raw-timeout, beyond the agent's own
// limit for opening a TPM socket.
func TestBenchRawTimeoutGoverns(t *testing.T) {
	path := filepath.Join(shortTempDir(t), "tpm.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := l.Accept(); err == nil {
			accepted <- c
		}
	}()

	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"bench", "--connect", "unix:///nonexistent/v.sock", "--raw", "unix://" + path, "--raw-timeout", "1m"}, io.Discard, &stderr)
	}()

	// The agent's backend gives up on a TPM socket after 5 seconds.
	const beyondBackendLimit = 6 * time.Second
	select {
	case code := <-done:
		t.Fatalf("bench exited with %d before --raw-timeout 1m: %s", code, stderr.String())
	case <-time.After(beyondBackendLimit):
	}

	// Closing the connection ends TPM2_Startup at once.
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(time.Second):
		t.Fatal("bench did not connect to the --raw socket")
	}
	if code := <-done; code != exitFailure {
		t.Errorf("exit status %d; want %d", code, exitFailure)
	}
	if !strings.Contains(stderr.String(), "TPM2_Startup on "+path) {
		t.Errorf("error %q does not name the failed TPM2_Startup", stderr.String())
	}
}

// TestBenchRawSocketQueueFull fills the queue of pending connections of a
// --raw socket, as other processes do while swtpm serves an agent. The
// error must say that the queue is full, not ask whether swtpm runs.
func TestBenchRawSocketQueueFull(t *testing.T) {
	path := filepath.Join(shortTempDir(t), "tpm.sock")
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	// With a backlog of 0, one pending connection fills the queue.
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	pending, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer pending.Close()

	var stderr bytes.Buffer
	code := run([]string{"bench", "--connect", "unix:///nonexistent/v.sock", "--raw", "unix://" + path}, io.Discard, &stderr)
	if code != exitFailure {
		t.Errorf("exit status %d; want %d", code, exitFailure)
	}
	if !strings.Contains(stderr.String(), "queue of pending connections is full") {
		t.Errorf("error %q does not say that the queue is full", stderr.String())
	}
	if strings.Contains(stderr.String(), "is swtpm running") {
		t.Errorf("error %q asks whether swtpm runs", stderr.String())
	}
}

// TestBenchRawSocketMissing checks the hint for a --raw socket that does
// not exist.
func TestBenchRawSocketMissing(t *testing.T) {
	path := filepath.Join(shortTempDir(t), "none.sock")
	var stderr bytes.Buffer
	code := run([]string{"bench", "--connect", "unix:///nonexistent/v.sock", "--raw", "unix://" + path}, io.Discard, &stderr)
	if code != exitFailure {
		t.Errorf("exit status %d; want %d", code, exitFailure)
	}
	if want := "is swtpm running with --server type=unixio,path=" + path + "?"; !strings.Contains(stderr.String(), want) {
		t.Errorf("error %q does not contain %q", stderr.String(), want)
	}
}
