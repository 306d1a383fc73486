package main

import (
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/vcomlink/vcomlink/client"
)

// errInterrupted ends a load that SIGINT or SIGTERM stopped.
var errInterrupted = errors.New("interrupted by a signal before every measurement finished")

// explainRateLimit adds rateLimitAdvice to err when err contains a 429
// response of the agent. It returns nil for nil.
func explainRateLimit(err error) error {
	if err == nil || !hasStatus(err, http.StatusTooManyRequests) {
		return err
	}
	return fmt.Errorf("%w; %s", err, rateLimitAdvice)
}

// rateLimitAdvice is the fix for a 429 response. A benchmark sends far more
// requests from one peer than the agent's default per-peer limits allow.
const rateLimitAdvice = "the agent returned 429 because the load exceeds its per-peer limits: run the agent with vcomlink serve --rate 0 --max-conns-per-peer 0 to measure it"

// hasStatus reports whether err, or any error that it wraps, is a
// *client.StatusError with the HTTP status code.
func hasStatus(err error, code int) bool {
	if status, ok := err.(*client.StatusError); ok && status.StatusCode == code {
		return true
	}
	switch e := err.(type) {
	case interface{ Unwrap() error }:
		return hasStatus(e.Unwrap(), code)
	case interface{ Unwrap() []error }:
		return slices.ContainsFunc(e.Unwrap(), func(err error) bool { return hasStatus(err, code) })
	}
	return false
}
