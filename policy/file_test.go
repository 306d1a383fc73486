package policy

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/vcomlink/vcomlink/api/vcom"
)

// sampleHandles are handles of every type, the well-known ones, and the
// edges of the persistent and NV ranges.
var sampleHandles = []uint32{
	0x00000007, 0x02000000, 0x03000001, 0x40000001, 0x80000001, 0xff000000,
	0x81000000, 0x81000001, 0x81000002, 0x81000003, 0x81000004, 0x81000005,
	0x81000099, 0x817FFFFE, 0x817FFFFF, 0x81FFFFFF,
	0x01000000, 0x01500000, 0x01600000, 0x01700000, 0x01800000, 0x01900000,
	0x01C00002, 0x01FFFFFF,
}

func TestExampleMatchesBuiltinDefault(t *testing.T) {
	f, err := LoadFile(filepath.Join("..", "examples", "policy.yaml"))
	if err != nil {
		t.Fatalf("load the example policy: %v", err)
	}
	builtin := NewDefault()
	for _, op := range Operations {
		for _, h := range sampleHandles {
			want := builtin.Allow("cid:99", op, h) == nil
			got := f.Allow("cid:99", op, h) == nil
			if got != want {
				t.Errorf("%s 0x%08x for an unlisted peer: example allows %v; the built-in policy allows %v", op, h, got, want)
			}
		}
	}
}

func TestExamplePeerEntries(t *testing.T) {
	f, err := LoadFile(filepath.Join("..", "examples", "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		peer  string
		op    Operation
		h     uint32
		allow bool
	}{
		{"cid:5", ActivateCredential, vcom.HandleAIK, true},
		{"cid:5", ReadNV, vcom.HandleEKCert, true},
		{"cid:5", Sign, vcom.HandleECDHKey, false},
		{"cid:5", ReadNV, vcom.HandleDeviceCert, false},
		{"vm:web", Sign, vcom.HandleECDHKey, true},
		{"vm:web", Sign, vcom.HandleAIK, false},
		{"vm:web", ReadNV, vcom.HandleDeviceCert, true},
		{"vm:sandbox", GetPub, vcom.HandleEK, false},
		{"vm:sandbox", ReadNV, vcom.HandleEKCert, false},
	}
	for _, c := range cases {
		err := f.Allow(c.peer, c.op, c.h)
		if (err == nil) != c.allow {
			t.Errorf("%s %s 0x%08x: Allow = %v; want allowed %v", c.peer, c.op, c.h, err, c.allow)
		}
		if err != nil && !errors.Is(err, ErrDenied) {
			t.Errorf("%s %s 0x%08x: error %v is not ErrDenied", c.peer, c.op, c.h, err)
		}
	}
}

func mustParse(t *testing.T, text string) *File {
	t.Helper()
	f, err := Parse([]byte(text))
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, text)
	}
	return f
}

func TestFileAllow(t *testing.T) {
	f := mustParse(t, `
never: [0x01600000]
read_public_only: [0x81000004]
owner_read: [0x01500000]
default:
  - ops: [getpub]
    handles: [0x81000000-0x810000FF]
peers:
  "vm:a":
    - ops: [sign, getpub]
      handles: [0x81000003, 0x81000004]
    - ops: all
      handles: 0x01000000-0x01FFFFFF
  "vm:b":
    - ops: [readnv]
      handles: [0x01500000]
  "cid:7": []
`)
	cases := []struct {
		peer  string
		op    Operation
		h     uint32
		allow bool
		want  string
	}{
		{"vm:x", GetPub, 0x81000000, true, ""},
		{"vm:x", GetPub, 0x810000FF, true, ""},
		{"vm:x", GetPub, 0x81000100, false, "default entry of the access policy grants no getpub"},
		{"vm:x", Sign, 0x81000003, false, "grants no sign"},
		{"vm:a", Sign, 0x81000003, true, ""},
		{"vm:a", GetPub, 0x81000000, false, "the peer's entry"},
		{"vm:a", Sign, 0x81000004, false, "only read this key's public area"},
		{"vm:a", GetPub, 0x81000004, true, ""},
		{"vm:a", ReadNV, 0x01C00002, true, ""},
		{"vm:a", ReadNV, 0x01600000, false, "never use this handle"},
		{"vm:a", ReadNV, 0x01500000, false, "a grant must name the index itself"},
		{"vm:b", ReadNV, 0x01500000, true, ""},
		{"cid:7", GetPub, 0x81000000, false, "grants no getpub"},
	}
	for _, c := range cases {
		err := f.Allow(c.peer, c.op, c.h)
		if (err == nil) != c.allow {
			t.Errorf("%s %s 0x%08x: Allow = %v; want allowed %v", c.peer, c.op, c.h, err, c.allow)
			continue
		}
		if err == nil {
			continue
		}
		var d *Denied
		if !errors.As(err, &d) {
			t.Errorf("%s %s 0x%08x: error %T is not a *Denied", c.peer, c.op, c.h, err)
			continue
		}
		if d.Peer != c.peer || d.Op != c.op || d.Handle != c.h {
			t.Errorf("%s %s 0x%08x: Denied names %s %s 0x%08x", c.peer, c.op, c.h, d.Peer, d.Op, d.Handle)
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %s 0x%08x: error %q does not contain %q", c.peer, c.op, c.h, err, c.want)
		}
	}
	if got := f.OwnerReadNV(); len(got) != 1 || !got[0x01500000] {
		t.Errorf("OwnerReadNV = %v; want only 0x01500000", got)
	}
}

func TestFileWithoutDefault(t *testing.T) {
	f := mustParse(t, `peers: {"vm:a": [{ops: [getpub], handles: [0x81000003]}]}`)
	err := f.Allow("vm:other", GetPub, 0x81000003)
	if err == nil || !strings.Contains(err.Error(), "no entry for this peer and no default entry") {
		t.Fatalf("Allow for an unlisted peer = %v; want a refusal that names the missing default", err)
	}
	if err := f.Allow("vm:a", GetPub, 0x81000003); err != nil {
		t.Fatalf("Allow for the listed peer: %v", err)
	}
	// Without never and read_public_only keys, the built-in lists apply.
	if err := f.Allow("vm:a", ReadNV, vcom.HandleDiskKey1); err == nil || !strings.Contains(err.Error(), "never") {
		t.Errorf("disk-key material without a never list: Allow = %v; want the built-in never refusal", err)
	}
}

func TestFileEmptyListsClearBuiltins(t *testing.T) {
	f := mustParse(t, `
never: []
read_public_only: []
default: [{ops: all, handles: [0x81000000-0x81FFFFFF, 0x01000000-0x01FFFFFF]}]
`)
	if err := f.Allow("vm:a", ReadNV, vcom.HandleDiskKey1); err != nil {
		t.Errorf("never: [] still refuses the disk-key material: %v", err)
	}
	if err := f.Allow("vm:a", Sign, vcom.HandleQuoteKey); err != nil {
		t.Errorf("read_public_only: [] still limits the quote key: %v", err)
	}
}

// TestOwnerReadExample checks the owner-read example of docs/policy.md.
func TestOwnerReadExample(t *testing.T) {
	f := mustParse(t, `
never: [0x01700000, 0x01800000, 0x01900000]
owner_read: [0x01600000]
default:
  - ops: all
    handles: [0x81000000-0x81FFFFFF, 0x01000000-0x01FFFFFF]
peers:
  "vm:enrol":
    - ops: [readnv]
      handles: [0x01600000]
    - ops: all
      handles: [0x81000000-0x81FFFFFF, 0x01000000-0x01FFFFFF]
`)
	if err := f.Allow("vm:enrol", ReadNV, vcom.HandleDeviceKeyCredential); err != nil {
		t.Errorf("vm:enrol may not read the device-key credential: %v", err)
	}
	if err := f.Allow("vm:other", ReadNV, vcom.HandleDeviceKeyCredential); err == nil {
		t.Errorf("a peer of the default entry may read the device-key credential")
	}
	for _, peer := range []string{"vm:enrol", "vm:other"} {
		if err := f.Allow(peer, ReadNV, vcom.HandleEKCert); err != nil {
			t.Errorf("%s may not read the EK certificate: %v", peer, err)
		}
		if err := f.Allow(peer, ReadNV, vcom.HandleDiskKey1); err == nil {
			t.Errorf("%s may read the disk-key material", peer)
		}
	}
}

func TestParseAliases(t *testing.T) {
	f := mustParse(t, `
default: &attest
  - ops: [getpub, activatecredparams]
    handles: [0x81000003]
peers:
  "vm:a": *attest
`)
	if err := f.Allow("vm:a", GetPub, 0x81000003); err != nil {
		t.Fatalf("alias of the default entry: %v", err)
	}
}

func TestParseRejects(t *testing.T) {
	cases := []struct {
		name string
		text string
		line int
		want string
	}{
		{"empty", "", 0, "the access policy is empty"},
		{"comment only", "# nothing\n", 0, "the access policy is empty"},
		{"not a mapping", "- 1\n", 1, "must be a mapping"},
		// gopkg.in/yaml.v3 v3.0.1 places some syntax errors, such as an
		// unclosed bracket or a key at the wrong indent, one line early.
		{"unclosed bracket", "default:\n  - ops: [sign\n", 1, "invalid YAML"},
		{"unclosed quote", "a: 1\nb: 2\nc: 'x\n", 3, "invalid YAML"},
		{"bad indent", "default: []\npeers: {}\n  x: 3\n", 2, "invalid YAML"},
		{"tab indent", "default:\n\t- ops: all\n", 2, "invalid YAML"},
		{"two documents", "default: []\n---\ndefault: []\n", 2, "second YAML document"},
		{"unknown top key", "default: []\nallow: []\n", 2, `unknown key "allow"`},
		{"duplicate top key", "default: []\ndefault: []\n", 2, `appears a second time`},
		{"null default", "default:\n", 1, "write [] to grant nothing"},
		{"default not a list", "default: {ops: all}\n", 1, "must be a list of grants"},
		{"unknown grant key", "default:\n  - ops: all\n    handles: [0x81000003]\n    auth: x\n", 4, `unknown key "auth"`},
		{"grant without ops", "default:\n  - handles: [0x81000003]\n", 2, "has no ops"},
		{"grant without handles", "default:\n  - ops: all\n", 2, "has no handles"},
		{"grant not a mapping", "default:\n  - sign\n", 2, "must be a mapping"},
		{"unknown op", "default:\n  - ops: [getpub, sgn]\n    handles: [0x81000003]\n", 2, `unknown operation "sgn"`},
		{"empty ops", "default:\n  - ops: []\n    handles: [0x81000003]\n", 2, "ops is empty"},
		{"bad handle", "default:\n  - ops: all\n    handles:\n      - 0x8100000G\n", 4, `invalid handle "0x8100000G"`},
		{"handle too large", "default:\n  - ops: all\n    handles: [0x181000000]\n", 3, "invalid handle"},
		{"hierarchy handle", "default:\n  - ops: all\n    handles: [0x40000001]\n", 3, "neither a persistent key"},
		{"PCR handle", "default:\n  - ops: all\n    handles: [7]\n", 3, "neither a persistent key"},
		{"transient handle", "default:\n  - ops: all\n    handles: [0x80000000]\n", 3, "neither a persistent key"},
		{"reversed range", "default:\n  - ops: all\n    handles: [0x81000005-0x81000001]\n", 3, "ends before it starts"},
		{"range across types", "default:\n  - ops: all\n    handles: [0x01000000-0x81000000]\n", 3, "spans handle types"},
		{"sign on NV", "default:\n  - ops: [sign]\n    handles: [0x01C00002]\n", 2, "only readnv operates on NV indices"},
		{"readnv on key", "default:\n  - ops: [readnv]\n    handles: [0x81000003]\n", 2, "readnv operates only on NV indices"},
		{"bad peer", "peers:\n  vm1: []\n", 2, `"vm1" is not a peer identity`},
		{"bad CID", "peers:\n  \"cid:x\": []\n", 2, "decimal number"},
		{"empty VM name", "peers:\n  \"vm:\": []\n", 2, "VM name"},
		{"relative unix path", "peers:\n  \"unix:run/v.sock\": []\n", 2, "absolute socket path"},
		{"tcp host name", "peers:\n  \"tcp:localhost\": []\n", 2, "IP address"},
		{"CID with a leading zero", "peers:\n  \"cid:0005\": []\n", 2, "write it as cid:5"},
		{"CID with a sign", "peers:\n  \"cid:+5\": []\n", 2, "decimal number"},
		{"IPv6 loopback in full", "peers:\n  \"tcp:0:0:0:0:0:0:0:1\": []\n", 2, "write it as tcp:::1"},
		{"IPv4-mapped address", "peers:\n  \"tcp:::ffff:127.0.0.1\": []\n", 2, "write it as tcp:127.0.0.1"},
		{"unix path with ..", "peers:\n  \"unix:/run/x/../v.sock\": []\n", 2, "write it as unix:/run/v.sock"},
		{"unix path with //", "peers:\n  \"unix:/run//v.sock\": []\n", 2, "write it as unix:/run/v.sock"},
		{"duplicate peer", "peers:\n  \"vm:a\": []\n  \"vm:a\": []\n", 3, "appears a second time"},
		{"peer entry null", "peers:\n  \"vm:a\":\n", 2, "must be a list of grants"},
		{"owner_read range", "owner_read: [0x01500000-0x015000FF]\n", 1, "single NV indices"},
		{"owner_read key", "owner_read: [0x81000003]\n", 1, "not an NV index"},
		{"owner_read in never", "never: [0x01500000]\nowner_read:\n  - 0x01500000\n", 3, "the never list contains it"},
		{"owner_read in built-in never", "owner_read: [0x01600000]\n", 1, "built-in never list"},
		{"read_public_only NV", "read_public_only: [0x01C00002]\n", 1, "not a persistent key handle"},
		{"never not a list", "never: {a: 1}\n", 1, "never must be a list"},
	}
	for _, c := range cases {
		_, err := Parse([]byte(c.text))
		if err == nil {
			t.Errorf("%s: Parse succeeded; want an error", c.name)
			continue
		}
		var fe *FileError
		if !errors.As(err, &fe) {
			t.Errorf("%s: error %T (%v) is not a *FileError", c.name, err, err)
			continue
		}
		if fe.Line != c.line {
			t.Errorf("%s: error %q is on line %d; want line %d", c.name, err, fe.Line, c.line)
		}
		if !strings.Contains(fe.Msg, c.want) {
			t.Errorf("%s: error %q does not contain %q", c.name, err, c.want)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %q is not one line", c.name, err)
		}
	}
}

func TestLoadFileNamesPathAndLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte("default: []\npeers:\n  \"vm:a\":\n    - ops: [sign]\n      handle: [0x81000003]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadFile(path)
	if err == nil {
		t.Fatal("LoadFile succeeded; want an error")
	}
	if want := path + ":5: "; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q does not start with %q", err, want)
	}

	_, err = LoadFile(filepath.Join(t.TempDir(), "missing.yaml"))
	if err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("LoadFile of a missing file = %v; want an error that names it", err)
	}
}

func TestStoreReplacesPolicy(t *testing.T) {
	allowAll := mustParse(t, "default: [{ops: all, handles: [0x81000000-0x81FFFFFF]}]")
	allowNone := mustParse(t, "default: []")
	s := NewStore(allowAll)
	if err := s.Allow("vm:a", Sign, 0x81000003); err != nil {
		t.Fatalf("before Set: %v", err)
	}
	s.Set(allowNone)
	if err := s.Allow("vm:a", Sign, 0x81000003); !errors.Is(err, ErrDenied) {
		t.Fatalf("after Set: %v; want ErrDenied", err)
	}
	if s.Get() != Checker(allowNone) {
		t.Errorf("Get returns %v; want the policy last Set", s.Get())
	}
}

func TestSummary(t *testing.T) {
	for _, tc := range []struct{ policy, want string }{
		{`peers: {"vm:a": [{ops: [getpub], handles: [0x81000003]}]}
never: [0x01600000]
owner_read: [0x01500000]
`, "no default entry, 1 peer entry, 1 never range, 1 owner-read index"},
		{`default: [{ops: [getpub], handles: [0x81000003]}, {ops: [readnv], handles: [0x01c00002]}]
peers: {"vm:a": [], "vm:b": []}
never: []
owner_read: []
`, "a default entry of 2 grants, 2 peer entries, 0 never ranges, 0 owner-read indices"},
	} {
		if got := mustParse(t, tc.policy).Summary(); got != tc.want {
			t.Errorf("Summary() = %q; want %q", got, tc.want)
		}
	}
}

func TestParseRejectsAliasExpansion(t *testing.T) {
	// Each level holds ten aliases of the one before: 10^6 nodes.
	var b strings.Builder
	b.WriteString("default:\n  - ops: [getpub]\n    handles: &l0 [0x81000003, 0x81000003, 0x81000003, 0x81000003, 0x81000003, 0x81000003, 0x81000003, 0x81000003, 0x81000003, 0x81000003]\n")
	b.WriteString("peers:\n")
	for i := 1; i <= 6; i++ {
		fmt.Fprintf(&b, "  \"vm:v%d\":\n    - ops: [getpub]\n      handles: &l%d [", i, i)
		for j := range 10 {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*l%d", i-1)
		}
		b.WriteString("]\n")
	}
	_, err := Parse([]byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "the policy's aliases expand to more than 100000 YAML nodes") {
		t.Errorf("Parse of nested aliases = %v; want an error about their expansion", err)
	}

	// A large file without aliases is fine.
	var flat strings.Builder
	flat.WriteString("default: []\npeers:\n")
	for i := range 8000 {
		fmt.Fprintf(&flat, "  \"cid:%d\":\n    - ops: [getpub, sign, readnv]\n      handles: [0x81000003, 0x81000005, 0x01c00002, 0x81000010-0x81000020]\n", i+3)
	}
	if _, err := Parse([]byte(flat.String())); err != nil {
		t.Errorf("Parse of %d bytes without aliases: %v", flat.Len(), err)
	}
	if flat.Len() > maxFileSize {
		t.Errorf("the file without aliases is %d bytes, over the %d that LoadFile reads", flat.Len(), maxFileSize)
	}

	// One alias used a few times is fine.
	shared := "default: &std\n  - ops: [getpub]\n    handles: [0x81000003]\npeers:\n  \"vm:a\": *std\n  \"vm:b\": *std\n"
	if _, err := Parse([]byte(shared)); err != nil {
		t.Errorf("Parse of a shared grant list: %v", err)
	}
}

func TestLoadFileRejectsSpecialAndLargeFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "policy.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFile(fifo); err == nil || !strings.Contains(err.Error(), "is not a regular file") {
		t.Errorf("LoadFile of a FIFO = %v; want an error that it is not a regular file", err)
	}

	large := filepath.Join(dir, "large.yaml")
	data := append([]byte("default: []\n"), bytes.Repeat([]byte("# padding\n"), maxFileSize/10+1)...)
	if err := os.WriteFile(large, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFile(large); err == nil || !strings.Contains(err.Error(), "is larger than 1048576 bytes") {
		t.Errorf("LoadFile of %d bytes = %v; want an error about its size", len(data), err)
	}
}

func TestLifted(t *testing.T) {
	cases := []struct {
		name, text string
		want       []uint32
	}{
		{"no lists", "default: []\n", nil},
		{"empty never", "default: []\nnever: []\n", []uint32{vcom.HandleDeviceKeyCredential, vcom.HandleDiskKey1, vcom.HandleDiskKey2, vcom.HandleDiskKey3}},
		{"credential readable", "default: []\nnever: [0x01700000, 0x01800000, 0x01900000]\nowner_read: [0x01600000]\n", []uint32{vcom.HandleDeviceKeyCredential}},
		{"empty read_public_only", "default: []\nread_public_only: []\n", []uint32{vcom.HandleQuoteKey, vcom.HandleDeviceKey}},
		{"quote key never instead", "default: []\nread_public_only: [0x817FFFFF]\nnever: [0x01600000-0x01900000, 0x81000004]\n", nil},
	}
	for _, tc := range cases {
		if got := mustParse(t, tc.text).Lifted(); !slices.Equal(got, tc.want) {
			t.Errorf("%s: Lifted() = %x; want %x", tc.name, got, tc.want)
		}
	}
	example, err := LoadFile("../examples/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := example.Lifted(); len(got) != 0 {
		t.Errorf("examples/policy.yaml lifts %x; want nothing", got)
	}
}
