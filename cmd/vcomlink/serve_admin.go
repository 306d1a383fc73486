package main

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/vcomlink/vcomlink/admin"
	"github.com/vcomlink/vcomlink/metrics"
	"github.com/vcomlink/vcomlink/tpm"
)

// adminServer serves the admin endpoints on their own listener.
type adminServer struct {
	listener net.Listener
	http     *http.Server
}

func startAdmin(addr string, m *metrics.Metrics, svc *tpm.Service, log *slog.Logger) (*adminServer, error) {
	l, err := admin.Listen(addr)
	if err != nil {
		return nil, err
	}
	return &adminServer{
		listener: l,
		http: &http.Server{
			Handler:           admin.Handler(m, svc.Ping),
			ReadHeaderTimeout: 5 * time.Second,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		},
	}, nil
}

func (a *adminServer) serve() error {
	return a.http.Serve(a.listener)
}

func (a *adminServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	a.http.Shutdown(ctx)
	a.listener.Close()
}
