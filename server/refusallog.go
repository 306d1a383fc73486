package server

import (
	"log/slog"
	"sort"
	"sync"
	"time"
)

// refusalLinesPerPeer is the number of distinct refusals of one peer that
// the log shows in full in each interval.
const refusalLinesPerPeer = 10

// refusalLog limits the log lines of refusals, so that a guest that repeats
// a refused request, or tries many handles, cannot flood the log. In each
// interval it lets through the first line of each distinct refusal of a
// peer, up to refusalLinesPerPeer of them, and counts the rest; flush logs
// one line with the count for each peer that had lines left out.
type refusalLog struct {
	log      *slog.Logger
	interval time.Duration

	mu    sync.Mutex
	peers map[string]*peerRefusals
}

type peerRefusals struct {
	logged  map[string]bool // distinct refusals logged in this interval
	omitted int             // refusals not logged in this interval
}

func newRefusalLog(log *slog.Logger, interval time.Duration) *refusalLog {
	return &refusalLog{log: log, interval: interval, peers: make(map[string]*peerRefusals)}
}

// record counts a refusal of peer, identified by key, and reports whether
// its line should be logged.
func (l *refusalLog) record(peer, key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.peers[peer]
	if p == nil {
		p = &peerRefusals{logged: make(map[string]bool)}
		l.peers[peer] = p
	}
	if p.logged[key] || len(p.logged) >= refusalLinesPerPeer {
		p.omitted++
		return false
	}
	p.logged[key] = true
	return true
}

// flush logs the count of refusals left out of the log for each peer, and
// starts a new interval.
func (l *refusalLog) flush() {
	l.mu.Lock()
	peers := l.peers
	l.peers = make(map[string]*peerRefusals)
	l.mu.Unlock()

	ids := make([]string, 0, len(peers))
	for id, p := range peers {
		if p.omitted > 0 {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	for _, id := range ids {
		l.log.Warn("further refusals were not logged", "peer", id, "count", peers[id].omitted, "interval", l.interval)
	}
}
