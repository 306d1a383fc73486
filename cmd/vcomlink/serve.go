package main

import (
	"context"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/policy"
	"github.com/vcomlink/vcomlink/server"
	"github.com/vcomlink/vcomlink/tpm"
	"github.com/vcomlink/vcomlink/tpm/backend"
	"github.com/vcomlink/vcomlink/transport"
)

const defaultListen = "vsock://:2000"

// serveFlags are the settings of vcomlink serve.
type serveFlags struct {
	listen         stringList
	tpm            string
	ek             handleFlag
	aik            handleFlag
	auth           authFlag
	commandTimeout time.Duration
	shutdownGrace  time.Duration
	logLevel       string
	logFormat      string
	policyFile     string
	limits         limitFlags
}

func newServeFlags(stderr io.Writer) (*flag.FlagSet, *serveFlags) {
	f := &serveFlags{
		listen: stringList{values: []string{defaultListen}},
		ek:     handleFlag(vcom.HandleEK),
		aik:    handleFlag(vcom.HandleAIK),
		auth:   authFlag{},
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Var(&f.listen, "listen", "address to serve guests on; repeat for several: vsock://:PORT (any CID), unix:///path?vm=NAME (NAME is the peer for the access policy), or tcp://127.0.0.1:PORT")
	fs.StringVar(&f.tpm, "tpm", backend.DefaultDevice, "TPM to serve: a device path, unix:///path for a raw TPM command socket such as swtpm's, or simulator for the embedded simulator")
	fs.Var(&f.ek, "ek-handle", "persistent handle of the endorsement key, in hex or decimal")
	fs.Var(&f.aik, "aik-handle", "persistent handle of the attestation key that signs certifications")
	fs.Var(f.auth, "auth", "auth value of a handle, as HANDLE=FILE (the file holds the value; one trailing newline is dropped); HANDLE may be owner or endorsement; repeat for several")
	fs.DurationVar(&f.commandTimeout, "command-timeout", 30*time.Second, "longest wait for one TPM command before the request fails with 504")
	fs.DurationVar(&f.shutdownGrace, "shutdown-grace", 10*time.Second, "on SIGTERM or SIGINT, how long requests in flight may take to finish")
	fs.StringVar(&f.logLevel, "log-level", "info", "least severe log level to write: debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&f.policyFile, "policy", "", "access policy file (YAML, see docs/policy.md) that grants each peer operations on handles; SIGHUP reloads it; without it the built-in policy applies")
	f.limits.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: vcomlink serve [flags]")
		fmt.Fprintln(stderr)
		fmt.Fprintln(stderr, "Serves the host's TPM to guests: six operations over HTTP/1.1 with protobuf bodies.")
		fmt.Fprintln(stderr)
		fmt.Fprintln(stderr, "Flags:")
		fs.PrintDefaults()
	}
	return fs, f
}

func runServe(args []string, stdout, stderr io.Writer) int {
	fs, f := newServeFlags(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "vcomlink serve: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	log, err := newLogger(stderr, f.logLevel, f.logFormat)
	if err != nil {
		fmt.Fprintf(stderr, "vcomlink serve: %v\n", err)
		return exitUsage
	}
	spec, err := backend.ParseSpec(f.tpm)
	if err != nil {
		fmt.Fprintf(stderr, "vcomlink serve: %v\n", err)
		return exitUsage
	}
	for _, l := range f.listen.values {
		if _, err := transport.ParseAddress(l); err != nil {
			fmt.Fprintf(stderr, "vcomlink serve: %v\n", err)
			return exitUsage
		}
	}
	if err := f.limits.check(); err != nil {
		fmt.Fprintf(stderr, "vcomlink serve: %v\n", err)
		return exitUsage
	}
	access, err := loadPolicy(f.policyFile)
	if err != nil {
		fmt.Fprintf(stderr, "vcomlink serve: %v\n", err)
		return exitUsage
	}

	if err := serve(f, spec, access, log); err != nil {
		log.Error("vcomlink stopped", "err", err)
		return exitFailure
	}
	return exitOK
}

func serve(f *serveFlags, spec backend.Spec, access policy.Checker, log *slog.Logger) error {
	opened, err := backend.Open(spec)
	if err != nil {
		return err
	}
	cfg := tpm.DefaultConfig()
	cfg.EK = uint32(f.ek)
	cfg.AIK = uint32(f.aik)
	cfg.Auth = f.auth
	cfg.CommandTimeout = f.commandTimeout
	cfg.OwnerReadNV = ownerReadNV(access)
	cfg.Logger = log
	svc, err := tpm.New(opened.Open, cfg)
	if err != nil {
		return fmt.Errorf("start the TPM service on %s: %w", spec, err)
	}
	defer svc.Close()
	if opened.Provisioned != nil {
		if err := writeSimulatorCA(opened, log); err != nil {
			return err
		}
	}

	var listeners []*transport.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for _, addr := range f.listen.values {
		l, err := transport.Listen(addr)
		if err != nil {
			return err
		}
		listeners = append(listeners, l)
	}

	store := policy.NewStore(access)
	srvCfg := server.Config{TPM: svc, Policy: store, Logger: log}
	f.limits.apply(&srvCfg)
	srv := server.New(srvCfg)
	errs := make(chan error, len(listeners))
	for _, l := range listeners {
		go func() { errs <- srv.Serve(l) }()
	}
	log.Info("vcomlink serving", "version", versionString(), "tpm", spec.String(), "listen", strings.Join(f.listen.values, " "), "policy", policyName(f.policyFile))

	reloader := &policyReloader{path: f.policyFile, store: store, svc: svc, log: log}
	hangups := make(chan os.Signal, 1)
	signal.Notify(hangups, syscall.SIGHUP)
	defer signal.Stop(hangups)
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(signals)
wait:
	for {
		select {
		case <-hangups:
			reloader.reload()
		case sig := <-signals:
			log.Info("shutting down", "signal", sig.String(), "grace", f.shutdownGrace)
			break wait
		case err := <-errs:
			return fmt.Errorf("serving guests failed: %w", err)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), f.shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn("requests still in flight at the end of the grace period were cut off", "err", err)
	}
	if err := svc.Close(); err != nil {
		log.Warn("closing the TPM connection failed", "err", err)
	}
	log.Info("vcomlink stopped")
	return nil
}

// writeSimulatorCA writes the certificate of the CA that issued the
// simulator's EK certificate, so that a verifier can check it.
func writeSimulatorCA(opened *backend.Opened, log *slog.Logger) error {
	path := filepath.Join(os.TempDir(), fmt.Sprintf("vcomlink-simulator-ca-%d.pem", os.Getpid()))
	block := &pem.Block{Type: "CERTIFICATE", Bytes: opened.Provisioned.CA.Certificate.Raw}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o644); err != nil {
		return fmt.Errorf("write the simulator's CA certificate: %w", err)
	}
	log.Warn("serving the embedded TPM simulator: its keys are not a real TPM's and vanish when the agent stops", "ek_cert_ca", path)
	return nil
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
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("invalid --log-format %q: use text or json", format)
}

// policyName names the access policy in force for the start log line.
func policyName(path string) string {
	if path == "" {
		return "built-in"
	}
	return path
}
