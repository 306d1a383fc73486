package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

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
