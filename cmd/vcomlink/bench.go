package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
	"google.golang.org/protobuf/proto"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/client"
	"github.com/vcomlink/vcomlink/internal/load"
	"github.com/vcomlink/vcomlink/tpm/backend"
)

// maxSignDataSize is the maximum --data-size. A sign request spends at most
// 10 bytes on its index and the data's tag and length, so 16 bytes of the
// body limit are kept for them.
const maxSignDataSize = vcom.MaxBodySize - 16

// benchFlags are the settings of vcomlink bench.
type benchFlags struct {
	connect      string
	ops          opList
	concurrency  intList
	duration     time.Duration
	handles      opHandles
	dataSize     int
	callTimeout  time.Duration
	client       string
	raw          string
	rawTimeout   time.Duration
	ek           handleFlag
	aik          handleFlag
	trivial      bool
	format       string
	idle         int
	agentPID     int
	settle       time.Duration
	serveTrivial string
}

const benchAbout = `Runs concurrent guests against an agent and prints, per operation and number
of guests, the successful calls, the calls per second, the 50th and 99th
percentile and maximum latency, and the failed calls. With --raw it first
measures the same TPM commands sent straight to a TPM on one connection;
with --trivial it also measures a trivial HTTP server. Run the agent with
vcomlink serve --rate 0 --max-conns-per-peer 0, or its per-peer limits
reject the load with 429.

When a measurement cannot start, as when the agent rejects a guest's first
request, bench prints the results measured until then and stops.`

// benchExitStatuses ends the help of vcomlink bench.
const benchExitStatuses = `Exit status: 0 every call succeeded; 1 a call failed, or a measurement could
not start or finish (the results measured until then are printed, and the
reason goes to standard error); 2 invalid command line.`

func newBenchCLI() (*cli, *benchFlags) {
	f := &benchFlags{
		ops:         opList{values: []load.Op{load.GetPub}},
		concurrency: intList{values: []int{1, 8, 64, 256}},
		handles:     opHandles{},
		ek:          handleFlag(vcom.HandleEK),
		aik:         handleFlag(vcom.HandleAIK),
	}
	c := newCLI("bench", "", 0, benchAbout, benchExitStatuses)
	fs := c.fs
	fs.StringVar(&f.connect, "connect", "", "`ADDRESS` of the agent to measure, required: unix:///PATH, tcp://127.0.0.1:PORT or vsock://CID:PORT")
	fs.Var(&f.ops, "op", "operations to measure, as a comma-separated `LIST` or repeated: getpub, sign, readnv, activatecredparams, activatecred, certifykey")
	fs.Var(&f.concurrency, "concurrency", "numbers of concurrent guests to measure, each at least 1, as a comma-separated `LIST`; each guest is a client with its own keep-alive connection")
	fs.DurationVar(&f.duration, "duration", 10*time.Second, "how long to measure each operation at each concurrency, and each operation on the raw TPM (half before the agent, half after), as a `DURATION` above 0, such as 10s")
	fs.Var(f.handles, "handle", "`HANDLE` for every operation, or OP=HANDLE for one operation; repeat for several. Without it readnv reads the EK certificate 0x01c00002, certifykey certifies the ECDH key 0x81000005, and the other operations use the AIK 0x81000003")
	fs.IntVar(&f.dataSize, "data-size", 32, fmt.Sprintf("size of the data that sign sends, in `BYTES`, from 0 to %d", maxSignDataSize))
	fs.DurationVar(&f.callTimeout, "call-timeout", client.DefaultTimeout, "longest time one call may take before it counts as failed, as a `DURATION` above 0")
	fs.StringVar(&f.client, "client", string(load.WireClient), "`CLIENT` of each guest: wire or go. wire sends prepared HTTP/1.1 requests and checks the status and that the body decodes; go is the Go client package, which also parses every TPM structure and costs more CPU in the guest")
	fs.StringVar(&f.raw, "raw", "", "`TPM` to measure directly first, as a --tpm value of serve (a device path, unix:///PATH or simulator), so that each agent figure is also a ratio of the raw rate; it must be a TPM that no agent holds; off when empty")
	fs.DurationVar(&f.rawTimeout, "raw-timeout", 10*time.Second, "longest wait for a --raw TPM socket to accept the connection and respond to its first command, or for a --raw device to open, as a `DURATION` above 0")
	fs.Var(&f.ek, "ek-handle", "persistent `HANDLE` of the endorsement key that the raw activatecred sequence uses")
	fs.Var(&f.aik, "aik-handle", "persistent `HANDLE` of the attestation key that the raw certifykey sequence signs with")
	fs.BoolVar(&f.trivial, "trivial", false, "also measure the transport floor: a trivial HTTP server on the same kind of socket that returns the agent's responses without any work, started by bench as a child process")
	fs.StringVar(&f.format, "format", "table", "output `FORMAT`: table or json")
	fs.IntVar(&f.idle, "idle", 0, "instead of a load, open this `NUMBER` of idle keep-alive guest connections and report the agent's added resident memory; 0 for a load")
	fs.IntVar(&f.agentPID, "agent-pid", 0, "process `ID` of the agent whose memory --idle reads; 0 for the process behind the --connect Unix socket")
	fs.DurationVar(&f.settle, "settle", 2*time.Second, "with --idle, how long to wait after the connections are open before the memory is read, as a `DURATION`; 0 reads it at once")
	fs.StringVar(&f.serveTrivial, "serve-trivial", "", "run the trivial server of --trivial on this `ADDRESS`, unix:///PATH or tcp://127.0.0.1:PORT, instead of measuring; it reads its responses as JSON from standard input and stops when standard input ends. bench --trivial starts it itself; off when empty")
	return c, f
}

func runBench(args []string, stdout, stderr io.Writer) int {
	c, f := newBenchCLI()
	if _, status, ok := c.start(args, stdout, stderr); !ok {
		return status
	}
	if err := f.check(); err != nil {
		fmt.Fprintf(stderr, "vcomlink bench: %v\n", err)
		return exitUsage
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	var err error
	switch {
	case f.serveTrivial != "":
		err = serveTrivial(ctx, f.serveTrivial, os.Stdin, stdout)
	case f.idle > 0:
		err = explainRateLimit(benchIdle(ctx, f, stdout))
	default:
		err = benchLoad(ctx, f, stdout, stderr)
	}
	if err != nil {
		message := strings.ReplaceAll(err.Error(), "\n", " ")
		fmt.Fprintf(stderr, "vcomlink bench: %s\n", message)
		return exitFailure
	}
	return exitOK
}

func (f *benchFlags) check() error {
	if f.format != "table" && f.format != "json" {
		return fmt.Errorf("invalid --format %q: use table or json", f.format)
	}
	if f.serveTrivial != "" {
		return nil
	}

	if f.connect == "" {
		return errors.New("missing --connect: name the agent, such as unix:///run/vcomlink.sock")
	}
	if _, err := client.ParseAddress(f.connect); err != nil {
		return fmt.Errorf("invalid --connect: %w", err)
	}

	for _, d := range []struct {
		name  string
		value time.Duration
	}{{"--duration", f.duration}, {"--call-timeout", f.callTimeout}, {"--raw-timeout", f.rawTimeout}} {
		if err := checkPositive(d.name, d.value); err != nil {
			return err
		}
	}
	for _, n := range f.concurrency.values {
		if n < 1 {
			return fmt.Errorf("invalid --concurrency %d: each number of guests must be at least 1", n)
		}
	}
	if f.dataSize < 0 || f.dataSize > maxSignDataSize {
		return fmt.Errorf("invalid --data-size %d: use 0 to %d bytes", f.dataSize, maxSignDataSize)
	}
	if _, err := load.ParseClientKind(f.client); err != nil {
		return fmt.Errorf("invalid --client: %w", err)
	}

	if f.idle < 0 {
		return fmt.Errorf("invalid --idle %d: it must not be negative", f.idle)
	}
	if f.agentPID < 0 {
		return fmt.Errorf("invalid --agent-pid %d: it must be a process ID, or 0 for the process behind the --connect Unix socket", f.agentPID)
	}
	if f.settle < 0 {
		return fmt.Errorf("invalid --settle %s: it must be 0 (read the memory at once) or more", f.settle)
	}
	if f.raw != "" {
		if _, err := backend.ParseSpec(f.raw); err != nil {
			return fmt.Errorf("invalid --raw: %w", err)
		}
	}
	return nil
}

// handle returns the handle that op uses.
func (f *benchFlags) handle(op load.Op) uint32 {
	if h, ok := f.handles[op]; ok {
		return h
	}
	if h, ok := f.handles[""]; ok {
		return h
	}
	return load.DefaultHandle(op)
}

// benchLoad measures the agent and the transport floor, with the raw TPM
// for half of --duration before them and half after, and prints the
// report. When a measurement cannot start or is interrupted, it prints
// what was measured until then and returns the reason. Otherwise it
// returns an error if any call failed.
func benchLoad(ctx context.Context, f *benchFlags, stdout, stderr io.Writer) error {
	var raw *rawTPM
	if f.raw != "" {
		var err error
		if raw, err = openRawRuns(f); err != nil {
			return err
		}
		defer raw.tpm.Close()
		raw.measure(ctx, f, stderr)
	}

	report := &benchReport{Duration: f.duration}
	err := measureServers(ctx, f, report, stderr)
	if raw != nil {
		// After a failure the raw rate is that of the first half alone.
		if err == nil {
			raw.measure(ctx, f, stderr)
		}
		report.Results = append(raw.results(), report.Results...)
	}
	if err == nil && ctx.Err() != nil {
		err = errInterrupted
	}
	err = explainRateLimit(err)
	report.Incomplete = err

	if len(report.Results) > 0 {
		if werr := report.write(stdout, f.format); werr != nil {
			return werr
		}
	}
	if err != nil {
		return err
	}
	return report.failedCalls()
}

// measureServers measures the agent and, with --trivial, the trivial
// server, and adds their results to report.
func measureServers(ctx context.Context, f *benchFlags, report *benchReport, stderr io.Writer) error {
	requests, bodies, err := prepareRequests(ctx, f)
	if err != nil {
		if ctx.Err() != nil {
			return errInterrupted
		}
		return err
	}
	agent, err := measureTarget(ctx, f, load.TargetAgent, f.connect, requests, stderr)
	report.Results = append(report.Results, agent...)
	if err != nil || !f.trivial {
		return err
	}
	trivial, err := measureTrivial(ctx, f, requests, bodies, stderr)
	report.Results = append(report.Results, trivial...)
	return err
}

// rawTPM is the --raw TPM and a run of each operation's raw sequence. The
// rate of a TPM drifts over minutes on a shared machine, so each run gets
// half of --duration before the agent is measured and half after.
type rawTPM struct {
	tpm  transport.TPMCloser
	runs []*load.RawRun
}

func openRawRuns(f *benchFlags) (*rawTPM, error) {
	t, err := openRaw(f)
	if err != nil {
		return nil, err
	}
	raw := &rawTPM{tpm: t}
	for _, op := range f.ops.values {
		seq, err := load.PrepareRaw(t, op, f.handle(op), uint32(f.ek), uint32(f.aik), f.dataSize)
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("raw TPM %s: %w", f.raw, err)
		}
		raw.runs = append(raw.runs, &load.RawRun{Seq: seq})
	}
	return raw, nil
}

func (r *rawTPM) measure(ctx context.Context, f *benchFlags, stderr io.Writer) {
	for _, run := range r.runs {
		fmt.Fprintf(stderr, "measuring %s on the raw TPM %s for %s\n", run.Seq.Op, f.raw, f.duration/2)
		run.Run(ctx, r.tpm, f.duration/2)
	}
}

func (r *rawTPM) results() []load.Result {
	results := make([]load.Result, len(r.runs))
	for i, run := range r.runs {
		results[i] = run.Result()
	}
	return results
}

// openRaw opens the --raw TPM. A swtpm that another process holds accepts
// the connection but sends no response, so the first command to a socket,
// and opening a device, have the time limit --raw-timeout. The simulator
// has none: it runs in this process, and provisioning it can take longer
// than the limit on a busy machine, while a simulator left provisioning
// would block the next one.
func openRaw(f *benchFlags) (transport.TPMCloser, error) {
	spec, err := backend.ParseSpec(f.raw)
	if err != nil {
		return nil, err
	}
	switch spec.Kind {
	case backend.Simulator:
		b, err := backend.Open(spec)
		if err != nil {
			return nil, fmt.Errorf("open the raw TPM: %w", err)
		}
		return b.Open()
	case backend.Socket:
		t, err := backend.OpenSocket(spec.Path, f.rawTimeout)
		if err != nil {
			return nil, fmt.Errorf("open the raw TPM %s: %w%s", spec, err, rawSocketHint(err, spec.Path))
		}
		return t, nil
	}

	type opened struct {
		t   transport.TPMCloser
		err error
	}
	done := make(chan opened, 1)
	go func() {
		b, err := backend.Open(spec)
		if err != nil {
			done <- opened{nil, err}
			return
		}
		t, err := b.Open()
		done <- opened{t, err}
	}()
	select {
	case o := <-done:
		if o.err != nil {
			return nil, fmt.Errorf("open the raw TPM: %w", o.err)
		}
		return o.t, nil
	case <-time.After(f.rawTimeout):
		// NOTE: the goroutine stays blocked on the TPM until bench exits.
		return nil, fmt.Errorf("the raw TPM %s did not open within %s", spec, f.rawTimeout)
	}
}

// rawSocketHint returns what to check after a failure to connect to a TPM
// socket, or "". A Unix socket rejects a connection with EAGAIN when its
// queue of pending connections is full, as swtpm's fills while it serves
// another process.
func rawSocketHint(err error, path string) string {
	switch {
	case errors.Is(err, syscall.EAGAIN):
		return "; swtpm's queue of pending connections is full, because it serves one connection at a time and another process, such as an agent, holds it. --raw needs a TPM that no agent holds, such as a second swtpm on a copy of the state"
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Sprintf("; is swtpm running with --server type=unixio,path=%s?", path)
	}
	return ""
}

// prepareRequests prepares each operation's request with one client, and
// keeps the agent's response body to each for the trivial server.
func prepareRequests(ctx context.Context, f *benchFlags) ([]*load.Request, map[string][]byte, error) {
	c, err := client.New(f.connect, client.WithTimeout(f.callTimeout))
	if err != nil {
		return nil, nil, err
	}
	defer c.Close()

	var requests []*load.Request
	bodies := make(map[string][]byte)
	for _, op := range f.ops.values {
		r, err := load.Prepare(ctx, c, op, f.handle(op), f.dataSize)
		if err != nil {
			return nil, nil, err
		}
		rsp, err := r.Do(ctx, c)
		if err != nil {
			return nil, nil, fmt.Errorf("first request to the agent: %w", err)
		}
		body, err := proto.Marshal(rsp)
		if err != nil {
			return nil, nil, fmt.Errorf("encode the agent's %s response: %w", op, err)
		}
		requests = append(requests, r)
		bodies[op.Path()] = body
	}
	return requests, bodies, nil
}

// measureTarget runs every request at every concurrency against address.
// It stops at the first measurement that cannot start, or when ctx ends,
// and returns the results of the measurements that finished before.
func measureTarget(ctx context.Context, f *benchFlags, target load.Target, address string, requests []*load.Request, stderr io.Writer) ([]load.Result, error) {
	var results []load.Result
	for _, r := range requests {
		for _, guests := range f.concurrency.values {
			if ctx.Err() != nil {
				return results, errInterrupted
			}
			fmt.Fprintf(stderr, "measuring %s on %s with %s for %s\n", r.Op, targetName(target), guestCount(guests), f.duration)
			res, err := load.Run(ctx, load.Config{
				Address:     address,
				Target:      target,
				Request:     r,
				Guests:      guests,
				Client:      load.ClientKind(f.client),
				Duration:    f.duration,
				CallTimeout: f.callTimeout,
			})
			// A measurement that a signal cut short is dropped: it ran for
			// less than --duration, and with --client go its calls in
			// flight fail with the canceled context.
			if ctx.Err() != nil {
				return results, errInterrupted
			}
			if err != nil {
				return results, fmt.Errorf("%s with %s on %s: %w", r.Op, guestCount(guests), targetName(target), err)
			}
			results = append(results, res)
		}
	}
	return results, nil
}

// targetName returns the name of a target for a sentence, as "the trivial
// server".
func targetName(t load.Target) string {
	switch t {
	case load.TargetRaw:
		return "the raw TPM"
	case load.TargetTrivial:
		return "the trivial server"
	}
	return "the " + string(t)
}

// guestCount formats a number of guests, as "1 guest" or "8 guests".
func guestCount(n int) string {
	return countOf(n, "guest", "guests")
}

// opList is a flag of operations, as a comma-separated list or repeated.
type opList struct {
	values []load.Op
	set    bool // false while values holds the default
}

func (l *opList) String() string {
	names := make([]string, len(l.values))
	for i, op := range l.values {
		names[i] = string(op)
	}
	return strings.Join(names, ",")
}

func (l *opList) Set(v string) error {
	if !l.set {
		l.values = nil
		l.set = true
	}
	for name := range strings.SplitSeq(v, ",") {
		op, err := load.ParseOp(strings.TrimSpace(name))
		if err != nil {
			return err
		}
		l.values = append(l.values, op)
	}
	return nil
}

// intList is a flag of positive numbers, as a comma-separated list or
// repeated.
type intList struct {
	values []int
	set    bool // false while values holds the default
}

func (l *intList) String() string {
	parts := make([]string, len(l.values))
	for i, n := range l.values {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, ",")
}

func (l *intList) Set(v string) error {
	if !l.set {
		l.values = nil
		l.set = true
	}
	for part := range strings.SplitSeq(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || n < 1 {
			return fmt.Errorf("%q is not a positive number", part)
		}
		l.values = append(l.values, n)
	}
	return nil
}

// opHandles is the --handle flag: a handle by operation, where the empty
// operation applies to every operation.
type opHandles map[load.Op]uint32

func (h opHandles) String() string { return "" }

func (h opHandles) Set(v string) error {
	name, value, perOp := strings.Cut(v, "=")
	var op load.Op
	if perOp {
		var err error
		if op, err = load.ParseOp(name); err != nil {
			return err
		}
	} else {
		value = name
	}
	handle, err := vcom.ParseHandle(value)
	if err != nil {
		return err
	}
	h[op] = handle
	return nil
}
