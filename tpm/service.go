// Package tpm is the agent's TPM service: the six guest operations on
// go-tpm's tpm2 API, run one at a time over one connection to the TPM, with
// turns taken fairly between peers.
package tpm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/vcomlink/vcomlink/api/vcom"
)

// errClosed is returned for requests that arrive after Close.
var errClosed = fmt.Errorf("%w: the agent is shutting down", ErrUnavailable)

// Config is the host's configuration of the service.
type Config struct {
	// EK is the endorsement key that activatecred decrypts credentials with,
	// and whose public area activatecredparams returns.
	EK uint32
	// AIK is the attestation key that signs certifications.
	AIK uint32
	// Auth holds the auth values the host configured, by handle: objects, NV
	// indices, and hierarchies such as TPM_RH_ENDORSEMENT. A handle present
	// with an empty value is configured; a handle absent is not, and the
	// agent never presents an authorisation to such a handle if it lacks
	// noDA.
	Auth map[uint32][]byte
	// OwnerReadNV lists the NV indices that readnv may read with owner
	// authorisation (Auth[TPM_RH_OWNER]). Any other index is read only with
	// its own authorisation.
	OwnerReadNV map[uint32]bool
	// CommandTimeout bounds each TPM command; zero means no bound.
	CommandTimeout time.Duration
	// ObserveCommand, if not nil, receives each TPM command's code, its
	// response code and the time the TPM took, for metrics. It runs on the
	// goroutine that sends the command, so it must not block.
	ObserveCommand func(command, rc uint32, d time.Duration)
	// Logger receives the service's logs; nil means slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns the configuration for the well-known layout, with no
// auth values configured.
func DefaultConfig() Config {
	return Config{
		EK:             vcom.HandleEK,
		AIK:            vcom.HandleAIK,
		CommandTimeout: 30 * time.Second,
	}
}

// Service runs the guest operations on one TPM. Its methods are safe for
// concurrent use.
type Service struct {
	cfg   Config
	log   *slog.Logger
	conn  *conn
	sched *scheduler

	// ownerReadNV is Config.OwnerReadNV, replaced by SetOwnerReadNV.
	ownerReadNV atomic.Pointer[map[uint32]bool]

	// Buffer limits of this TPM, read at start.
	inputBuffer int // TPM_PT_INPUT_BUFFER: the largest TPM2B_MAX_BUFFER
	nvBufferMax int // TPM_PT_NV_BUFFER_MAX: the largest NV read or write
	maxCommand  int // TPM_PT_MAX_COMMAND_SIZE: the largest command
}

// New connects to the TPM with open and starts the service. Close releases
// the connection.
func New(open Opener, cfg Config) (*Service, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	c := newConn(open, cfg.CommandTimeout, log)
	c.observe = cfg.ObserveCommand
	if err := c.connect(); err != nil {
		c.close()
		return nil, err
	}

	s := &Service{cfg: cfg, log: log, conn: c}
	s.SetOwnerReadNV(cfg.OwnerReadNV)
	if err := s.readProperties(); err != nil {
		c.close()
		return nil, err
	}
	s.sched = newScheduler(c)
	return s, nil
}

// Close waits for queued operations to finish and closes the TPM
// connection. Operations that arrive later fail with ErrUnavailable.
func (s *Service) Close() error {
	s.sched.close()
	return s.conn.close()
}

// Abort fails the queued operations, cuts off the TPM command in flight and
// makes every later operation fail with ErrUnavailable, without waiting for
// the TPM. It is for a shutdown whose grace period has run out; Close
// still follows it. Abort may be called while operations run.
func (s *Service) Abort() {
	s.sched.abort()
	s.conn.abort()
}

// SetOwnerReadNV replaces Config.OwnerReadNV, the NV indices that readnv
// reads with owner authorisation, as a reload of the host's access policy
// requires. An operation reads the list when its turn at the TPM comes.
func (s *Service) SetOwnerReadNV(indices map[uint32]bool) {
	copied := make(map[uint32]bool, len(indices))
	for h, ok := range indices {
		if ok {
			copied[h] = true
		}
	}
	s.ownerReadNV.Store(&copied)
}

// Healthy reports whether the last TPM command reached the TPM.
func (s *Service) Healthy() bool {
	return s.conn.Healthy()
}

// QueueDepth returns the number of operations waiting for the TPM, by peer.
func (s *Service) QueueDepth() map[string]int {
	return s.sched.Depth()
}

func (s *Service) readProperties() error {
	props := []struct {
		id    tpm2.TPMPT
		value *int
	}{
		{tpm2.TPMPTInputBuffer, &s.inputBuffer},
		{tpm2.TPMPTNVBufferMax, &s.nvBufferMax},
		{tpm2.TPMPTMaxCommandSize, &s.maxCommand},
	}
	for _, p := range props {
		v, err := tpmProperty(s.conn, p.id)
		if err != nil {
			return err
		}
		if v < 64 {
			return fmt.Errorf("TPM reports a buffer size of %d for property 0x%x; the agent needs at least 64", v, uint32(p.id))
		}
		*p.value = int(v)
	}
	s.conn.maxCommand = s.maxCommand
	return nil
}

func tpmProperty(t transport.TPM, id tpm2.TPMPT) (uint32, error) {
	rsp, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapTPMProperties,
		Property:      uint32(id),
		PropertyCount: 1,
	}.Execute(t)
	if err != nil {
		return 0, fmt.Errorf("read TPM property 0x%x: %w", uint32(id), err)
	}
	props, err := rsp.CapabilityData.Data.TPMProperties()
	if err != nil {
		return 0, fmt.Errorf("read TPM property 0x%x: %w", uint32(id), err)
	}
	for _, p := range props.TPMProperty {
		if p.Property == id {
			return p.Value, nil
		}
	}
	return 0, fmt.Errorf("TPM does not report property 0x%x", uint32(id))
}

// run queues fn for peer and returns its error, classified for op and h.
func (s *Service) run(ctx context.Context, peer, op string, h uint32, fn func(t transport.TPM) error) error {
	err := s.sched.Do(ctx, peer, func(t transport.TPM) error {
		err := fn(t)
		if s.conn.outOfMemory {
			s.recoverMemory(t, op, h)
		}
		return err
	})
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return tpmError(op, h, op, err)
}

// recoverMemory flushes every transient object and session that the
// agent's connection has loaded, after the TPM reported that it has no
// room for another. Every operation flushes what it loads, so anything
// still loaded between operations is a leak, and without this it would
// keep every VM from the operations that need a session or an object.
// It runs in the turn of the operation that met the full TPM, after the
// operation has flushed its own handles.
func (s *Service) recoverMemory(t transport.TPM, op string, h uint32) {
	s.conn.outOfMemory = false
	n, err := flushLoaded(t)
	if err != nil {
		s.log.Error("the TPM had no room for another object or session, and flushing what this agent left loaded failed", "op", op, "handle", FormatHandle(h), "err", err)
		return
	}
	s.log.Warn("the TPM had no room for another object or session; flushed what this agent's connection left loaded", "op", op, "handle", FormatHandle(h), "flushed", n)
}

// object is a loaded persistent key as ReadPublic returns it.
type object struct {
	handle tpm2.TPMHandle
	public *tpm2.TPMTPublic
	raw    []byte // the TPMT_PUBLIC as the TPM sent it
	name   tpm2.TPM2BName
}

// readPublic sends ReadPublic for h and parses the public area. The parsed
// public area may be shared with other calls, so callers must not modify
// it.
func readPublic(t transport.TPM, op string, h uint32) (*object, error) {
	raw, name, err := sendReadPublic(t, h)
	if err != nil {
		return nil, tpmError(op, h, "ReadPublic", err)
	}
	pub, err := parsedPublics.parse(h, raw, func() (*tpm2.TPMTPublic, error) {
		return tpm2.Unmarshal[tpm2.TPMTPublic](raw)
	})
	if err != nil {
		return nil, newError(op, h, ErrTPM, "the TPM returned a public area that does not parse: %v", err)
	}
	return &object{
		handle: tpm2.TPMHandle(h),
		public: pub,
		raw:    raw,
		name:   name,
	}, nil
}

// publicCache keeps the last TPMT_PUBLIC read from each handle with its
// parse. go-tpm parses a public area by reflection, which took 29% of the
// agent's CPU in a profile under a getpub load on swtpm (BENCHMARKS.md).
// The TPM is still asked every time, and a parse is reused only for equal
// bytes, so a replaced key is parsed anew.
type publicCache struct {
	mu      sync.Mutex
	entries map[uint32]parsedPublic
}

type parsedPublic struct {
	raw    []byte
	public *tpm2.TPMTPublic
}

// maxPublicCache bounds the handles that publicCache keeps. It is ten
// times the six persistent keys of the host layout; past it the cache
// starts anew.
const maxPublicCache = 64

var parsedPublics = publicCache{entries: make(map[uint32]parsedPublic)}

// parse returns the parse of raw, the public area of h, from the cache, or
// calls contents to parse it.
func (c *publicCache) parse(h uint32, raw []byte, contents func() (*tpm2.TPMTPublic, error)) (*tpm2.TPMTPublic, error) {
	c.mu.Lock()
	e, ok := c.entries[h]
	c.mu.Unlock()
	if ok && bytes.Equal(e.raw, raw) {
		return e.public, nil
	}

	pub, err := contents()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if len(c.entries) >= maxPublicCache {
		clear(c.entries)
	}
	c.entries[h] = parsedPublic{raw: bytes.Clone(raw), public: pub}
	c.mu.Unlock()
	return pub, nil
}

// authHandle returns the authorisation for an object or NV index with the
// given noDA attribute. The agent presents the host's configured auth value,
// or an empty one; it refuses a handle without noDA that the host has not
// configured, because a wrong auth value on such a handle raises the TPM's
// dictionary-attack counter.
func (s *Service) authHandle(op string, h uint32, name tpm2.TPM2BName, noDA bool) (tpm2.AuthHandle, error) {
	auth, configured := s.cfg.Auth[h]
	if !noDA && !configured {
		return tpm2.AuthHandle{}, newError(op, h, ErrForbidden,
			"the handle lacks noDA, so a wrong auth value would raise the TPM's dictionary-attack counter, and the host has configured no auth value for it; the host operator must configure one before guests can use it")
	}
	return tpm2.AuthHandle{
		Handle: tpm2.TPMHandle(h),
		Name:   name,
		Auth:   tpm2.PasswordAuth(auth),
	}, nil
}

// flush flushes a transient object or session and logs a failure. The
// operation's own result is kept, but a leaked handle needs the operator's
// attention.
func (s *Service) flush(t transport.TPM, op string, h tpm2.TPMHandle) {
	_, err := tpm2.FlushContext{FlushHandle: h}.Execute(t)
	if err != nil {
		s.log.Error("flushing a TPM handle failed", "op", op, "handle", FormatHandle(uint32(h)), "err", err)
	}
}
