// Package server is the agent's HTTP API: it routes each guest request to
// its operation, enforces the size, time, connection and rate limits,
// decodes the protobuf body, checks the access policy, calls the TPM
// service, and maps every failure to a status and a one-line message.
package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/metrics"
	"github.com/vcomlink/vcomlink/policy"
	"github.com/vcomlink/vcomlink/transport"
)

// TPM is the TPM service the server calls, as *tpm.Service implements it.
// peer is the caller's identity, which the service uses to take turns
// between peers.
type TPM interface {
	GetPub(ctx context.Context, peer string, h uint32) (*vcom.TpmResponseGetPub, error)
	Sign(ctx context.Context, peer string, h uint32, data []byte) (*vcom.TpmResponseSign, error)
	ReadNV(ctx context.Context, peer string, h uint32) (*vcom.TpmResponseReadNv, error)
	ActivateCredParams(ctx context.Context, peer string, h uint32) (*vcom.TpmResponseActivateCredParams, error)
	ActivateCredential(ctx context.Context, peer string, aik uint32, cred, secret []byte) (*vcom.TpmResponseActivatedCred, error)
	Certify(ctx context.Context, peer string, h uint32, nonce []byte) (*vcom.TpmResponseCertify, error)
}

// Config configures a Server. TPM and Policy are required. A zero limit
// takes its default; for the connection and rate limits, a negative value
// means no limit.
type Config struct {
	TPM    TPM
	Policy policy.Checker
	Logger *slog.Logger // nil means slog.Default()
	// Metrics, if not nil, counts requests, refusals and open connections.
	Metrics *metrics.Metrics

	// ReadHeaderTimeout bounds reading a request's headers. A new
	// connection that sends no request is closed after this long.
	ReadHeaderTimeout time.Duration
	// BodyTimeout bounds reading a request's body, from the end of its
	// headers. The body is read whole before the request waits for the
	// TPM, so a slow body never holds the TPM.
	BodyTimeout time.Duration
	// WriteTimeout bounds writing a response.
	WriteTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that carries no request
	// for this long.
	IdleTimeout time.Duration
	// RequestTimeout bounds the time a request waits for and uses the TPM.
	RequestTimeout time.Duration
	// MaxHeaderBytes bounds the size of a request's headers; the request
	// line and what the server buffered of the body may add up to 4096
	// bytes before a request gets 431.
	MaxHeaderBytes int

	// MaxConnsPerPeer bounds the connections that one peer may have open:
	// the first request on each further connection, up to as many again,
	// gets 429, and connections beyond those are closed at once.
	MaxConnsPerPeer int
	// MaxConns bounds the connections of all peers together; connections
	// beyond it are closed at once.
	MaxConns int
	// RequestRate is the number of requests per second that each peer may
	// send over time, and RequestBurst the number it may send at once.
	// Requests over the rate get 429 with Retry-After.
	RequestRate  float64
	RequestBurst int

	// RefusalLogInterval is the period over which the log lines of
	// refusals (403, 429) and of TPM errors (500) are limited, each with a
	// budget of its own. In each period a peer gets one line for each
	// distinct refusal or error, up to a few, and one line at the end with
	// the count of the rest.
	RefusalLogInterval time.Duration
}

// Defaults for the limits in Config, used where a field is zero. The
// connection limits are sized for a host with a few dozen VMs: 1024
// connections are 32 for each of 32 VMs. 100 requests per second is more
// than a hardware TPM signs (an estimate: tens of RSA-2048 signatures a
// second), so a guest that keeps to its share of such a TPM never meets
// the rate limit.
const (
	DefaultReadHeaderTimeout  = 5 * time.Second
	DefaultBodyTimeout        = 10 * time.Second
	DefaultWriteTimeout       = 10 * time.Second
	DefaultIdleTimeout        = 60 * time.Second
	DefaultRequestTimeout     = 60 * time.Second
	DefaultMaxHeaderBytes     = 8 << 10
	DefaultMaxConnsPerPeer    = 32
	DefaultMaxConns           = 1024
	DefaultRequestRate        = 100
	DefaultRequestBurst       = 200
	DefaultRefusalLogInterval = time.Minute
)

// DefaultReadTimeout bounds reading a whole request in servers that take
// one bound for headers and body together.
//
// Deprecated: the guest API bounds headers and body apart; see
// DefaultReadHeaderTimeout and DefaultBodyTimeout.
const DefaultReadTimeout = 10 * time.Second

// Server serves the guest API on any number of listeners.
type Server struct {
	cfg      Config
	log      *slog.Logger
	handler  http.Handler
	conns    *transport.ConnLimiter
	rates    *rateLimiter
	refusals *refusalLog // 403 and 429, and connections closed at once
	failures *refusalLog // 500: failures of the TPM

	sweepOnce sync.Once
	stopOnce  sync.Once
	stop      chan struct{}

	mu        sync.Mutex
	listeners []net.Listener     // the listeners Serve accepts on
	open      map[*conn]struct{} // the open connections
	closing   bool               // idle connections are being closed
	draining  atomic.Bool        // Shutdown has begun
	inFlight  atomic.Int64       // requests in a handler
}

// New returns a Server for cfg.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	setDefault(&cfg.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	setDefault(&cfg.BodyTimeout, DefaultBodyTimeout)
	setDefault(&cfg.WriteTimeout, DefaultWriteTimeout)
	setDefault(&cfg.IdleTimeout, DefaultIdleTimeout)
	setDefault(&cfg.RequestTimeout, DefaultRequestTimeout)
	setDefault(&cfg.RefusalLogInterval, DefaultRefusalLogInterval)
	setDefault(&cfg.MaxHeaderBytes, DefaultMaxHeaderBytes)
	setDefault(&cfg.MaxConnsPerPeer, DefaultMaxConnsPerPeer)
	setDefault(&cfg.MaxConns, DefaultMaxConns)
	setDefault(&cfg.RequestRate, DefaultRequestRate)
	setDefault(&cfg.RequestBurst, DefaultRequestBurst)

	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger,
		rates:    newRateLimiter(cfg.RequestRate, cfg.RequestBurst),
		refusals: newRefusalLog(cfg.Logger, cfg.RefusalLogInterval, "further refusals were not logged"),
		failures: newRefusalLog(cfg.Logger, cfg.RefusalLogInterval, "further failed requests were not logged"),
		stop:     make(chan struct{}),
	}
	s.conns = transport.NewConnLimiter(cfg.MaxConnsPerPeer, cfg.MaxConns, s.logDroppedConn)

	s.open = make(map[*conn]struct{})
	s.handler = s.Handler()
	return s
}

func setDefault[T int | float64 | time.Duration](v *T, def T) {
	if *v == 0 {
		*v = def
	}
}

// Serve accepts guest connections on l until Shutdown, within the
// connection limits. Listeners from package transport identify each peer;
// on any other listener the peer is its remote address.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.draining.Load() {
		s.mu.Unlock()
		l.Close()
		return http.ErrServerClosed
	}
	s.listeners = append(s.listeners, l)
	s.mu.Unlock()

	s.sweepOnce.Do(func() { go s.sweep() })
	limited := s.conns.Listener(l)
	var delay time.Duration
	for {
		rwc, err := limited.Accept()
		if s.draining.Load() {
			if err == nil {
				rwc.Close()
			}
			return http.ErrServerClosed
		}
		var netErr net.Error
		if errors.As(err, &netErr) && netErr.Timeout() || isTemporary(err) {
			// Out of file descriptors or a similar passing failure: wait
			// and try again, as a server must not stop on it.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("accepting a guest connection failed; retrying", "err", err, "delay", delay)
			time.Sleep(delay)
			continue
		}
		if err != nil {
			return err
		}
		delay = 0
		go s.serveConn(rwc)
	}
}

// isTemporary reports an accept error that a server should wait out, such
// as EMFILE.
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// sweep logs the counts of refusals left out of the log, and drops the
// rate state of idle peers, once each RefusalLogInterval.
func (s *Server) sweep() {
	ticker := time.NewTicker(s.cfg.RefusalLogInterval)
	defer ticker.Stop()
	for {
		select {
		case now := <-ticker.C:
			s.refusals.flush()
			s.failures.flush()
			s.rates.forgetIdle(now)
		case <-s.stop:
			return
		}
	}
}

// drainPoll is how often Shutdown checks whether the requests in flight
// have finished.
const drainPoll = 5 * time.Millisecond

// Shutdown stops accepting connections and waits for requests in flight to
// finish, or for ctx to end. Meanwhile, requests that begin on connections
// that are already open get 503 with Retry-After and Connection: close.
// Then it closes the connections. It logs the counts of refusals that the
// log left out.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining.Store(true)
	for _, l := range s.listeners {
		l.Close()
	}
	s.mu.Unlock()
	s.stopOnce.Do(func() { close(s.stop) })

	ticker := time.NewTicker(drainPoll)
	defer ticker.Stop()
	for s.inFlight.Load() > 0 && ctx.Err() == nil {
		select {
		case <-ticker.C:
		case <-ctx.Done():
		}
	}

	// Close the idle connections, and wait for the others to finish the
	// request they began just now.
	s.mu.Lock()
	s.closing = true
	for c := range s.open {
		if c.idle {
			c.rwc.Close()
		}
	}
	s.mu.Unlock()
	var err error
	for s.openConns() > 0 {
		if ctx.Err() != nil {
			err = ctx.Err()
			break
		}
		select {
		case <-ticker.C:
		case <-ctx.Done():
		}
	}
	s.refusals.flush()
	s.failures.flush()
	return err
}

func (s *Server) openConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.open)
}

// Close closes every listener and connection at once, cutting off requests
// in flight. It is for the end of a shutdown whose grace period ran out.
func (s *Server) Close() error {
	s.mu.Lock()
	s.draining.Store(true)
	s.closing = true
	for _, l := range s.listeners {
		l.Close()
	}
	for c := range s.open {
		c.rwc.Close()
	}
	s.mu.Unlock()
	s.stopOnce.Do(func() { close(s.stop) })
	return nil
}

// Handler returns the guest API as an http.Handler. The connection limits
// apply only to connections that Serve accepts.
func (s *Server) Handler() http.Handler {
	// An exact-match table, not http.ServeMux: the mux redirects paths such
	// as "/tpm//sign", and a guest should get 404.
	routes := make(map[string]route)
	for _, r := range s.routes() {
		routes[r.path] = r
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.inFlight.Add(1)
		defer s.inFlight.Add(-1)
		ex := exchange{peer: connOf(r).peer.ID(), start: time.Now()}

		// The body's deadline holds for every request, also those refused
		// before their body is read, because the server reads what is left
		// of a small body after the handler returns.
		http.NewResponseController(w).SetReadDeadline(ex.start.Add(s.cfg.BodyTimeout))

		rt, found := routes[r.URL.Path]
		ex.op = rt.op
		if s.draining.Load() {
			w.Header().Set("Retry-After", retryAfterSeconds)
			w.Header().Set("Connection", "close")
			s.fail(w, r, ex, http.StatusServiceUnavailable, opPrefix(ex)+"the agent is shutting down; retry after "+retryAfterSeconds+"s", nil)
			return
		}
		if !s.admit(w, r, ex) {
			return
		}
		if !found {
			s.notFound(w, r, ex)
			return
		}
		rt.handle(w, r, ex)
	})
}

// connInfo is the server's record of one connection.
type connInfo struct {
	peer      transport.Peer
	overLimit error // a *transport.LimitError, or nil
}

type connKey struct{}

// connInfoOf identifies the peer of a connection. Listeners from package
// transport identify each peer; on any other listener the peer is its
// remote address.
func connInfoOf(c net.Conn) connInfo {
	info := connInfo{}
	if tc, ok := c.(*transport.Conn); ok {
		info.peer = tc.Peer
		info.overLimit = tc.OverLimit()
	} else {
		info.peer = transport.Peer{Network: c.RemoteAddr().Network(), Addr: c.RemoteAddr().String()}
	}
	return info
}

// connOf returns the record of the connection that carried r.
func connOf(r *http.Request) connInfo {
	info, _ := r.Context().Value(connKey{}).(connInfo)
	return info
}
