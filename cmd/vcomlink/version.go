package main

import (
	"flag"
	"fmt"
	"io"
	"runtime/debug"

	"github.com/vcomlink/vcomlink/tpm/backend"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "devel"

func runVersion(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	fmt.Fprintf(stdout, "vcomlink %s\n", versionString())
	return exitOK
}

func versionString() string {
	s := version
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, setting := range info.Settings {
			if setting.Key == "vcs.revision" && len(setting.Value) >= 12 {
				s += " (" + setting.Value[:12] + ")"
			}
		}
		s += " " + info.GoVersion
	}
	if !backend.SimulatorAvailable {
		s += ", without the TPM simulator"
	}
	return s
}
