package transport

import (
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func TestParseAddressAccepts(t *testing.T) {
	cases := []struct {
		in   string
		want Address
	}{
		{"vsock://:2000", Address{Network: "vsock", CID: AnyCID, Port: 2000}},
		{"vsock://3:1024", Address{Network: "vsock", CID: 3, Port: 1024}},
		{"unix:///run/vm1.sock_2000?vm=vm1", Address{Network: "unix", Path: "/run/vm1.sock_2000", VM: "vm1"}},
		{"unix:///tmp/v.sock", Address{Network: "unix", Path: "/tmp/v.sock"}},
		{"unix:///tmp//x/../v.sock", Address{Network: "unix", Path: "/tmp/v.sock"}},
		{"tcp://127.0.0.1:8080", Address{Network: "tcp", HostPort: "127.0.0.1:8080"}},
		{"tcp://[::1]:8080", Address{Network: "tcp", HostPort: "[::1]:8080"}},
		{"tcp://localhost:8080", Address{Network: "tcp", HostPort: "localhost:8080"}},
		{"tcp://0.0.0.0:8080?force=true", Address{Network: "tcp", HostPort: "0.0.0.0:8080", Force: true}},
	}
	for _, c := range cases {
		got, err := ParseAddress(c.in)
		if err != nil {
			t.Errorf("ParseAddress(%q): %v", c.in, err)
			continue
		}
		if got != c.want {
			t.Errorf("ParseAddress(%q) = %+v; want %+v", c.in, got, c.want)
		}
	}
}

func TestParseAddressRejects(t *testing.T) {
	cases := []struct {
		in   string
		want string
	}{
		{"", "use vsock://:2000"},
		{"2000", "use vsock://:2000"},
		{"http://127.0.0.1:80", "use vsock://:2000"},
		{"vsock://2000", "vsock://:PORT"},
		{"vsock://:port", "invalid"},
		{"vsock://x:2000", "CID \"x\" is not a number"},
		{"vsock://:99999999999", "is not a number"},
		{"unix://relative/path", "unix:///absolute/path"},
		{"unix:///tmp/v.sock?name=x", "unknown option"},
		{"unix:///tmp/v.sock?vm=a%20b", "may contain only letters"},
		{"unix:///tmp/v.sock?vm=", "must be 1 to 64 characters"},
		{"unix:///tmp/v.sock?vm=" + strings.Repeat("a", 65), "must be 1 to 64 characters"},
		{"unix:///tmp/v.sock?vm=a&vm=b", "vm= is given 2 times"},
		{"unix:///tmp/v.sock?vm=a/b", "may contain only letters"},
		{"tcp://127.0.0.1", "tcp://127.0.0.1:PORT"},
		{"tcp://0.0.0.0:8080", "not a loopback address"},
		{"tcp://192.0.2.1:8080", "not a loopback address"},
		{"tcp://example.com:8080", "not a loopback address"},
	}
	for _, c := range cases {
		_, err := ParseAddress(c.in)
		if err == nil {
			t.Errorf("ParseAddress(%q) succeeded; want an error", c.in)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseAddress(%q) = %q; want it to contain %q", c.in, err, c.want)
		}
	}
}

func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "vct")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func TestUnixListenerIdentifiesVM(t *testing.T) {
	path := filepath.Join(shortTempDir(t), "vm1.sock_2000")
	l, err := Listen("unix://" + path + "?vm=vm1")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != socketMode {
		t.Errorf("socket mode %o; want %o", mode, socketMode)
	}

	go func() {
		c, err := net.Dial("unix", path)
		if err == nil {
			c.Close()
		}
	}()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	peer, ok := PeerOf(c)
	if !ok {
		t.Fatal("PeerOf found no peer")
	}
	if peer.ID() != "vm:vm1" {
		t.Errorf("peer ID %q; want vm:vm1", peer.ID())
	}
}

func TestUnixListenerWithoutVM(t *testing.T) {
	path := filepath.Join(shortTempDir(t), "agent.sock")
	l, err := Listen("unix://" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := net.Dial("unix", path)
		if err == nil {
			c.Close()
		}
	}()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	peer, _ := PeerOf(c)
	if peer.ID() != "unix:"+path {
		t.Errorf("peer ID %q; want unix:%s", peer.ID(), path)
	}
}

func TestUnixListenerReplacesStaleSocket(t *testing.T) {
	path := filepath.Join(shortTempDir(t), "stale.sock")
	// A socket file whose listener is gone, as a crashed agent leaves it.
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("stale socket file missing: %v", err)
	}

	l, err := Listen("unix://" + path)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	l.Close()
}

func TestUnixListenerRefusesInUseAndFiles(t *testing.T) {
	dir := shortTempDir(t)
	inUse := filepath.Join(dir, "busy.sock")
	l, err := Listen("unix://" + inUse)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := Listen("unix://" + inUse); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("Listen on a served socket = %v; want an in-use error", err)
	}

	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen("unix://" + file); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Listen on a regular file = %v; want a not-a-socket error", err)
	}
	if data, _ := os.ReadFile(file); string(data) != "data" {
		t.Errorf("the regular file was changed")
	}
}

func TestUnixListenerMissingDirectory(t *testing.T) {
	dir := filepath.Join(shortTempDir(t), "missing")
	_, err := Listen("unix://" + filepath.Join(dir, "v.sock"))
	if err == nil || !strings.HasSuffix(err.Error(), "; create the directory "+dir+" first") {
		t.Errorf("Listen in a missing directory = %v; want an error that says to create %s", err, dir)
	}
}

func TestTCPListenerIdentifiesPeer(t *testing.T) {
	l, err := Listen("tcp://127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := net.Dial("tcp", l.Addr().String())
		if err == nil {
			c.Close()
		}
	}()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	peer, _ := PeerOf(c)
	if peer.ID() != "tcp:127.0.0.1" {
		t.Errorf("peer ID %q; want tcp:127.0.0.1", peer.ID())
	}
}

// groupOtherThanOwn returns a group ID that the test process may give a
// file it owns but that differs from its own group, so that a test of the
// socket's group fails if the group is not set. Root may give any group,
// and another user one of its supplementary groups.
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

func socketGroupOf(t *testing.T, path string) int {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return int(fi.Sys().(*syscall.Stat_t).Gid)
}

func TestUnixListenerSocketGroup(t *testing.T) {
	gid := groupOtherThanOwn(t)
	path := filepath.Join(shortTempDir(t), "vm1.sock_2000")
	l, err := Listen("unix://" + path + "?vm=vm1")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.SetSocketGroup(gid); err != nil {
		t.Fatal(err)
	}

	if got := socketGroupOf(t, path); got != gid {
		t.Errorf("socket group %d; want %d", got, gid)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != socketMode {
		t.Errorf("socket mode %o; want %o", mode, socketMode)
	}
}

func TestTCPListenerIgnoresSocketGroup(t *testing.T) {
	l, err := Listen("tcp://127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.SetSocketGroup(4242); err != nil {
		t.Errorf("SetSocketGroup on a TCP listener: %v", err)
	}
}

func TestUnixListenerKeepsOwnGroup(t *testing.T) {
	path := filepath.Join(shortTempDir(t), "agent.sock")
	l, err := Listen("unix://" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got, want := socketGroupOf(t, path), os.Getegid(); got != want {
		t.Errorf("socket group %d; want the process's group %d", got, want)
	}
}

func TestLookupGroup(t *testing.T) {
	own := os.Getegid()
	g, err := user.LookupGroupId(strconv.Itoa(own))
	if err != nil {
		t.Fatalf("the process's own group %d has no name: %v", own, err)
	}
	byName, err := LookupGroup(g.Name)
	if err != nil {
		t.Fatalf("LookupGroup(%q): %v", g.Name, err)
	}
	if byName != own {
		t.Errorf("LookupGroup(%q) = %d; want %d", g.Name, byName, own)
	}

	// A number is a group ID even without a name on the host.
	byNumber, err := LookupGroup("4242")
	if err != nil {
		t.Fatalf("LookupGroup(\"4242\"): %v", err)
	}
	if byNumber != 4242 {
		t.Errorf("LookupGroup(\"4242\") = %d; want 4242", byNumber)
	}
}

func TestLookupGroupRejects(t *testing.T) {
	cases := []struct {
		in   string
		want string
	}{
		{"no-such-group-vcomlink", `group "no-such-group-vcomlink" not found`},
		{"", `group "" not found`},
		{"-1", `group "-1" not found`},
		{"4294967295", "leaves the group unchanged"},
	}
	for _, c := range cases {
		_, err := LookupGroup(c.in)
		if err == nil {
			t.Errorf("LookupGroup(%q) succeeded; want an error", c.in)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("LookupGroup(%q) = %q; want it to contain %q", c.in, err, c.want)
		}
	}
}
