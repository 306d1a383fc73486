package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vcomlink/vcomlink/admin"
	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/metrics"
	"github.com/vcomlink/vcomlink/policy"
	"github.com/vcomlink/vcomlink/server"
	"github.com/vcomlink/vcomlink/tpm"
	"github.com/vcomlink/vcomlink/tpm/backend"
	"github.com/vcomlink/vcomlink/transport"
)

const defaultListen = "vsock://:2000"

const serveAbout = `Serves the host's TPM to guests: six operations over HTTP/1.1 with protobuf
bodies, on vsock port 2000 by default. Runs until SIGTERM or SIGINT, then
lets requests in flight finish within --shutdown-grace and exits with status
0. SIGHUP reloads the --policy file.

With --check, validates the command line, the --config file and the
--policy file as a start would, prints one line that sums them up and exits,
without opening the TPM or any socket.

Every flag but --config and --check can also be set in a --config file: a
YAML mapping from the flag's name, without the dashes, to its value, or to a
list of values for --listen and --auth. A flag on the command line takes
precedence over the file.`

const serveDetails = `Exit status: 0 stopped by SIGTERM or SIGINT, or --check found no mistake; 1
failed to start or to serve (the reason is in the log); 2 invalid command
line, --config or --policy file.`

// serveFlags are the settings of vcomlink serve.
type serveFlags struct {
	config         string
	listen         stringList
	tpm            string
	ek             handleFlag
	aik            handleFlag
	auth           authFlag
	admin          string
	commandTimeout time.Duration
	shutdownGrace  time.Duration
	logLevel       *choiceFlag
	logFormat      *choiceFlag
	policyFile     string
	socketGroup    string
	check          bool
	limits         limitFlags
}

func newServeCLI() (*cli, *serveFlags) {
	c := newCLI("serve", "", 0, serveAbout, serveDetails)
	f := &serveFlags{
		listen:    stringList{values: []string{defaultListen}},
		ek:        handleFlag(vcom.HandleEK),
		aik:       handleFlag(vcom.HandleAIK),
		auth:      authFlag{},
		logLevel:  newChoiceFlag("info", "debug", "warn", "error"),
		logFormat: newChoiceFlag("text", "json"),
	}
	fs := c.fs
	fs.StringVar(&f.config, "config", "", "YAML `FILE` that sets flags of this command, such as /etc/vcomlink/config.yaml")
	fs.Var(&f.listen, "listen", "`ADDRESS` to serve guests on; repeat for several: vsock://:PORT (any CID), unix:///PATH?vm=NAME (NAME identifies the peer in the access policy and the logs), or tcp://127.0.0.1:PORT")
	fs.StringVar(&f.tpm, "tpm", backend.DefaultDevice, "`TPM` to serve: a TPM character device, unix:///PATH for a raw TPM command socket such as swtpm's, or simulator for the embedded simulator")
	fs.Var(&f.ek, "ek-handle", "persistent `HANDLE` of the endorsement key, in hex (0x81000001) or decimal")
	fs.Var(&f.aik, "aik-handle", "persistent `HANDLE` of the attestation key, the restricted signing key that signs certifications")
	fs.Var(f.auth, "auth", "auth value of a handle, as `HANDLE=FILE`: the file holds the value, with one trailing newline dropped; HANDLE may also be owner or endorsement; repeat for several")
	fs.StringVar(&f.admin, "admin", "", "`ADDRESS` of the admin endpoints /metrics, /healthz and /readyz: unix:///PATH or tcp://127.0.0.1:PORT, never vsock; off when empty")
	fs.DurationVar(&f.commandTimeout, "command-timeout", 30*time.Second, "longest wait for one TPM command, as a `DURATION` above 0, such as 30s; a request whose command takes longer fails with 504, and the agent reconnects to the TPM. There is no value for no limit, because the agent would then wait for a hung TPM forever")
	fs.DurationVar(&f.shutdownGrace, "shutdown-grace", 10*time.Second, "on SIGTERM or SIGINT, how long requests in flight may take to finish, as a `DURATION`; 0 cuts them off at once")
	fs.Var(f.logLevel, "log-level", "least severe `LEVEL` to log: debug, info, warn or error")
	fs.Var(f.logFormat, "log-format", "log `FORMAT`: text or json (one JSON object a line, durations as strings such as \"1.5ms\")")
	fs.StringVar(&f.policyFile, "policy", "", "access policy `FILE` (YAML, see docs/policy.md) that grants each peer operations on handles; without it the built-in policy applies")
	fs.StringVar(&f.socketGroup, "socket-group", "", "`GROUP`, by name or numeric ID, that owns the socket files of the unix:// listeners (not --admin's), so that a hypervisor running in that group may connect; the files keep mode 0660; needs CAP_CHOWN unless the agent is in the group")
	fs.BoolVar(&f.check, "check", false, "validate the command line, the --config and --policy files, the addresses, the auth files and --socket-group, print a summary and exit, without opening the TPM or binding a socket; only on the command line")
	f.limits.register(fs)
	return c, f
}

func runServe(args []string, stdout, stderr io.Writer) int {
	// SIGHUP ends a process that does not catch it, so it is caught before
	// anything else: a reload sent while the agent starts waits for the
	// policy to be in force.
	hangups := make(chan os.Signal, 1)
	signal.Notify(hangups, syscall.SIGHUP)
	defer signal.Stop(hangups)

	c, f := newServeCLI()
	settings, err := parseServe(c, f, args)
	if errors.Is(err, flag.ErrHelp) {
		c.printHelp(stdout)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "vcomlink serve: %s\n", oneLine(err.Error()))
		return exitUsage
	}

	log, err := newLogger(stderr, f.logLevel.value, f.logFormat.value)
	if err != nil {
		fmt.Fprintf(stderr, "vcomlink serve: %v\n", err)
		return exitUsage
	}
	if f.check {
		fmt.Fprintln(stdout, checkSummary(f, settings))
		return exitOK
	}
	if err := serve(f, settings, log, hangups); err != nil {
		log.Error("vcomlink failed", "err", err)
		return exitFailure
	}
	return exitOK
}

// serveSettings holds the values that parseServe checked and derived from
// the flags.
type serveSettings struct {
	spec        backend.Spec
	access      policy.Checker
	socketGroup int // the group ID of --socket-group, or -1 without it
}

// parseServe parses the command line and the --config file, and checks
// every value that can be checked before the TPM is opened. A mistake in a
// value that the --config file set names the file and line.
func parseServe(c *cli, f *serveFlags, args []string) (*serveSettings, error) {
	if _, err := c.parse(args); err != nil {
		return nil, err
	}
	var config *configLines
	if f.config != "" {
		set := make(map[string]bool)
		c.fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
		var err error
		if config, err = applyConfigFile(c.fs, f.config, set); err != nil {
			return nil, err
		}
	}

	spec, err := backend.ParseSpec(f.tpm)
	if err != nil {
		return nil, config.locate("tpm", 0, err)
	}
	if err := checkListeners(f.listen.values, config); err != nil {
		return nil, err
	}
	socketGroup := -1
	if f.socketGroup != "" {
		socketGroup, err = transport.LookupGroup(f.socketGroup)
		if err != nil {
			return nil, config.locate("socket-group", 0, fmt.Errorf("invalid --socket-group: %w", err))
		}
	}
	for _, h := range []struct {
		flag string
		h    handleFlag
	}{{"--ek-handle", f.ek}, {"--aik-handle", f.aik}} {
		if err := tpm.CheckPersistent("serve", h.flag, uint32(h.h)); err != nil {
			err = fmt.Errorf("invalid %s %s: it is %s, not a persistent key handle; write hex handles with 0x, as 0x81000003", h.flag, tpm.FormatHandle(uint32(h.h)), tpm.HandleType(uint32(h.h)))
			return nil, config.locate(h.flag, 0, err)
		}
	}
	if f.admin != "" {
		network, address, err := admin.ParseAddress(f.admin)
		if err != nil {
			return nil, config.locate("admin", 0, err)
		}
		if l := listenerOn(f.listen.values, network, address); l != "" {
			return nil, config.locate("admin", 0, fmt.Errorf("--admin %q and --listen %q name the same socket; give the admin endpoints a socket of their own", f.admin, l))
		}
	}
	if err := checkPositive("--command-timeout", f.commandTimeout); err != nil {
		return nil, config.locate("command-timeout", 0, err)
	}
	if f.shutdownGrace < 0 {
		err := fmt.Errorf("invalid --shutdown-grace %s: it must be 0 (cut off requests in flight at once) or more", f.shutdownGrace)
		return nil, config.locate("shutdown-grace", 0, err)
	}
	if err := f.limits.check(config); err != nil {
		return nil, err
	}
	access, err := loadPolicy(f.policyFile)
	if err != nil {
		return nil, explainPolicyError(err, config)
	}
	return &serveSettings{spec: spec, access: access, socketGroup: socketGroup}, nil
}

// checkSummary describes for --check, in one line, what parseServe
// validated, and what it left out.
func checkSummary(f *serveFlags, settings *serveSettings) string {
	var b strings.Builder
	fmt.Fprintf(&b, "configuration and policy are valid: %s (%s)", countOf(len(f.listen.values), "listener", "listeners"), strings.Join(f.listen.values, ", "))
	if settings.socketGroup >= 0 {
		fmt.Fprintf(&b, ", socket group %s", f.socketGroup)
		if gid := strconv.Itoa(settings.socketGroup); gid != f.socketGroup {
			fmt.Fprintf(&b, " (ID %s)", gid)
		}
	}
	if f.admin != "" {
		fmt.Fprintf(&b, ", admin %s", f.admin)
	}
	fmt.Fprintf(&b, ", %s", countOf(len(f.auth), "auth value", "auth values"))
	if file, ok := settings.access.(*policy.File); ok {
		fmt.Fprintf(&b, ", policy %s (%s)", f.policyFile, file.Summary())
	} else {
		b.WriteString(", built-in policy")
	}
	if lifted := liftedHandles(settings.access); lifted != "" {
		fmt.Fprintf(&b, "; the policy leaves out built-in protected handles %s", lifted)
	}
	b.WriteString(missingDirectoriesNote(f))
	fmt.Fprintf(&b, "; the TPM %s was not opened and no socket was bound", settings.spec)
	return b.String()
}

// checkListeners parses every --listen value and rejects two listeners on
// one address, or two Unix listeners with one VM name, which would make two
// VMs one peer for the access policy and the limits. A mistake in a value
// of the --config file names its line.
func checkListeners(values []string, config *configLines) error {
	addresses := make(map[string]string)
	vms := make(map[string]string)
	for i, l := range values {
		a, err := transport.ParseAddress(l)
		if err != nil {
			return config.locate("listen", i, err)
		}
		key := a.Network + " " + a.Path + a.HostPort + fmt.Sprintf(" %d:%d", a.CID, a.Port)
		if first, dup := addresses[key]; dup {
			return config.locate("listen", i, fmt.Errorf("--listen %q and %q name the same address; give each listener once", first, l))
		}
		addresses[key] = l
		if a.VM != "" {
			if first, dup := vms[a.VM]; dup {
				return config.locate("listen", i, fmt.Errorf("--listen %q and %q both name VM %q; each VM needs a name of its own, so that the access policy and the limits tell them apart", first, l, a.VM))
			}
			vms[a.VM] = l
		}
	}
	return nil
}

// listenerOn returns the --listen value that listens on network and
// address, or "" if none does.
func listenerOn(values []string, network, address string) string {
	for _, l := range values {
		a, err := transport.ParseAddress(l)
		if err != nil || a.Network != network {
			continue
		}
		if a.Path == address || a.HostPort == address {
			return l
		}
	}
	return ""
}

// serve runs the agent until SIGTERM or SIGINT. A signal during start-up
// stops it before it serves.
func serve(f *serveFlags, settings *serveSettings, log *slog.Logger, hangups <-chan os.Signal) error {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(signals)

	log.Info("vcomlink starting", "version", versionString(), "tpm", settings.spec.String(), "pid", os.Getpid())
	a, err := startAgent(f, settings, log)
	if a != nil {
		defer a.close()
	}
	if err != nil {
		return err
	}
	select {
	case sig := <-signals:
		log.Info("stopping during start-up", "signal", sig.String())
		return nil
	default:
	}

	errs := make(chan error, len(a.listeners)+1)
	for _, l := range a.listeners {
		go func() { errs <- a.srv.Serve(l) }()
	}
	if a.admin != nil {
		go func() { errs <- a.admin.serve() }()
	}
	log.Info("vcomlink serving", "listen", f.listen.values, "socket_group", f.socketGroup, "admin", f.admin, "policy", policyName(f.policyFile))
	warnLifted(log, settings.access, f.policyFile)
	warnVMMismatches(log, settings.access, f.listen.values)

	reloader := &policyReloader{path: f.policyFile, listens: f.listen.values, store: a.store, svc: a.svc, log: log}
	for {
		select {
		case <-hangups:
			reloader.reload()
		case sig := <-signals:
			log.Info("shutting down", "signal", sig.String(), "grace", f.shutdownGrace)
			a.shutdown(f.shutdownGrace)
			a.close()
			log.Info("vcomlink stopped")
			return nil
		case err := <-errs:
			if errors.Is(err, http.ErrServerClosed) {
				continue
			}
			return fmt.Errorf("serving failed: %w", err)
		}
	}
}

// agent holds the parts that serve starts: the TPM service, the guest
// server and its listeners, the metrics and the admin endpoints.
type agent struct {
	log       *slog.Logger
	svc       *tpm.Service
	store     *policy.Store
	srv       *server.Server
	listeners []*transport.Listener
	admin     *adminServer
	cleanups  []func()
	closeOnce sync.Once
}

// startAgent opens the TPM, checks the host's keys, and opens every
// listener. On failure it returns what it started, for the caller to
// close.
func startAgent(f *serveFlags, settings *serveSettings, log *slog.Logger) (*agent, error) {
	a := &agent{log: log}
	m := metrics.New()

	log.Info("opening the TPM", "tpm", settings.spec.String())
	opened, err := backend.Open(settings.spec)
	if err != nil {
		return nil, err
	}
	cfg := tpm.DefaultConfig()
	cfg.EK = uint32(f.ek)
	cfg.AIK = uint32(f.aik)
	cfg.Auth = f.auth
	cfg.CommandTimeout = f.commandTimeout
	cfg.OwnerReadNV = ownerReadNV(settings.access)
	cfg.ObserveCommand = m.ObserveTPMCommand
	cfg.Logger = log
	svc, err := tpm.New(opened.Open, cfg)
	if err != nil {
		return nil, fmt.Errorf("start the TPM service on %s: %w", settings.spec, err)
	}
	a.svc = svc
	a.cleanups = append(a.cleanups, func() { svc.Close() })

	if opened.Provisioned != nil {
		remove, err := writeSimulatorCA(opened, log)
		if err != nil {
			return a, err
		}
		a.cleanups = append(a.cleanups, remove)
	}
	if err := checkHostKeys(svc, log); err != nil {
		return a, err
	}

	m.WatchQueue(svc.QueueDepth)
	m.WatchTPM(svc.Healthy)
	a.store = policy.NewStore(settings.access)
	srvCfg := server.Config{TPM: svc, Policy: a.store, Logger: log, Metrics: m}
	f.limits.apply(&srvCfg)
	a.srv = server.New(srvCfg)

	for _, addr := range f.listen.values {
		l, err := transport.Listen(addr)
		if err != nil {
			return a, err
		}
		a.listeners = append(a.listeners, l)
		if settings.socketGroup >= 0 {
			if err := l.SetSocketGroup(settings.socketGroup); err != nil {
				return a, fmt.Errorf("listen on %s: %w", addr, err)
			}
		}
	}
	if f.admin != "" {
		a.admin, err = startAdmin(f.admin, m, svc, log)
		if err != nil {
			return a, err
		}
	}
	return a, nil
}

// checkHostKeys refuses to start with an EK or attestation key of the wrong
// kind, and logs a warning for one that does not exist.
func checkHostKeys(svc *tpm.Service, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	warnings, err := svc.CheckHostKeys(ctx)
	for _, w := range warnings {
		log.Warn(w)
	}
	return err
}

// shutdown stops accepting, lets requests in flight finish within grace,
// cuts off those that do not, and closes the TPM.
func (a *agent) shutdown(grace time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := a.srv.Shutdown(ctx); err != nil {
		a.log.Warn("requests still in flight at the end of the grace period are cut off", "grace", grace, "err", err)
		if a.svc != nil {
			a.svc.Abort()
		}
		a.srv.Close()
	}
	if a.admin != nil {
		a.admin.close()
	}
}

// close releases what startAgent started, in reverse order, once.
func (a *agent) close() {
	a.closeOnce.Do(func() {
		for _, l := range a.listeners {
			l.Close()
		}
		for i := len(a.cleanups) - 1; i >= 0; i-- {
			a.cleanups[i]()
		}
	})
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("invalid --log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		opts.ReplaceAttr = durationsAsText
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("invalid --log-format %q: use text or json", format)
}

// durationsAsText writes a duration as Go writes it ("1.5ms"), not as the
// JSON handler's integer of nanoseconds, so that a reader of the log need
// not know the unit.
func durationsAsText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// policyName names the access policy in force for the start log line.
func policyName(path string) string {
	if path == "" {
		return "built-in"
	}
	return path
}

// oneLine keeps a message on one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
