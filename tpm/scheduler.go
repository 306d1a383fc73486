package tpm

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/google/go-tpm/tpm2/transport"
)

// job is one operation waiting for its turn at the TPM.
type job struct {
	run   func(t transport.TPM) error
	state atomic.Int32 // jobQueued, jobRunning or jobCancelled
	done  chan error
}

const (
	jobQueued int32 = iota
	jobRunning
	jobCancelled
)

// scheduler runs jobs one at a time on a single worker goroutine. Jobs queue
// per peer, and the worker takes the peers in turn, so a peer with many
// queued jobs waits for its own jobs, not for other peers'. A peer goes to
// the back of the turn order when its job ends, so a peer that queues a job
// while another peer's job runs is next.
type scheduler struct {
	tpm transport.TPM

	mu      sync.Mutex
	queues  map[string][]*job // pending jobs by peer, oldest first
	ring    []string          // peers with pending jobs, in turn order, except running
	running string            // the peer whose job runs, or empty
	closed  bool
	wake    chan struct{}
	stopped chan struct{}
}

func newScheduler(t transport.TPM) *scheduler {
	s := &scheduler{
		tpm:     t,
		queues:  make(map[string][]*job),
		wake:    make(chan struct{}, 1),
		stopped: make(chan struct{}),
	}
	go s.work()
	return s
}

// Do queues run for peer and waits until it has run. If ctx ends while the
// job is still queued, the job is dropped and Do returns ctx's error; once
// the job has started, Do waits for it to finish, because a TPM command
// cannot be abandoned halfway.
func (s *scheduler) Do(ctx context.Context, peer string, run func(t transport.TPM) error) error {
	j := &job{run: run, done: make(chan error, 1)}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errClosed
	}
	if len(s.queues[peer]) == 0 && peer != s.running {
		s.ring = append(s.ring, peer)
	}
	s.queues[peer] = append(s.queues[peer], j)
	s.mu.Unlock()

	select {
	case s.wake <- struct{}{}:
	default:
	}

	select {
	case err := <-j.done:
		return err
	case <-ctx.Done():
		if j.state.CompareAndSwap(jobQueued, jobCancelled) {
			return ctx.Err()
		}
		return <-j.done
	}
}

// Depth returns the number of jobs queued for each peer.
func (s *scheduler) Depth() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	depth := make(map[string]int, len(s.queues))
	for peer, q := range s.queues {
		depth[peer] = len(q)
	}
	return depth
}

// next pops the oldest job of the peer whose turn it is, and records the
// peer as running. Jobs cancelled while queued are dropped on the way.
func (s *scheduler) next() (*job, string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.ring) > 0 {
		peer := s.ring[0]
		s.ring = s.ring[1:]
		for len(s.queues[peer]) > 0 {
			q := s.queues[peer]
			j := q[0]
			q[0] = nil
			if len(q) == 1 {
				delete(s.queues, peer)
			} else {
				s.queues[peer] = q[1:]
			}
			if j.state.CompareAndSwap(jobQueued, jobRunning) {
				s.running = peer
				return j, peer, true
			}
		}
	}
	return nil, "", false
}

// finish ends the turn of peer, which goes to the back of the turn order if
// it has jobs left.
func (s *scheduler) finish(peer string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.running = ""
	if len(s.queues[peer]) > 0 {
		s.ring = append(s.ring, peer)
	}
}

func (s *scheduler) work() {
	defer close(s.stopped)
	for {
		j, peer, ok := s.next()
		if ok {
			j.done <- j.run(s.tpm)
			s.finish(peer)
			continue
		}

		s.mu.Lock()
		closed := s.closed
		s.mu.Unlock()
		if closed {
			return
		}
		<-s.wake
	}
}

// close stops taking jobs, lets the queued ones run, and waits for the
// worker to stop.
func (s *scheduler) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	<-s.stopped
}
