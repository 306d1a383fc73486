package server

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/vcomlink/vcomlink/transport"
)

// admit answers 429 to a request on a connection over its peer's
// connection limit, or over its peer's request rate, and returns false;
// otherwise it returns true.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, ex exchange) bool {
	if err := connOf(r).overLimit; err != nil {
		w.Header().Set("Retry-After", retryAfterSeconds)
		w.Header().Set("Connection", "close")
		s.fail(w, r, ex, http.StatusTooManyRequests,
			fmt.Sprintf("%s%v; reuse an open connection, or close one and retry after %ss", opPrefix(ex), err, retryAfterSeconds), err)
		return false
	}

	wait, ok := s.rates.take(ex.peer, ex.start)
	if !ok {
		seconds := int(retryAfter(wait) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(seconds))
		s.fail(w, r, ex, http.StatusTooManyRequests,
			fmt.Sprintf("%speer %s sent more than %g requests per second (at most %d at once); retry after %ds",
				opPrefix(ex), ex.peer, s.cfg.RequestRate, s.cfg.RequestBurst, seconds), errRateLimited)
		return false
	}
	return true
}

// errRateLimited marks a request refused because its peer is over the
// request rate.
var errRateLimited = errors.New("over the request rate")

// opPrefix returns "op: " for a known operation, so that every message of
// an operation starts with its name.
func opPrefix(ex exchange) string {
	if ex.op == "" {
		return ""
	}
	return string(ex.op) + ": "
}

// logDroppedConn logs a connection that the connection limits closed at
// once, within the limits of the refusal log.
func (s *Server) logDroppedConn(peer transport.Peer, reason string) {
	if s.refusals.record(peer.ID(), "connection closed", "connection closed") {
		s.log.Warn("connection closed at once", "peer", peer.ID(), "reason", reason)
	}
}

// rateLimiter keeps a token bucket for each peer: a peer may send burst
// requests at once, and rate requests per second over time.
type rateLimiter struct {
	rate  float64 // tokens per second; zero or less means no limit
	burst float64

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time // when tokens was computed
	// pausedUntil is the end of the Retry-After of the peer's last 429:
	// until then the peer's connections read no request.
	pausedUntil time.Time
}

func newRateLimiter(rate float64, burst int) *rateLimiter {
	return &rateLimiter{rate: rate, burst: float64(max(burst, 1)), buckets: make(map[string]*bucket)}
}

// take takes a token from peer's bucket at now. When the bucket is empty it
// returns false and the time until the next token.
func (l *rateLimiter) take(peer string, now time.Time) (time.Duration, bool) {
	if l.rate <= 0 {
		return 0, true
	}
	l.mu.Lock()
	defer l.mu.Unlock()

	b := l.buckets[peer]
	if b == nil {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[peer] = b
	}
	if elapsed := now.Sub(b.last).Seconds(); elapsed > 0 {
		b.tokens = min(l.burst, b.tokens+elapsed*l.rate)
		b.last = now
	}
	if b.tokens < 1 {
		wait := time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
		b.pausedUntil = now.Add(min(retryAfter(wait), maxPause))
		return wait, false
	}
	b.tokens--
	return 0, true
}

// retryAfter rounds a wait up to the whole seconds of a Retry-After
// header, at least one.
func retryAfter(wait time.Duration) time.Duration {
	return time.Duration(max(1, math.Ceil(wait.Seconds()))) * time.Second
}

// maxPause bounds the pause of a peer's connections after a 429 for its
// request rate.
const maxPause = 2 * time.Second

// paused returns how long peer's connections must still wait before they
// read their next request: the rest of the Retry-After of the peer's last
// 429 for its rate, at most maxPause, or 0. A peer that ignores
// Retry-After, on the same connection or on new ones, so costs the agent
// no more than a response per connection for each pause.
func (l *rateLimiter) paused(peer string, now time.Time) time.Duration {
	if l.rate <= 0 {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if b := l.buckets[peer]; b != nil && b.pausedUntil.After(now) {
		return b.pausedUntil.Sub(now)
	}
	return 0
}

// forgetIdle drops the buckets that have refilled by now, which hold no
// state that a new bucket would not.
func (l *rateLimiter) forgetIdle(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for peer, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, peer)
		}
	}
}
