package server

import (
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"
)

// refusalLinesPerPeer is the number of distinct refusals of one peer that
// the log shows in full in each interval.
const refusalLinesPerPeer = 10

// omittedLabelsPerPeer is the number of distinct refusals left out of the
// log that the count line of a peer names.
const omittedLabelsPerPeer = 8

// refusalLog limits the log lines of refusals, so that a guest that repeats
// a refused request, or tries many handles, cannot flood the log. In each
// interval it lets through the first line of each distinct refusal of a
// peer, up to refusalLinesPerPeer of them, and counts the rest; flush logs
// one line with the count for each peer that had lines left out, and names
// what those refusals were.
type refusalLog struct {
	log      *slog.Logger
	interval time.Duration
	summary  string // the message of the count line

	mu    sync.Mutex
	peers map[string]*peerRefusals
}

type peerRefusals struct {
	logged  map[string]bool // distinct refusals logged in this interval
	omitted int             // refusals not logged in this interval
	// labels counts the refusals not logged by label, for at most
	// omittedLabelsPerPeer labels.
	labels map[string]int
}

// newRefusalLog returns a refusal log whose count lines have the message
// summary, such as "further refusals were not logged".
func newRefusalLog(log *slog.Logger, interval time.Duration, summary string) *refusalLog {
	return &refusalLog{log: log, interval: interval, summary: summary, peers: make(map[string]*peerRefusals)}
}

// record counts a refusal of peer, identified by key and described by
// label, such as "403 sign 0x81000003", and reports whether its line should
// be logged.
func (l *refusalLog) record(peer, key, label string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.peers[peer]
	if p == nil {
		p = &peerRefusals{logged: make(map[string]bool), labels: make(map[string]int)}
		l.peers[peer] = p
	}
	if p.logged[key] || len(p.logged) >= refusalLinesPerPeer {
		p.omitted++
		if _, ok := p.labels[label]; ok || len(p.labels) < omittedLabelsPerPeer {
			p.labels[label]++
		}
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
		p := peers[id]
		l.log.Warn(l.summary, "peer", id, "count", p.omitted, "interval", l.interval,
			"omitted", p.describeOmitted())
	}
}

// describeOmitted lists the refusals left out of the log, the most
// frequent first, as "403 sign 0x81000003: 49, 403 readnv 0x01000000: 2,
// and 5 others".
func (p *peerRefusals) describeOmitted() string {
	labels := make([]string, 0, len(p.labels))
	named := 0
	for label, n := range p.labels {
		labels = append(labels, label)
		named += n
	}
	sort.Slice(labels, func(i, j int) bool {
		a, b := labels[i], labels[j]
		if p.labels[a] != p.labels[b] {
			return p.labels[a] > p.labels[b]
		}
		return a < b
	})
	parts := make([]string, len(labels))
	for i, label := range labels {
		parts[i] = fmt.Sprintf("%s: %d", label, p.labels[label])
	}
	if others := p.omitted - named; others > 0 {
		parts = append(parts, fmt.Sprintf("and %d others", others))
	}
	return strings.Join(parts, ", ")
}
