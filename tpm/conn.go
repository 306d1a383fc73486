package tpm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// DeadlineSender is a TPM connection that can bound the time of one
// command itself, as a socket can. The service uses it to enforce the
// command timeout without a goroutine and a timer for each command.
type DeadlineSender interface {
	// SendDeadline sends cmd and returns the response, or an error that
	// wraps os.ErrDeadlineExceeded if the response has not arrived by
	// deadline.
	SendDeadline(cmd []byte, deadline time.Time) ([]byte, error)
}

// errCommandTooLarge is the error for a command longer than the TPM's
// TPM_PT_MAX_COMMAND_SIZE, which is never sent.
var errCommandTooLarge = errors.New("command too large for the TPM")

// Opener opens a new connection to the TPM. The Service calls it at start
// and again after a connection fails.
type Opener func() (transport.TPMCloser, error)

// Retry limits for the TPM's warnings that ask the caller to send a command
// again (TPM_RC_RETRY, TPM_RC_YIELDED, TPM_RC_TESTING).
const (
	retryFirstDelay = time.Millisecond
	retryMaxDelay   = 100 * time.Millisecond
)

// reconnectInterval is the least time between two attempts to reopen a lost
// TPM connection, so that a flood of requests does not become a flood of
// connection attempts.
const reconnectInterval = 500 * time.Millisecond

// conn is the agent's one connection to the TPM. It implements
// transport.TPM for go-tpm's commands and adds a per-command timeout,
// retries of the TPM's retry warnings, and reconnection after a failure.
// The scheduler lets one goroutine at a time call Send, so conn needs no
// lock except around the fields that status readers see.
type conn struct {
	open    Opener
	timeout time.Duration
	log     *slog.Logger

	tpm         transport.TPMCloser // nil while disconnected
	connecting  chan connectResult  // the result of the attempt under way, or nil
	lastAttempt time.Time           // last reconnection attempt
	downSince   time.Time           // start of the current outage, zero when up
	retrying    bool                // a retry episode has been logged

	// maxCommand is the TPM's largest command, in bytes; 0 until the
	// service has read it. Send rejects a longer command, which a TPM
	// behind a stream socket, such as swtpm, could read as two commands.
	maxCommand int

	// outOfMemory records that the TPM responded to a command with
	// TPM_RC_OBJECT_MEMORY or TPM_RC_SESSION_MEMORY since the service last
	// cleared it.
	outOfMemory bool

	// observe, if not nil, receives each command's code, the response code
	// and the time the TPM took.
	observe func(command, rc uint32, d time.Duration)

	mu      sync.Mutex
	healthy bool
	live    transport.TPMCloser // the open connection, for abort; guarded by mu
	aborted chan struct{}       // closed by abort
}

func newConn(open Opener, timeout time.Duration, log *slog.Logger) *conn {
	return &conn{open: open, timeout: timeout, log: log, aborted: make(chan struct{})}
}

// setLive records the open connection for abort.
func (c *conn) setLive(t transport.TPMCloser) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.live = t
}

// errAborted is the error of a command that abort cut off.
var errAborted = fmt.Errorf("%w: the agent is shutting down", ErrUnavailable)

// abort cuts off the command in flight, if any, and makes every later one
// fail, so that a shutdown need not wait for a TPM that does not respond.
// Unlike the other methods, it may be called while another goroutine
// sends a command.
func (c *conn) abort() {
	c.mu.Lock()
	select {
	case <-c.aborted:
	default:
		close(c.aborted)
	}
	t := c.live
	c.mu.Unlock()
	if t != nil {
		t.Close()
	}
}

// isAborted reports whether abort has been called.
func (c *conn) isAborted() bool {
	select {
	case <-c.aborted:
		return true
	default:
		return false
	}
}

// commandCode reads the command code from a TPM command header: tag (2
// bytes), size (4 bytes) and code (4 bytes), all big-endian.
func commandCode(cmd []byte) uint32 {
	if len(cmd) < 10 {
		return 0
	}
	return binary.BigEndian.Uint32(cmd[6:10])
}

// connectResult is the outcome of one connection attempt.
type connectResult struct {
	tpm transport.TPMCloser
	err error
}

// connect opens the TPM and flushes what an earlier connection left
// loaded, waiting at most the command timeout. An attempt that outlasts
// the wait goes on in the background, and the next call to connect waits
// for the same attempt, so a TPM that stops answering costs one goroutine,
// not one for each request.
func (c *conn) connect() error {
	if c.connecting == nil {
		result := make(chan connectResult, 1)
		c.connecting = result
		go func() {
			t, err := openAndFlush(c.open)
			result <- connectResult{t, err}
		}()
	}

	var timeout <-chan time.Time
	if c.timeout > 0 {
		timer := time.NewTimer(c.timeout)
		defer timer.Stop()
		timeout = timer.C
	}
	select {
	case r := <-c.connecting:
		c.connecting = nil
		if r.err != nil {
			return r.err
		}
		c.tpm = r.tpm
		c.setLive(r.tpm)
		if c.isAborted() {
			c.drop(errAborted)
			return errAborted
		}
		c.setHealthy(true)
		return nil
	case <-timeout:
		return fmt.Errorf("%w: connecting got no response within %s", ErrTimeout, c.timeout)
	case <-c.aborted:
		return errAborted
	}
}

func openAndFlush(open Opener) (transport.TPMCloser, error) {
	t, err := open()
	if err != nil {
		return nil, err
	}
	if _, err := flushLoaded(t); err != nil {
		t.Close()
		return nil, fmt.Errorf("flush objects left loaded in the TPM: %w", err)
	}
	return t, nil
}

// Send sends one command and returns the TPM's response. TPM error codes are
// in the response, as go-tpm expects; the error is for failures to reach
// the TPM and wraps ErrUnavailable or ErrTimeout.
func (c *conn) Send(cmd []byte) ([]byte, error) {
	if c.isAborted() {
		return nil, errAborted
	}
	if c.maxCommand > 0 && len(cmd) > c.maxCommand {
		return nil, fmt.Errorf("%w: the command is %d bytes, and the TPM accepts at most %d", errCommandTooLarge, len(cmd), c.maxCommand)
	}
	if err := c.ensureConnected(); err != nil {
		return nil, err
	}

	delay := retryFirstDelay
	deadline := time.Now().Add(c.timeout)
	for {
		start := time.Now()
		rsp, err := c.sendOnce(cmd)
		if err != nil {
			return nil, err
		}
		rc := responseCode(rsp)
		if rc == tpm2.TPMRCObjectMemory || rc == tpm2.TPMRCSessionMemory {
			c.outOfMemory = true
		}
		if c.observe != nil {
			c.observe(commandCode(cmd), uint32(rc), time.Since(start))
		}
		if !isRetryWarning(rc) {
			if c.retrying {
				c.retrying = false
				c.log.Info("TPM accepts commands again after asking for a retry")
			}
			return rsp, nil
		}
		if !c.retrying {
			c.retrying = true
			c.log.Warn("TPM asked for a command to be retried; retrying with backoff", "rc", rc.Error())
		}
		if c.timeout > 0 && time.Now().Add(delay).After(deadline) {
			return nil, fmt.Errorf("%w: the TPM still asks for a retry after %s (%v)", ErrUnavailable, c.timeout, rc)
		}
		select {
		case <-time.After(delay):
		case <-c.aborted:
			return nil, errAborted
		}
		delay = min(2*delay, retryMaxDelay)
	}
}

// ensureConnected reconnects a lost connection, at most once each
// reconnectInterval unless an attempt is still under way. A failure wraps
// ErrUnavailable, or ErrTimeout when the TPM did not answer in time; it is
// logged at debug level, because drop logged the outage.
func (c *conn) ensureConnected() error {
	if c.tpm != nil {
		return nil
	}
	if c.connecting == nil && time.Since(c.lastAttempt) < reconnectInterval {
		return fmt.Errorf("%w: no connection to the TPM since %s", ErrUnavailable, c.downSince.Format(time.RFC3339))
	}
	if c.connecting == nil {
		c.lastAttempt = time.Now()
	}
	if err := c.connect(); err != nil {
		c.log.Debug("reconnecting to the TPM failed", "err", err)
		if errors.Is(err, ErrTimeout) {
			return fmt.Errorf("reconnecting: %w", err)
		}
		return fmt.Errorf("%w: reconnecting: %v", ErrUnavailable, err)
	}
	c.log.Info("reconnected to the TPM", "outage", time.Since(c.downSince).Round(time.Millisecond))
	c.downSince = time.Time{}
	return nil
}

func (c *conn) sendOnce(cmd []byte) ([]byte, error) {
	if d, ok := c.tpm.(DeadlineSender); ok && c.timeout > 0 {
		rsp, err := d.SendDeadline(cmd, time.Now().Add(c.timeout))
		if err != nil && c.isAborted() {
			c.drop(errAborted)
			return nil, errAborted
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err := fmt.Errorf("%w: no response within %s", ErrTimeout, c.timeout)
			c.drop(err)
			return nil, err
		}
		if err != nil {
			c.drop(err)
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		return rsp, nil
	}
	if c.timeout <= 0 {
		rsp, err := c.tpm.Send(cmd)
		if err != nil {
			c.drop(err)
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		return rsp, nil
	}

	type result struct {
		rsp []byte
		err error
	}
	done := make(chan result, 1)
	t := c.tpm
	go func() {
		rsp, err := t.Send(cmd)
		done <- result{rsp, err}
	}()

	timer := time.NewTimer(c.timeout)
	defer timer.Stop()
	select {
	case <-c.aborted:
		c.drop(errAborted)
		return nil, errAborted
	case r := <-done:
		if r.err != nil {
			c.drop(r.err)
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, r.err)
		}
		return r.rsp, nil
	case <-timer.C:
		err := fmt.Errorf("%w: no response within %s", ErrTimeout, c.timeout)
		c.drop(err)
		return nil, err
	}
}

// drop closes a connection that failed, so that the next command reconnects.
func (c *conn) drop(cause error) {
	if c.tpm == nil {
		return
	}
	if !c.isAborted() {
		c.log.Error("lost the connection to the TPM; requests fail with 503 or 504 until it is back", "err", cause)
	}
	c.setLive(nil)
	c.tpm.Close()
	c.tpm = nil
	c.downSince = time.Now()
	c.lastAttempt = time.Time{}
	c.setHealthy(false)
}

// close closes the connection. A connection attempt still under way is
// closed when it completes.
func (c *conn) close() error {
	c.setHealthy(false)
	if c.connecting != nil {
		go func(result <-chan connectResult) {
			if r := <-result; r.tpm != nil {
				r.tpm.Close()
			}
		}(c.connecting)
		c.connecting = nil
	}
	if c.tpm == nil {
		return nil
	}
	c.setLive(nil)
	err := c.tpm.Close()
	c.tpm = nil
	return err
}

func (c *conn) setHealthy(v bool) {
	c.mu.Lock()
	c.healthy = v
	c.mu.Unlock()
}

// Healthy reports whether the last command reached the TPM.
func (c *conn) Healthy() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.healthy
}

// responseCode reads the response code from a TPM response header: tag (2
// bytes), size (4 bytes), code (4 bytes), all big-endian.
func responseCode(rsp []byte) tpm2.TPMRC {
	if len(rsp) < 10 {
		return tpm2.TPMRCSuccess
	}
	return tpm2.TPMRC(binary.BigEndian.Uint32(rsp[6:10]))
}

func isRetryWarning(rc tpm2.TPMRC) bool {
	return rc == tpm2.TPMRCRetry || rc == tpm2.TPMRCYielded || rc == tpm2.TPMRCTesting
}

// flushLoaded flushes every transient object and session. It runs on a
// new connection: a socket TPM such as swtpm keeps what an earlier
// connection loaded, and through the kernel's resource manager only this
// connection's own handles are visible, so nothing of another user is
// touched.
func flushLoaded(t transport.TPM) (int, error) {
	handles, err := loadedHandles(t)
	if err != nil {
		return 0, err
	}
	for _, h := range handles {
		_, err := tpm2.FlushContext{FlushHandle: h}.Execute(t)
		if err != nil && !errors.Is(err, tpm2.TPMRCHandle) {
			return 0, fmt.Errorf("flush %s: %w", FormatHandle(uint32(h)), err)
		}
	}
	return len(handles), nil
}

// loadedHandles lists the transient objects, the loaded sessions and the
// saved sessions in the TPM. GetCapability lists loaded sessions from
// TPM_HT_LOADED_SESSION (0x02) and saved ones from TPM_HT_SAVED_SESSION
// (0x03), each with their HMAC (0x02) or policy (0x03) session handles. No
// TPM holds more than 64 of either, so one call for each suffices.
func loadedHandles(t transport.TPM) ([]tpm2.TPMHandle, error) {
	var handles []tpm2.TPMHandle
	seen := make(map[tpm2.TPMHandle]bool)
	for _, first := range []tpm2.TPMHT{tpm2.TPMHTTransient, tpm2.TPMHTHMACSession, tpm2.TPMHTPolicySession} {
		rsp, err := tpm2.GetCapability{
			Capability:    tpm2.TPMCapHandles,
			Property:      uint32(first) << 24,
			PropertyCount: 64,
		}.Execute(t)
		if err != nil {
			return nil, fmt.Errorf("list loaded handles: %w", err)
		}
		list, err := rsp.CapabilityData.Data.Handles()
		if err != nil {
			return nil, fmt.Errorf("list loaded handles: %w", err)
		}
		for _, h := range list.Handle {
			switch handleType(uint32(h)) {
			case tpm2.TPMHTTransient, tpm2.TPMHTHMACSession, tpm2.TPMHTPolicySession:
				if !seen[h] {
					seen[h] = true
					handles = append(handles, h)
				}
			}
		}
	}
	return handles, nil
}
