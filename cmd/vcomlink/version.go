package main

import (
	"fmt"
	"io"
	"runtime/debug"

	"github.com/vcomlink/vcomlink/tpm/backend"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "devel"

const versionAbout = `Prints the version of vcomlink and, where the build recorded them, the
commit it was built from and the Go version. A binary built without cgo
says that it lacks the embedded TPM simulator. vcomlink --version and
vcomlink -v print the same.`

func runVersion(args []string, stdout, stderr io.Writer) int {
	c := newCLI("version", "", 0, versionAbout, "")
	return c.run(args, stdout, stderr, func([]string) error {
		_, err := fmt.Fprintf(stdout, "vcomlink %s\n", versionString())
		return err
	})
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
