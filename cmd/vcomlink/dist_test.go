package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestExampleConfig checks that examples/config.yaml sets only flags that
// serve has, with valid values.
func TestExampleConfig(t *testing.T) {
	c, f := newServeCLI()
	config, err := applyConfigFile(c.fs, "../../examples/config.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.tpm != "/dev/tpmrm0" || f.admin == "" || f.policyFile == "" {
		t.Errorf("the example's settings were not applied: tpm %q, admin %q, policy %q", f.tpm, f.admin, f.policyFile)
	}
	if err := f.limits.check(config); err != nil {
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

// unitSettings returns the values of each setting of the [Service] section
// of a systemd unit, in the order the unit gives them.
func unitSettings(t *testing.T, path string) map[string][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	settings := make(map[string][]string)
	section := ""
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "[") {
			section = line
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if ok && section == "[Service]" {
			settings[key] = append(settings[key], value)
		}
	}
	return settings
}

// TestSystemdUnitSettings checks the settings that the agent's exit
// statuses and --socket-group depend on.
func TestSystemdUnitSettings(t *testing.T) {
	settings := unitSettings(t, "../../dist/vcomlink.service")

	start := settings["ExecStart"]
	if len(start) != 1 {
		t.Fatalf("ExecStart %q; want one command", start)
	}
	reload := settings["ExecReload"]
	if len(reload) != 2 {
		t.Fatalf("ExecReload %q; want the check, then the signal", reload)
	}
	if want := start[0] + " --check"; reload[0] != want {
		t.Errorf("first ExecReload %q; want %q, the start's command with --check", reload[0], want)
	}
	if want := "/bin/kill -HUP $MAINPID"; reload[1] != want {
		t.Errorf("second ExecReload %q; want %q", reload[1], want)
	}

	want := map[string]string{
		"RestartPreventExitStatus": strconv.Itoa(exitUsage),
		"CapabilityBoundingSet":    "CAP_CHOWN",
		"RuntimeDirectoryMode":     "0751",
		"RuntimeDirectory":         strings.TrimPrefix(runtimeDirectory, "/run/"),
		"SupplementaryGroups":      "tss",
	}
	for key, value := range want {
		got := settings[key]
		if len(got) != 1 || got[0] != value {
			t.Errorf("%s %q; want %q", key, got, value)
		}
	}
}

// TestSystemdReloadCheck runs the unit's first ExecReload command with the
// test binary and a config file of the test's. It must pass a valid policy
// and fail an invalid one with exit status 2, which stops the reload before
// the agent is signalled.
func TestSystemdReloadCheck(t *testing.T) {
	reload := unitSettings(t, "../../dist/vcomlink.service")["ExecReload"]
	if len(reload) == 0 {
		t.Fatal("the unit has no ExecReload")
	}
	args := strings.Fields(reload[0])
	if len(args) < 2 || args[0] != "/usr/local/bin/vcomlink" {
		t.Fatalf("ExecReload %q does not run /usr/local/bin/vcomlink", reload[0])
	}

	dir := t.TempDir()
	config := filepath.Join(dir, "config.yaml")
	policyPath := filepath.Join(dir, "policy.yaml")
	writeTestFile(t, config, "tpm: /dev/no-such-tpm\npolicy: "+policyPath+"\n")
	for i, a := range args {
		if a == "/etc/vcomlink/config.yaml" {
			args[i] = config
		}
	}

	cases := []struct {
		name   string
		policy string
		code   int
		want   string
	}{
		{"valid policy", "default:\n  - ops: [getpub]\n    handles: [0x81000003]\n", exitOK, "configuration and policy are valid"},
		{"invalid policy", "default:\n  - ops: [getpub, quote]\n    handles: [0x81000003]\n", exitUsage, policyPath + `:2: unknown operation "quote"`},
	}
	for _, c := range cases {
		writePolicy(t, policyPath, c.policy)
		cmd := exec.Command(os.Args[0], args[1:]...)
		cmd.Env = append(os.Environ(), "VCOMLINK_RUN_MAIN=1")
		out, err := cmd.CombinedOutput()
		var exitErr *exec.ExitError
		if err != nil && !errors.As(err, &exitErr) {
			t.Fatalf("%s: run %q: %v", c.name, reload[0], err)
		}
		if code := cmd.ProcessState.ExitCode(); code != c.code {
			t.Errorf("%s: exit status %d; want %d\n%s", c.name, code, c.code, out)
		}
		if !strings.Contains(string(out), c.want) {
			t.Errorf("%s: output %q does not contain %q", c.name, out, c.want)
		}
	}
}
