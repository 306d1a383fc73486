package main

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// checkRun is the outcome of one vcomlink serve --check in the test
// process.
type checkRun struct {
	code   int
	stdout string
	stderr string
}

func runCheck(args ...string) checkRun {
	var stdout, stderr bytes.Buffer
	code := run(append([]string{"serve", "--check"}, args...), &stdout, &stderr)
	return checkRun{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// ownGroupName returns the name of the test process's group.
func ownGroupName(t *testing.T) string {
	t.Helper()
	g, err := user.LookupGroupId(strconv.Itoa(os.Getegid()))
	if err != nil {
		t.Fatalf("the test process's group %d has no name: %v", os.Getegid(), err)
	}
	return g.Name
}

// TestServeCheckValid checks a configuration with two Unix listeners, an
// admin socket, a policy file, a socket group and a TPM socket. --check
// must bind no socket and must not connect to the TPM.
func TestServeCheckValid(t *testing.T) {
	dir := shortTempDir(t)

	// Another listener serves one listener's path, which serve would
	// reject as in use. The TPM is a socket that shows whether anything
	// connects to it.
	busy := filepath.Join(dir, "busy.sock_2000")
	busyListener, err := net.Listen("unix", busy)
	if err != nil {
		t.Fatal(err)
	}
	defer busyListener.Close()
	tpmSocket := filepath.Join(dir, "tpm.sock")
	tpmListener, err := net.Listen("unix", tpmSocket)
	if err != nil {
		t.Fatal(err)
	}
	defer tpmListener.Close()

	fresh := filepath.Join(dir, "vm2.sock_2000")
	adminSocket := filepath.Join(dir, "admin.sock")
	policyPath := filepath.Join(dir, "policy.yaml")
	writePolicy(t, policyPath, "default:\n  - ops: [getpub]\n    handles: [0x81000003]\npeers:\n  vm:vm1:\n    - ops: all\n      handles: [0x81000005]\n")
	config := filepath.Join(dir, "config.yaml")
	writeTestFile(t, config, `tpm: unix://`+tpmSocket+`
listen:
  - unix://`+busy+`?vm=vm1
  - unix://`+fresh+`?vm=vm2
admin: unix://`+adminSocket+`
policy: `+policyPath+`
socket-group: `+ownGroupName(t)+`
`)

	r := runCheck("--config", config)
	if r.code != exitOK {
		t.Fatalf("exit status %d; want %d\n%s", r.code, exitOK, r.stderr)
	}
	if r.stderr != "" {
		t.Errorf("standard error %q; want nothing", r.stderr)
	}
	line := strings.TrimSuffix(r.stdout, "\n")
	if strings.Contains(line, "\n") {
		t.Errorf("output %q is not one line", r.stdout)
	}
	for _, want := range []string{
		"configuration and policy are valid: 2 listeners",
		"socket group " + ownGroupName(t),
		"admin unix://" + adminSocket,
		"policy " + policyPath + " (a default entry of 1 grant, 1 peer entry",
		"the TPM unix://" + tpmSocket + " was not opened",
	} {
		if !strings.Contains(line, want) {
			t.Errorf("output %q lacks %q", line, want)
		}
	}

	for _, path := range []string{fresh, adminSocket} {
		if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s exists after --check (%v); want no socket bound", path, err)
		}
	}
	c, err := net.Dial("unix", busy)
	if err != nil {
		t.Errorf("the socket of the other listener no longer accepts: %v", err)
	} else {
		c.Close()
	}
	tpmListener.(*net.UnixListener).SetDeadline(time.Now().Add(100 * time.Millisecond))
	if c, err := tpmListener.Accept(); err == nil {
		c.Close()
		t.Errorf("--check connected to the TPM socket")
	}
}

// TestServeCheckMissingTPMDevice shows that --check leaves the TPM alone: a
// device that does not exist fails at start, but not the check, because the
// device may be missing where the configuration is checked, such as a
// build host.
func TestServeCheckMissingTPMDevice(t *testing.T) {
	socket := filepath.Join(shortTempDir(t), "v.sock")
	r := runCheck("--tpm", "/dev/no-such-tpm", "--listen", "unix://"+socket)
	if r.code != exitOK {
		t.Fatalf("exit status %d; want %d\n%s", r.code, exitOK, r.stderr)
	}
	if !strings.Contains(r.stdout, "valid: 1 listener (unix://") {
		t.Errorf("output %q does not count the listener in the singular", r.stdout)
	}
	if !strings.Contains(r.stdout, "built-in policy") {
		t.Errorf("output %q does not name the built-in policy", r.stdout)
	}
	if !strings.Contains(r.stdout, "the TPM /dev/no-such-tpm was not opened") {
		t.Errorf("output %q does not say that the TPM was not opened", r.stdout)
	}
	if _, err := os.Lstat(socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s exists after --check (%v)", socket, err)
	}
}

func TestServeCheckPolicyMistake(t *testing.T) {
	dir := t.TempDir()
	policyPath := filepath.Join(dir, "policy.yaml")
	writePolicy(t, policyPath, "default:\n  - ops: [getpub]\n    handles: [0x8100000x]\n")
	config := filepath.Join(dir, "config.yaml")
	writeTestFile(t, config, "tpm: /dev/no-such-tpm\npolicy: "+policyPath+"\n")

	r := runCheck("--config", config)
	if r.code != exitUsage {
		t.Errorf("exit status %d; want %d", r.code, exitUsage)
	}
	if want := policyPath + ":3:"; !strings.Contains(r.stderr, want) {
		t.Errorf("error %q does not contain %q", r.stderr, want)
	}
	if !strings.Contains(r.stderr, `invalid handle "0x8100000x"`) {
		t.Errorf("error %q does not name the invalid handle", r.stderr)
	}
	if n := strings.Count(strings.TrimSpace(r.stderr), "\n"); n != 0 {
		t.Errorf("error %q is not one line", r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("standard output %q; want nothing", r.stdout)
	}
}

func TestServeCheckConfigMistakes(t *testing.T) {
	cases := []struct {
		name    string
		content string
		want    string
	}{
		{"unknown setting", "tpm: /dev/tpmrm0\nlisen: unix:///tmp/x\n", `config.yaml:2: unknown setting "lisen"`},
		{"bad listen", "listen:\n  - unix://relative\n", "unix:///absolute/path"},
		{"bad admin", "admin: vsock://:2001\n", "guests must never reach the admin endpoints"},
		{"missing auth file", "auth: [\"0x81000005=/nonexistent\"]\n", `config.yaml:1: invalid auth "0x81000005=/nonexistent": read the auth value`},
		{"unknown socket group", "socket-group: no-such-group-vcomlink\n", `invalid --socket-group: group "no-such-group-vcomlink" not found`},
		{"check in file", "check: true\n", `config.yaml:1: "check" may be given only on the command line`},
	}
	for _, c := range cases {
		config := filepath.Join(t.TempDir(), "config.yaml")
		writeTestFile(t, config, c.content)
		r := runCheck("--config", config)
		if r.code != exitUsage {
			t.Errorf("%s: exit status %d; want %d", c.name, r.code, exitUsage)
		}
		if !strings.Contains(r.stderr, c.want) {
			t.Errorf("%s: error %q does not contain %q", c.name, r.stderr, c.want)
		}
		if r.stdout != "" {
			t.Errorf("%s: standard output %q; want nothing", c.name, r.stdout)
		}
	}
}

// TestServeRejectsCheckInConfig shows that a file that sets check is
// rejected at start too, rather than making serve check and exit 0.
func TestServeRejectsCheckInConfig(t *testing.T) {
	config := filepath.Join(t.TempDir(), "config.yaml")
	writeTestFile(t, config, "check: false\n")
	var stderr bytes.Buffer
	code := run([]string{"serve", "--config", config}, io.Discard, &stderr)
	if code != exitUsage {
		t.Errorf("exit status %d; want %d", code, exitUsage)
	}
	if !strings.Contains(stderr.String(), "may be given only on the command line") {
		t.Errorf("error %q does not say where check may be given", stderr.String())
	}
}

func TestServeUnknownSocketGroup(t *testing.T) {
	socket := filepath.Join(shortTempDir(t), "v.sock")
	var stderr bytes.Buffer
	code := run([]string{"serve", "--tpm", "/dev/no-such-tpm", "--listen", "unix://" + socket, "--socket-group", "no-such-group-vcomlink"}, io.Discard, &stderr)
	if code != exitUsage {
		t.Errorf("exit status %d; want %d", code, exitUsage)
	}
	if !strings.Contains(stderr.String(), `invalid --socket-group: group "no-such-group-vcomlink" not found`) {
		t.Errorf("error %q does not name the unknown group", stderr.String())
	}
	if strings.Contains(stderr.String(), "opening the TPM") {
		t.Errorf("the agent opened the TPM before it rejected the group")
	}
}

// groupOtherThanOwn returns a group ID that the test process may give a
// file it owns but that differs from its own group, so that the test fails
// if the group is not set. Root may give any group, and another user one of
// its supplementary groups.
func groupOtherThanOwn(t *testing.T) int {
	t.Helper()
	own := os.Getegid()
	if os.Geteuid() == 0 {
		if own != 65534 {
			return 65534
		}
		return 65533
	}
	groups, err := os.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range groups {
		if g != own {
			return g
		}
	}
	t.Skip("the test needs root, or a supplementary group to give the socket file")
	return 0
}

func fileGroup(t *testing.T, path string) int {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return int(fi.Sys().(*syscall.Stat_t).Gid)
}

// TestServeSocketGroup starts the agent with socket-group in its --config
// file, and checks that the guest listener's socket file has that group
// and mode 0660, while the admin socket keeps the agent's group.
func TestServeSocketGroup(t *testing.T) {
	gid := groupOtherThanOwn(t)
	dir := shortTempDir(t)
	config := filepath.Join(dir, "config.yaml")
	writeTestFile(t, config, "socket-group: "+strconv.Itoa(gid)+"\n")
	adminSocket := filepath.Join(dir, "admin.sock")
	p := startServe(t, "--tpm", "simulator", "--config", config, "--admin", "unix://"+adminSocket)

	// A guest listener's socket accepts connections before its group is
	// set. The agent opens the admin socket only after every guest
	// listener is set up, so the test waits for the admin socket.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(adminSocket); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no admin socket within 10s\n%s", p.log)
		}
		time.Sleep(10 * time.Millisecond)
	}

	if got := fileGroup(t, p.socket); got != gid {
		t.Errorf("listener socket group %d; want %d", got, gid)
	}
	fi, err := os.Stat(p.socket)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o660 {
		t.Errorf("listener socket mode %o; want 660", mode)
	}
	if got, want := fileGroup(t, adminSocket), os.Getegid(); got != want {
		t.Errorf("admin socket group %d; want the agent's group %d", got, want)
	}
	if code := p.stop(t); code != exitOK {
		t.Fatalf("exit status %d after SIGTERM; want 0\n%s", code, p.log)
	}
}

func TestServeCheckNamesLiftedHandles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte("never: [0x01700000-0x01900000]\nowner_read: [0x01600000]\ndefault: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runCheck("--tpm", "simulator", "--listen", "unix:///run/vcomlink/v.sock", "--policy", path)
	if r.code != exitOK {
		t.Fatalf("exit status %d; want 0\n%s", r.code, r.stderr)
	}
	if want := "; the policy leaves out built-in protected handles 0x01600000;"; !strings.Contains(r.stdout, want) {
		t.Errorf("--check printed %q; want it to contain %q", r.stdout, want)
	}
}

// TestServeConfigNamesLine checks that a mistake in a value of a --config
// file names the file and the line of the value, also when it is found
// after the file is applied.
func TestServeConfigNamesLine(t *testing.T) {
	cases := []struct {
		name    string
		content string
		want    string
	}{
		{"non-loopback listen", "tpm: simulator\nlisten:\n  - unix:///run/vcomlink/a.sock\n  - tcp://0.0.0.0:9000\n",
			`config.yaml:4: listen address "tcp://0.0.0.0:9000" is not a loopback address`},
		{"listen in same VM", "listen:\n  - unix:///run/vcomlink/a.sock?vm=x\n  - unix:///run/vcomlink/b.sock?vm=x\n", `config.yaml:3: --listen`},
		{"missing policy file", "tpm: simulator\npolicy: /nonexistent/policy.yaml\n",
			"config.yaml:2: read the access policy: open /nonexistent/policy.yaml: no such file or directory; write the policy file (docs/policy.md describes it), or remove the policy setting"},
		{"YAML syntax", "tpm: [unclosed\n", "config.yaml:1: invalid YAML: did not find expected ',' or ']'"},
		{"relative TPM path", "rate: 5\ntpm: relative/tpm\n", "config.yaml:2: "},
		{"zero command timeout", "tpm: simulator\ncommand-timeout: 0s\n", "config.yaml:2: invalid --command-timeout 0s"},
		{"negative shutdown grace", "shutdown-grace: -1s\n", "config.yaml:1: invalid --shutdown-grace -1s"},
		{"zero burst", "tpm: simulator\nburst: 0\n", "config.yaml:2: invalid --burst 0"},
		{"NV index as EK", "ek-handle: 0x01c00002\n", "config.yaml:1: invalid --ek-handle 0x01c00002"},
		{"vsock admin", "tpm: simulator\nadmin: vsock://:2001\n", "config.yaml:2: "},
		{"unknown socket group", "socket-group: no-such-group-vcomlink\n", `config.yaml:1: invalid --socket-group`},
	}
	for _, c := range cases {
		config := filepath.Join(t.TempDir(), "config.yaml")
		writeTestFile(t, config, c.content)
		r := runCheck("--config", config)
		if r.code != exitUsage {
			t.Errorf("%s: exit status %d; want %d", c.name, r.code, exitUsage)
		}
		if want := config[:len(config)-len("config.yaml")] + c.want; !strings.Contains(r.stderr, want) {
			t.Errorf("%s: error %q does not contain %q", c.name, r.stderr, want)
		}
	}
}

// TestServeCommandLineNamesNoLine checks that a mistake in a flag that the
// command line set, over a --config file that sets the flag too, names no
// line of the file.
func TestServeCommandLineNamesNoLine(t *testing.T) {
	config := filepath.Join(t.TempDir(), "config.yaml")
	writeTestFile(t, config, "burst: 5\npolicy: /nonexistent/file.yaml\n")
	r := runCheck("--config", config, "--burst", "0", "--policy", "")
	if r.code != exitUsage {
		t.Errorf("exit status %d; want %d", r.code, exitUsage)
	}
	if !strings.Contains(r.stderr, "invalid --burst 0") {
		t.Errorf("error %q does not name --burst", r.stderr)
	}
	if strings.Contains(r.stderr, "config.yaml:") {
		t.Errorf("error %q names a line of the file, which the command line overrode", r.stderr)
	}

	r = runCheck("--policy", "/nonexistent/file.yaml")
	if want := "or leave out --policy to use the built-in policy"; !strings.Contains(r.stderr, want) {
		t.Errorf("error %q does not contain %q", r.stderr, want)
	}
}

// TestServeCheckNotesMissingDirectory checks that --check passes a Unix
// listener and an admin socket whose directories do not exist, because
// systemd may create them at start, and names each directory once in a
// note.
func TestServeCheckNotesMissingDirectory(t *testing.T) {
	dir := shortTempDir(t)
	missing := filepath.Join(dir, "missing")
	other := filepath.Join(dir, "other")
	r := runCheck("--tpm", "simulator",
		"--listen", "unix://"+filepath.Join(missing, "vm1.sock")+"?vm=vm1",
		"--listen", "unix://"+filepath.Join(missing, "vm2.sock")+"?vm=vm2",
		"--listen", "unix://"+filepath.Join(dir, "vm3.sock")+"?vm=vm3",
		"--admin", "unix://"+filepath.Join(other, "admin.sock"))
	if r.code != exitOK {
		t.Fatalf("exit status %d; want %d\n%s", r.code, exitOK, r.stderr)
	}
	want := "; the socket directories " + missing + ", " + other + " do not exist yet, so create them before the agent starts;"
	if !strings.Contains(r.stdout, want) {
		t.Errorf("output %q does not contain %q", r.stdout, want)
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("--check created %s (%v)", missing, err)
	}

	r = runCheck("--tpm", "simulator", "--listen", "unix://"+filepath.Join(dir, "vm.sock"))
	if strings.Contains(r.stdout, "does not exist") || strings.Contains(r.stdout, "do not exist") {
		t.Errorf("output %q notes a directory that exists", r.stdout)
	}

	// The systemd unit creates /run/vcomlink, which a host without the
	// unit running lacks.
	if _, err := os.Stat("/run/vcomlink"); err == nil {
		return
	}
	r = runCheck("--tpm", "simulator", "--listen", "unix:///run/vcomlink/vm.sock")
	if want := "; the socket directory /run/vcomlink does not exist yet, so create it before the agent starts (the systemd unit vcomlink.service creates /run/vcomlink at start);"; !strings.Contains(r.stdout, want) {
		t.Errorf("output %q does not contain %q", r.stdout, want)
	}
}

// TestServeCheckCountsAuthValues checks the count of --auth values in the
// singular and the plural.
func TestServeCheckCountsAuthValues(t *testing.T) {
	dir := t.TempDir()
	owner := writeTemp(t, dir, "owner.auth", []byte("secret\n"))
	key := writeTemp(t, dir, "key.auth", []byte("secret\n"))
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, ", 0 auth values,"},
		{[]string{"--auth", "owner=" + owner}, ", 1 auth value,"},
		{[]string{"--auth", "owner=" + owner, "--auth", "0x81000005=" + key}, ", 2 auth values,"},
	} {
		r := runCheck(append([]string{"--tpm", "simulator", "--listen", "unix:///run/vcomlink/v.sock"}, c.args...)...)
		if r.code != exitOK {
			t.Fatalf("%q: exit status %d; want %d\n%s", c.args, r.code, exitOK, r.stderr)
		}
		if !strings.Contains(r.stdout, c.want) {
			t.Errorf("%q: output %q does not contain %q", c.args, r.stdout, c.want)
		}
	}
}
