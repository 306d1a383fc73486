// Command vcomlink is the host agent that serves the host's TPM to its
// virtual machines over vsock, and the tools that go with it: a demo of the
// whole flow on the embedded TPM simulator, and the version.
package main

import (
	"fmt"
	"io"
	"os"
)

// Exit statuses shared by every command.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"serve", "serve the host's TPM to guests", runServe},
		{"demo", "run the whole flow on one machine with the embedded TPM simulator", runDemo},
		{"getpub", "guest: print the public area of a TPM key", runGetPub},
		{"sign", "guest: sign data with a TPM key", runSign},
		{"readnv", "guest: print the content of an NV index, such as the EK certificate", runReadNV},
		{"activatecredparams", "guest: print the EK and the attestation key's public area and Name", runActivateCredParams},
		{"activatecred", "guest: recover the secret of a credential with the TPM", runActivateCred},
		{"certify", "guest: have the attestation key certify a key", runCertify},
		{"makecred", "verifier: make a credential for an EK and a key's Name", runMakeCred},
		{"verify-sign", "verifier: check a signature from sign", runVerifySign},
		{"verify-certify", "verifier: check a certification from certify", runVerifyCertify},
		{"verify-ekcert", "verifier: check an EK certificate against the EK and a CA", runVerifyEKCert},
		{"bench", "measure an agent's throughput, latency and memory under guest load", runBench},
		{"version", "print the version", runVersion},
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "-h", "--help":
		usage(stdout)
		return exitOK
	case "-v", "--version":
		return runVersion(args[1:], stdout, stderr)
	case "help":
		return runHelp(args[1:], stdout, stderr)
	}
	if c, ok := findCommand(name); ok {
		return c.run(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "vcomlink: unknown command %q\n\n", name)
	usage(stderr)
	return exitUsage
}

func findCommand(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// runHelp prints the general help, or with one argument the help of that
// command, to standard output.
func runHelp(args []string, stdout, stderr io.Writer) int {
	switch len(args) {
	case 0:
		usage(stdout)
		return exitOK
	case 1:
	default:
		fmt.Fprintf(stderr, "vcomlink help: expected one COMMAND, got %d arguments\n", len(args))
		return exitUsage
	}

	c, ok := findCommand(args[0])
	if !ok {
		fmt.Fprintf(stderr, "vcomlink help: unknown command %q\n\n", args[0])
		usage(stderr)
		return exitUsage
	}
	return c.run([]string{"--help"}, stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "vcomlink serves a host's TPM to its virtual machines over vsock.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage: vcomlink COMMAND [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	width := 0
	for _, c := range commands() {
		width = max(width, len(c.name))
	}
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-*s  %s\n", width, c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run vcomlink help COMMAND, or vcomlink COMMAND --help, for the flags of a")
	fmt.Fprintln(w, "command, and vcomlink --version for the version.")
}
