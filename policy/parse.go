package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"gopkg.in/yaml.v3"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/transport"
)

// FileError is a mistake in a policy file, at a line.
type FileError struct {
	Path string // the file, or empty for Parse
	Line int    // 1-based; 0 when the mistake concerns the whole file
	Msg  string
}

func (e *FileError) Error() string {
	var where string
	switch {
	case e.Path != "" && e.Line > 0:
		where = fmt.Sprintf("%s:%d", e.Path, e.Line)
	case e.Path != "":
		where = e.Path
	case e.Line > 0:
		where = fmt.Sprintf("line %d", e.Line)
	default:
		return e.Msg
	}
	return where + ": " + e.Msg
}

func errorAt(n *yaml.Node, format string, args ...any) *FileError {
	return &FileError{Line: n.Line, Msg: fmt.Sprintf(format, args...)}
}

// LoadFile reads and checks the policy file at path. A mistake is a
// *FileError that names the file and the line.
func LoadFile(path string) (*File, error) {
	data, err := readPolicyFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the access policy: %w", err)
	}
	f, err := Parse(data)
	if err != nil {
		var fe *FileError
		if errors.As(err, &fe) {
			fe.Path = path
		}
		return nil, err
	}
	return f, nil
}

// maxFileSize is the largest policy file, in bytes.
const maxFileSize = 1 << 20

// readPolicyFile reads a regular file of at most maxFileSize bytes. A FIFO
// or a device could block the reload that reads it.
func readPolicyFile(path string) ([]byte, error) {
	// O_NONBLOCK keeps the open of a FIFO from waiting for a writer.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxFileSize)
	}
	return data, nil
}

// maxAliasNodes is the most YAML nodes that a policy's aliases may add
// once they are expanded, so that a few nested aliases cannot make the
// agent build a policy of gigabytes. A file without aliases adds none.
const maxAliasNodes = 100000

// plainSize returns the number of nodes of n, without expanding aliases.
func plainSize(n *yaml.Node) int {
	size := 1
	for _, c := range n.Content {
		size += plainSize(c)
	}
	return size
}

// expandedSize returns the number of nodes of n with its aliases
// expanded, counting at most up to limit.
func expandedSize(n *yaml.Node, memo map[*yaml.Node]int, limit int) int {
	if size, ok := memo[n]; ok {
		return size
	}
	memo[n] = limit + 1 // an alias that contains itself counts as too large
	size := 1
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		size += expandedSize(n.Alias, memo, limit)
	}
	for _, c := range n.Content {
		if size > limit {
			break
		}
		size += expandedSize(c, memo, limit)
	}
	size = min(size, limit+1)
	memo[n] = size
	return size
}

// The keys of a policy file and of a grant.
var (
	topKeys   = []string{"never", "read_public_only", "owner_read", "default", "peers"}
	grantKeys = []string{"ops", "handles"}
)

// yamlLine matches the line number in the errors of the YAML parser, such
// as "yaml: line 3: did not find expected key".
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// Parse reads a policy file's contents. A mistake is a *FileError that
// names the line. Unknown keys, unknown operations, malformed handles,
// handles of a type that no guest operation takes, and duplicate keys are
// all mistakes.
func Parse(data []byte) (*File, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &FileError{Msg: "the access policy is empty; write at least a default entry (\"default: []\" grants nothing)"}
		}
		return nil, yamlError(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, yamlError(err)
		}
		return nil, errorAt(&extra, "the file holds a second YAML document; write the whole policy as one document")
	}

	if limit := plainSize(&doc) + maxAliasNodes; expandedSize(&doc, make(map[*yaml.Node]int), limit) > limit {
		return nil, &FileError{Msg: fmt.Sprintf("the policy's aliases expand to more than %d YAML nodes; write it with fewer nested aliases", maxAliasNodes)}
	}
	root := resolve(doc.Content[0])
	if root.Kind != yaml.MappingNode {
		return nil, errorAt(root, "the access policy must be a mapping with the keys %s", strings.Join(topKeys, ", "))
	}
	p := &parser{file: &File{Peers: make(map[string][]Grant)}}
	if err := p.top(root); err != nil {
		return nil, err
	}
	return p.file, nil
}

// yamlError turns an error of the YAML parser into a *FileError.
//
// NOTE: gopkg.in/yaml.v3 v3.0.1 reports some syntax errors, such as an
// unclosed bracket or a key at the wrong indent, one line before the line
// that holds the mistake.
func yamlError(err error) error {
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &FileError{Line: line, Msg: "invalid YAML: " + m[2]}
	}
	return &FileError{Msg: "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
}

// resolve follows aliases to the node they name.
func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

type parser struct {
	file *File
	// ownerReadLines keeps the line of each owner_read entry, for the check
	// against the never list that runs after the whole file is read.
	ownerReadLines map[uint32]int
}

// mapping calls fn for each key and value of the mapping n, after checking
// that every key is one of known (any key when known is nil) and appears
// once.
func mapping(n *yaml.Node, what string, known []string, fn func(key string, keyNode, value *yaml.Node) error) error {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		return errorAt(n, "%s must be a mapping", what)
	}
	seen := make(map[string]int)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return errorAt(k, "a key of %s must be a plain word", what)
		}
		if known != nil && !slices.Contains(known, k.Value) {
			return errorAt(k, "unknown key %q in %s; the keys are %s", k.Value, what, strings.Join(known, ", "))
		}
		if line, dup := seen[k.Value]; dup {
			return errorAt(k, "key %q appears a second time in %s (first on line %d)", k.Value, what, line)
		}
		seen[k.Value] = k.Line
		if err := fn(k.Value, k, v); err != nil {
			return err
		}
	}
	return nil
}

// list returns the items of a sequence. A single scalar counts as a
// sequence of one, so that "ops: all" reads like "ops: [all]".
func list(n *yaml.Node, what string) ([]*yaml.Node, error) {
	n = resolve(n)
	switch {
	case n.Kind == yaml.SequenceNode:
		items := make([]*yaml.Node, len(n.Content))
		for i, item := range n.Content {
			items[i] = resolve(item)
		}
		return items, nil
	case n.Kind == yaml.ScalarNode && n.Tag != "!!null":
		return []*yaml.Node{n}, nil
	}
	return nil, errorAt(n, "%s must be a list", what)
}

func (p *parser) top(root *yaml.Node) error {
	var never, readPublicOnly []Range
	var neverSet, readPublicOnlySet bool
	err := mapping(root, "the access policy", topKeys, func(key string, _, v *yaml.Node) error {
		var err error
		switch key {
		case "never":
			never, err = handleList(v, "never", anyGuestHandle)
			neverSet = true
		case "read_public_only":
			readPublicOnly, err = handleList(v, "read_public_only", persistentOnly)
			readPublicOnlySet = true
		case "owner_read":
			err = p.ownerRead(v)
		case "default":
			p.file.Default, err = grants(v, "the default entry")
			p.file.HasDefault = true
		case "peers":
			err = p.peers(v)
		}
		return err
	})
	if err != nil {
		return err
	}

	if !neverSet {
		never = BuiltinNever()
	}
	if !readPublicOnlySet {
		readPublicOnly = BuiltinReadPublicOnly()
	}
	p.file.Never = never
	p.file.ReadPublicOnly = readPublicOnly

	for h, line := range p.ownerReadLines {
		if rangesContain(never, h) {
			source := "the never list"
			if !neverSet {
				source = "the built-in never list, which applies because the file has none"
			}
			return &FileError{Line: line, Msg: fmt.Sprintf(
				"owner_read names 0x%08x, but %s contains it, so no guest can read it; remove it from one of the two", h, source)}
		}
	}
	return nil
}

func (p *parser) ownerRead(v *yaml.Node) error {
	items, err := list(v, "owner_read")
	if err != nil {
		return err
	}
	p.file.OwnerRead = make(map[uint32]bool)
	p.ownerReadLines = make(map[uint32]int)
	for _, item := range items {
		r, err := handleRange(item, "owner_read", nvOnly)
		if err != nil {
			return err
		}
		if r.First != r.Last {
			return errorAt(item, "owner_read takes single NV indices, not the range %s, so that owner authorisation is used only for indices the host names", r)
		}
		p.file.OwnerRead[r.First] = true
		p.ownerReadLines[r.First] = item.Line
	}
	return nil
}

func (p *parser) peers(v *yaml.Node) error {
	return mapping(v, "peers", nil, func(peer string, keyNode, value *yaml.Node) error {
		if err := checkPeer(peer); err != nil {
			return errorAt(keyNode, "%v", err)
		}
		g, err := grants(value, "the entry of peer "+peer)
		if err != nil {
			return err
		}
		p.file.Peers[peer] = g
		return nil
	})
}

// checkPeer checks that s is a peer identity as transport.Peer.ID writes
// it. Another spelling of the same peer, such as cid:05, would never match,
// and the peer would get the default entry instead.
func checkPeer(s string) error {
	kind, rest, _ := strings.Cut(s, ":")
	switch kind {
	case "cid":
		cid, err := strconv.ParseUint(rest, 10, 32)
		if err != nil {
			return fmt.Errorf("peer %q: the CID must be a decimal number, as in cid:5", s)
		}
		if canonical := strconv.FormatUint(cid, 10); canonical != rest {
			return fmt.Errorf("peer %q: write it as cid:%s, as the agent names the peer", s, canonical)
		}
		return nil
	case "vm":
		if err := transport.CheckVMName(rest); err != nil {
			return fmt.Errorf("peer %q: %v; it must be the vm= name of a Unix listener, as in vm:web", s, err)
		}
		return nil
	case "unix":
		if !strings.HasPrefix(rest, "/") {
			return fmt.Errorf("peer %q: a Unix listener without a VM name is named by its absolute socket path, as in unix:/run/vcomlink.sock", s)
		}
		if canonical := filepath.Clean(rest); canonical != rest {
			return fmt.Errorf("peer %q: write it as unix:%s, as the agent names the peer", s, canonical)
		}
		return nil
	case "tcp":
		ip := net.ParseIP(rest)
		if ip == nil {
			return fmt.Errorf("peer %q: a TCP peer is named by its IP address, as in tcp:127.0.0.1", s)
		}
		if canonical := ip.String(); canonical != rest {
			return fmt.Errorf("peer %q: write it as tcp:%s, as the agent names the peer", s, canonical)
		}
		return nil
	}
	return fmt.Errorf("%q is not a peer identity; write cid:N, vm:NAME, unix:/path or tcp:IP", s)
}

// grants reads a list of grants.
func grants(v *yaml.Node, what string) ([]Grant, error) {
	v = resolve(v)
	if v.Kind != yaml.SequenceNode {
		return nil, errorAt(v, "%s must be a list of grants, each with ops and handles (write [] to grant nothing)", what)
	}
	out := make([]Grant, 0, len(v.Content))
	for _, item := range v.Content {
		g, err := grant(resolve(item), what)
		if err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, nil
}

func grant(n *yaml.Node, what string) (Grant, error) {
	g := Grant{Line: n.Line}
	var hasOps, hasHandles bool
	var explicitOps bool
	err := mapping(n, "a grant of "+what, grantKeys, func(key string, _, v *yaml.Node) error {
		var err error
		switch key {
		case "ops":
			hasOps = true
			g.Ops, explicitOps, err = operations(v)
		case "handles":
			hasHandles = true
			g.Handles, err = handleList(v, "handles", anyGuestHandle)
		}
		return err
	})
	if err != nil {
		return g, err
	}
	if !hasOps {
		return g, errorAt(n, "the grant has no ops; list the operations it allows, or all")
	}
	if !hasHandles {
		return g, errorAt(n, "the grant has no handles; list the handles and ranges it allows")
	}
	if explicitOps {
		if err := checkOpsFitHandles(n, g); err != nil {
			return g, err
		}
	}
	return g, nil
}

// operations reads an ops list. explicit is false when the list contains all.
func operations(v *yaml.Node) (ops []Operation, explicit bool, err error) {
	items, err := list(v, "ops")
	if err != nil {
		return nil, false, err
	}
	if len(items) == 0 {
		return nil, false, errorAt(v, "ops is empty; list the operations the grant allows")
	}
	names := make([]string, len(Operations))
	for i, op := range Operations {
		names[i] = string(op)
	}
	explicit = true
	for _, item := range items {
		if item.Kind != yaml.ScalarNode {
			return nil, false, errorAt(item, "an operation must be a plain word")
		}
		if item.Value == "all" {
			explicit = false
			continue
		}
		if !slices.Contains(names, item.Value) {
			return nil, false, errorAt(item, "unknown operation %q; the operations are all, %s", item.Value, strings.Join(names, ", "))
		}
		ops = append(ops, Operation(item.Value))
	}
	if !explicit {
		ops = append([]Operation(nil), Operations...)
	}
	return ops, explicit, nil
}

// checkOpsFitHandles checks that each handle range of g is of a type that
// one of g's operations takes: readnv takes NV indices and the other
// operations persistent keys. A grant of sign on an NV index allows nothing
// and is most likely a typing mistake.
func checkOpsFitHandles(n *yaml.Node, g Grant) error {
	var onKeys, onNV bool
	for _, op := range g.Ops {
		if op == ReadNV {
			onNV = true
		} else {
			onKeys = true
		}
	}
	for _, r := range g.Handles {
		switch r.First >> 24 {
		case nvType:
			if !onNV {
				return errorAt(n, "the grant allows %s on %s, an NV index, but only readnv operates on NV indices", joinOps(g.Ops), r)
			}
		case persistentType:
			if !onKeys {
				return errorAt(n, "the grant allows readnv on %s, a persistent key, but readnv operates only on NV indices", r)
			}
		}
	}
	return nil
}

func joinOps(ops []Operation) string {
	s := make([]string, len(ops))
	for i, op := range ops {
		s[i] = string(op)
	}
	return strings.Join(s, ", ")
}

// The handle types (TPM_HT) that guest operations take.
const (
	nvType         = 0x01 // TPM_HT_NV_INDEX
	persistentType = 0x81 // TPM_HT_PERSISTENT
)

// handleKinds is the set of handle types that a list accepts.
type handleKinds int

const (
	anyGuestHandle handleKinds = iota // persistent keys and NV indices
	persistentOnly
	nvOnly
)

func handleList(v *yaml.Node, what string, kinds handleKinds) ([]Range, error) {
	items, err := list(v, what)
	if err != nil {
		return nil, err
	}
	out := make([]Range, 0, len(items))
	for _, item := range items {
		r, err := handleRange(item, what, kinds)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// handleRange reads a handle ("0x81000003" or decimal) or an inclusive
// range ("0x81000000-0x81ffffff") of one handle type.
func handleRange(n *yaml.Node, what string, kinds handleKinds) (Range, error) {
	if n.Kind != yaml.ScalarNode {
		return Range{}, errorAt(n, "an entry of %s must be a handle such as 0x81000003 or a range such as 0x81000000-0x81ffffff", what)
	}
	first, last, isRange := strings.Cut(n.Value, "-")
	lo, err := vcom.ParseHandle(strings.TrimSpace(first))
	if err != nil {
		return Range{}, errorAt(n, "in %s: %v", what, err)
	}
	hi := lo
	if isRange {
		if hi, err = vcom.ParseHandle(strings.TrimSpace(last)); err != nil {
			return Range{}, errorAt(n, "in %s: %v", what, err)
		}
	}
	r := Range{lo, hi}
	if lo > hi {
		return r, errorAt(n, "the range %q in %s ends before it starts; write the lower handle first", n.Value, what)
	}
	if lo>>24 != hi>>24 {
		return r, errorAt(n, "the range %q in %s spans handle types 0x%02x and 0x%02x; a range must stay within one type", n.Value, what, lo>>24, hi>>24)
	}

	switch t := lo >> 24; {
	case kinds == persistentOnly && t != persistentType:
		return r, errorAt(n, "%s in %s is not a persistent key handle (0x81xxxxxx)", r, what)
	case kinds == nvOnly && t != nvType:
		return r, errorAt(n, "%s in %s is not an NV index (0x01xxxxxx)", r, what)
	case t != persistentType && t != nvType:
		return r, errorAt(n, "%s in %s is neither a persistent key (0x81xxxxxx) nor an NV index (0x01xxxxxx); guests use no other handles", r, what)
	}
	return r, nil
}
