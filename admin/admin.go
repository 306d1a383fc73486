// Package admin serves the operator's endpoints: Prometheus metrics at
// /metrics, liveness at /healthz and readiness at /readyz. It listens only
// on a Unix socket or a loopback TCP address, never on vsock, so that no
// guest can reach it.
package admin

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vcomlink/vcomlink/metrics"
	"github.com/vcomlink/vcomlink/transport"
)

// readyTimeout bounds the TPM probe of one /readyz request.
const readyTimeout = 5 * time.Second

// Listen opens the admin listener for an --admin value: unix:///path or
// tcp://127.0.0.1:PORT. vsock and non-loopback TCP addresses are rejected.
func Listen(spec string) (net.Listener, error) {
	network, address, err := ParseAddress(spec)
	if err != nil {
		return nil, err
	}
	var l net.Listener
	if network == "unix" {
		l, err = transport.ListenUnix(address)
	} else {
		l, err = net.Listen(network, address)
	}
	if err != nil {
		return nil, fmt.Errorf("admin listener %s: %w", spec, err)
	}
	return l, nil
}

// ParseAddress checks an --admin value and returns the network ("unix" or
// "tcp") and the address to listen on.
func ParseAddress(spec string) (network, address string, err error) {
	u, err := url.Parse(spec)
	if err != nil {
		return "", "", fmt.Errorf("invalid --admin address %q: %v", spec, err)
	}
	switch u.Scheme {
	case "unix":
		if u.Host != "" || !strings.HasPrefix(u.Path, "/") || u.RawQuery != "" {
			return "", "", fmt.Errorf("invalid --admin address %q: write a Unix socket as unix:///absolute/path", spec)
		}
		return "unix", u.Path, nil
	case "tcp":
		host := u.Hostname()
		ip := net.ParseIP(host)
		if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return "", "", fmt.Errorf("--admin address %q is not a loopback address; the admin endpoints are for the host only, so use unix:///PATH or tcp://127.0.0.1:PORT, and reach them from another host through a proxy on this host", spec)
		}
		return "tcp", u.Host, nil
	case "vsock":
		return "", "", fmt.Errorf("--admin address %q is a vsock address; guests must never reach the admin endpoints, so use unix:///PATH or tcp://127.0.0.1:PORT", spec)
	}
	return "", "", fmt.Errorf("invalid --admin address %q: use unix:///PATH or tcp://127.0.0.1:PORT", spec)
}

// Handler returns the admin endpoints. ready probes the TPM for /readyz.
func Handler(m *metrics.Metrics, ready func(ctx context.Context) error) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		if err := ready(ctx); err != nil {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: the TPM does not respond: %s\n", strings.Join(strings.Fields(err.Error()), " "))
			return
		}
		io.WriteString(w, "ready\n")
	})
	return mux
}
