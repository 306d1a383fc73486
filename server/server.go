// Package server is the agent's HTTP API: it routes each guest request to
// its operation, enforces the body limit, decodes the protobuf body, asks
// the access policy, calls the TPM service, and maps every failure to a
// status and a one-line message.
package server

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/vcomlink/vcomlink/api/vcom"
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

// Config configures a Server. TPM and Policy are required.
type Config struct {
	TPM    TPM
	Policy policy.Checker
	Logger *slog.Logger // nil means slog.Default()

	// ReadHeaderTimeout bounds reading a request's headers, and ReadTimeout
	// the whole request including its body.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	// IdleTimeout closes a keep-alive connection that carries no request
	// for this long.
	IdleTimeout time.Duration
	// RequestTimeout bounds the time a request waits for and uses the TPM.
	RequestTimeout time.Duration
	// MaxHeaderBytes bounds the size of a request's headers.
	MaxHeaderBytes int
}

// Defaults for the limits in Config, used where a field is zero.
const (
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 10 * time.Second
	DefaultIdleTimeout       = 60 * time.Second
	DefaultRequestTimeout    = 60 * time.Second
	DefaultMaxHeaderBytes    = 8 << 10
)

// Server serves the guest API on any number of listeners.
type Server struct {
	cfg  Config
	log  *slog.Logger
	http *http.Server
}

// New returns a Server for cfg.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	setDefault(&cfg.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	setDefault(&cfg.ReadTimeout, DefaultReadTimeout)
	setDefault(&cfg.IdleTimeout, DefaultIdleTimeout)
	setDefault(&cfg.RequestTimeout, DefaultRequestTimeout)
	if cfg.MaxHeaderBytes == 0 {
		cfg.MaxHeaderBytes = DefaultMaxHeaderBytes
	}

	s := &Server{cfg: cfg, log: cfg.Logger}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	s.http = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		Protocols:         &protocols,
		ConnContext:       withPeer,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
	}
	return s
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d == 0 {
		*d = v
	}
}

// Serve accepts guest connections on l until Shutdown. Listeners from
// package transport identify each peer; on any other listener the peer is
// its remote address.
func (s *Server) Serve(l net.Listener) error {
	return s.http.Serve(l)
}

// Shutdown stops accepting connections and waits for requests in flight to
// finish, or for ctx to end.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.http.Shutdown(ctx)
}

// Handler returns the guest API as an http.Handler.
func (s *Server) Handler() http.Handler {
	// An exact-match table, not http.ServeMux: the mux answers paths such
	// as "/tpm//sign" with a redirect, and a guest should get 404.
	handlers := make(map[string]http.Handler)
	for _, r := range s.routes() {
		handlers[r.path] = r.handler
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, ok := handlers[r.URL.Path]
		if !ok {
			s.notFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

type peerKey struct{}

func withPeer(ctx context.Context, c net.Conn) context.Context {
	peer, ok := transport.PeerOf(c)
	if !ok {
		peer = transport.Peer{Network: c.RemoteAddr().Network(), Addr: c.RemoteAddr().String()}
	}
	return context.WithValue(ctx, peerKey{}, peer)
}

// peerOf returns the identity of the peer that sent r.
func peerOf(r *http.Request) transport.Peer {
	peer, _ := r.Context().Value(peerKey{}).(transport.Peer)
	return peer
}
