package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestExampleConfig checks that examples/config.yaml sets only flags that
// serve has, with valid values.
func TestExampleConfig(t *testing.T) {
	c, f := newServeCLI()
	if err := applyConfigFile(c.fs, "../../examples/config.yaml", nil); err != nil {
		t.Fatal(err)
	}
	if f.tpm != "/dev/tpmrm0" || f.admin == "" || f.policyFile == "" {
		t.Errorf("the example's settings were not applied: tpm %q, admin %q, policy %q", f.tpm, f.admin, f.policyFile)
	}
	if err := f.limits.check(); err != nil {
		t.Errorf("the example's limits: %v", err)
	}
}

// TestSystemdUnit checks the unit with systemd-analyze verify, with the
// binary path pointed at this test binary.
func TestSystemdUnit(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (Debian package systemd)")
	}
	unit, err := os.ReadFile("../../dist/vcomlink.service")
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(unit), "/usr/local/bin/vcomlink", self)
	path := filepath.Join(t.TempDir(), "vcomlink.service")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
