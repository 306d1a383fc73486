package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/vcomlink/vcomlink/admin"
	"github.com/vcomlink/vcomlink/policy"
	"github.com/vcomlink/vcomlink/transport"
)

// explainPolicyError adds to an error of loadPolicy the line of the
// --config file that named the policy file, and what to do when the file
// is missing. A mistake inside the policy file already names that file and
// line.
func explainPolicyError(err error, config *configLines) error {
	var inFile *policy.FileError
	if errors.As(err, &inFile) {
		return err
	}
	if errors.Is(err, fs.ErrNotExist) {
		remove := "leave out --policy"
		if config.setBy("policy") {
			remove = "remove the policy setting"
		}
		err = fmt.Errorf("%w; write the policy file (docs/policy.md describes it), or %s to use the built-in policy", err, remove)
	}
	return config.locate("policy", 0, err)
}

// runtimeDirectory is the directory that dist/vcomlink.service has systemd
// create when it starts the agent (RuntimeDirectory=vcomlink).
const runtimeDirectory = "/run/vcomlink"

// missingDirectoriesNote returns a note for --check that names the
// directories of Unix listeners and the admin socket that do not exist,
// or "". They are not a mistake, because systemd may create them when it
// starts the agent, but the agent fails to start if they are still
// missing.
func missingDirectoriesNote(f *serveFlags) string {
	var paths []string
	for _, l := range f.listen.values {
		if a, err := transport.ParseAddress(l); err == nil && a.Network == "unix" {
			paths = append(paths, a.Path)
		}
	}
	if f.admin != "" {
		if network, address, err := admin.ParseAddress(f.admin); err == nil && network == "unix" {
			paths = append(paths, address)
		}
	}

	var missing []string
	systemdCreates := false
	for _, path := range paths {
		dir := filepath.Dir(path)
		if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) || slices.Contains(missing, dir) {
			continue
		}
		missing = append(missing, dir)
		systemdCreates = systemdCreates || dir == runtimeDirectory
	}

	var note string
	switch len(missing) {
	case 0:
		return ""
	case 1:
		note = fmt.Sprintf("; the socket directory %s does not exist yet, so create it before the agent starts", missing[0])
	default:
		note = fmt.Sprintf("; the socket directories %s do not exist yet, so create them before the agent starts", strings.Join(missing, ", "))
	}
	if systemdCreates {
		note += fmt.Sprintf(" (the systemd unit vcomlink.service creates %s at start)", runtimeDirectory)
	}
	return note
}
