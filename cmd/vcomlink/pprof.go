//go:build pprof

package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
)

// A binary built with -tags pprof serves net/http/pprof on the loopback
// TCP address in VCOMLINK_PPROF, such as 127.0.0.1:6060, for profiling the
// agent under load. Release builds leave this file out.
func init() {
	addr := os.Getenv("VCOMLINK_PPROF")
	if addr == "" {
		return
	}
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		fmt.Fprintf(os.Stderr, "vcomlink: VCOMLINK_PPROF=%q is not a loopback address such as 127.0.0.1:6060; profiling is off\n", addr)
		return
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vcomlink: profiling is off: %v\n", err)
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	go http.Serve(l, mux)
}
