package main

import (
	"flag"
	"fmt"
	"math"
	"time"

	"github.com/vcomlink/vcomlink/server"
)

// limitFlags are the limits that vcomlink serve puts on each guest.
type limitFlags struct {
	headerTimeout   time.Duration
	bodyTimeout     time.Duration
	writeTimeout    time.Duration
	idleTimeout     time.Duration
	requestTimeout  time.Duration
	maxHeaderBytes  int
	maxConnsPerPeer int
	maxConns        int
	rate            float64
	burst           int
}

func (l *limitFlags) register(fs *flag.FlagSet) {
	fs.DurationVar(&l.headerTimeout, "header-timeout", server.DefaultReadHeaderTimeout, "longest time a guest may take to send a request's headers, as a `DURATION` above 0, such as 5s; a connection that sends nothing is closed after it")
	fs.DurationVar(&l.bodyTimeout, "body-timeout", server.DefaultBodyTimeout, "longest time a guest may take to send a request's body after its headers, as a `DURATION` above 0; the body is read whole before the request waits for the TPM")
	fs.DurationVar(&l.writeTimeout, "write-timeout", server.DefaultWriteTimeout, "longest time writing a response may take, as a `DURATION` above 0")
	fs.DurationVar(&l.idleTimeout, "idle-timeout", server.DefaultIdleTimeout, "time after which a keep-alive connection that carries no request is closed, as a `DURATION` above 0")
	fs.DurationVar(&l.requestTimeout, "request-timeout", server.DefaultRequestTimeout, "longest time a request may wait for and use the TPM before it fails with 504, as a `DURATION` above 0")
	fs.IntVar(&l.maxHeaderBytes, "max-header-bytes", server.DefaultMaxHeaderBytes, "maximum size of a request's headers, in `BYTES`, at least 1; the request line and what arrived of the body may add 4096 bytes before a request gets 431")
	fs.IntVar(&l.maxConnsPerPeer, "max-conns-per-peer", server.DefaultMaxConnsPerPeer, "maximum `NUMBER` of connections that one peer may have open; the first request on each further connection gets 429, and connections beyond twice the limit are closed; 0 for no limit")
	fs.IntVar(&l.maxConns, "max-conns", server.DefaultMaxConns, "maximum `NUMBER` of connections of all peers together; further connections are closed; 0 for no limit")
	fs.Float64Var(&l.rate, "rate", server.DefaultRequestRate, "`REQUESTS` per second that each peer may send over time, such as 100 or 0.5; requests over it get 429 with Retry-After; 0 for no limit")
	fs.IntVar(&l.burst, "burst", server.DefaultRequestBurst, "`REQUESTS` that each peer may send at once before --rate applies, at least 1")
}

// check returns an error that names the first flag with a value out of
// range, and the line of the --config file that set it.
func (l *limitFlags) check(config *configLines) error {
	durations := []struct {
		name  string
		value time.Duration
	}{
		{"--header-timeout", l.headerTimeout},
		{"--body-timeout", l.bodyTimeout},
		{"--write-timeout", l.writeTimeout},
		{"--idle-timeout", l.idleTimeout},
		{"--request-timeout", l.requestTimeout},
	}
	for _, d := range durations {
		if err := checkPositive(d.name, d.value); err != nil {
			return config.locate(d.name, 0, err)
		}
	}
	counts := []struct {
		name  string
		value int
		least int
	}{
		{"--max-header-bytes", l.maxHeaderBytes, 1},
		{"--max-conns-per-peer", l.maxConnsPerPeer, 0},
		{"--max-conns", l.maxConns, 0},
		{"--burst", l.burst, 1},
	}
	for _, c := range counts {
		if c.value < c.least {
			return config.locate(c.name, 0, fmt.Errorf("invalid %s %d: it must be %d or more", c.name, c.value, c.least))
		}
	}
	if l.rate < 0 || math.IsNaN(l.rate) || math.IsInf(l.rate, 0) {
		return config.locate("rate", 0, fmt.Errorf("invalid --rate %g: it must be 0 (no limit) or a finite number above 0", l.rate))
	}
	return nil
}

// checkPositive returns an error that names the flag unless value is above
// 0.
func checkPositive(name string, value time.Duration) error {
	if value <= 0 {
		return fmt.Errorf("invalid %s %s: it must be a positive duration, such as 10s", name, value)
	}
	return nil
}

// apply sets the limits in cfg. The flags write "no limit" as 0, and
// server.Config as a negative value.
func (l *limitFlags) apply(cfg *server.Config) {
	cfg.ReadHeaderTimeout = l.headerTimeout
	cfg.BodyTimeout = l.bodyTimeout
	cfg.WriteTimeout = l.writeTimeout
	cfg.IdleTimeout = l.idleTimeout
	cfg.RequestTimeout = l.requestTimeout
	cfg.MaxHeaderBytes = l.maxHeaderBytes
	cfg.MaxConnsPerPeer = noLimitIfZero(l.maxConnsPerPeer)
	cfg.MaxConns = noLimitIfZero(l.maxConns)
	cfg.RequestRate = l.rate
	if l.rate == 0 {
		cfg.RequestRate = -1
	}
	cfg.RequestBurst = l.burst
}

func noLimitIfZero(n int) int {
	if n == 0 {
		return -1
	}
	return n
}
