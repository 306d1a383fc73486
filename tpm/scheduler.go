package tpm

import (
	"context"
	"slices"
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

// scheduler runs jobs one at a time. Jobs queue per peer, and a single
// worker goroutine takes the peers in turn, so a peer with many queued jobs
// waits for its own jobs, not for other peers'. A peer goes to the back of
// the turn order when its job ends, so a peer that queues a job while
// another peer's job runs is next. A job that arrives while no job runs or
// waits runs at once on the caller's goroutine, which saves two goroutine
// switches when the TPM is idle.
type scheduler struct {
	tpm transport.TPM

	mu      sync.Mutex
	queues  map[string][]*job // pending jobs by peer, oldest first
	ring    []string          // peers with pending jobs, in turn order, except the running peer
	busy    bool              // a job runs, on the worker or on a caller
	running string            // the peer whose job runs, while busy
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

// Do runs run for peer and waits until it has run: at once if no job runs
// or waits, else in the peer's turn. If ctx ends while the job is still
// queued, or the guest of a watched request goes away (WithHangupWatch),
// the job is dropped and Do returns the cause. Once the job has
// started, Do waits for it to finish, because a TPM command cannot be
// abandoned halfway.
func (s *scheduler) Do(ctx context.Context, peer string, run func(t transport.TPM) error) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errClosed
	}
	if !s.busy && len(s.ring) == 0 {
		if err := ctx.Err(); err != nil {
			s.mu.Unlock()
			return err
		}
		s.busy, s.running = true, peer
		s.mu.Unlock()
		return s.runNow(peer, run)
	}

	j := &job{run: run, done: make(chan error, 1)}
	if len(s.queues[peer]) == 0 && !(s.busy && s.running == peer) {
		s.ring = append(s.ring, peer)
	}
	s.queues[peer] = append(s.queues[peer], j)
	s.mu.Unlock()
	s.signal()

	ctx, stopWatch := watchHangup(ctx)
	defer stopWatch()
	select {
	case err := <-j.done:
		return err
	case <-ctx.Done():
		if j.state.CompareAndSwap(jobQueued, jobCancelled) {
			s.drop(peer, j)
			return context.Cause(ctx)
		}
		return <-j.done
	}
}

// drop removes a cancelled job from its peer's queue, unless the worker
// has already taken it out, so that Depth counts only jobs that will run.
func (s *scheduler) drop(peer string, j *job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queues[peer]
	i := slices.Index(q, j)
	if i < 0 {
		return
	}
	q = slices.Delete(q, i, i+1)
	if len(q) > 0 {
		s.queues[peer] = q
		return
	}
	delete(s.queues, peer)
	if i := slices.Index(s.ring, peer); i >= 0 {
		s.ring = slices.Delete(s.ring, i, i+1)
	}
}

// runNow runs a job of peer on the caller's goroutine, which has marked the
// scheduler busy.
func (s *scheduler) runNow(peer string, run func(t transport.TPM) error) error {
	defer s.finish(peer)
	return run(s.tpm)
}

// finish ends the turn of peer: the peer goes to the back of the turn order
// if it has jobs left, and the worker wakes if any job waits or the
// scheduler closed.
func (s *scheduler) finish(peer string) {
	s.mu.Lock()
	s.busy, s.running = false, ""
	if len(s.queues[peer]) > 0 {
		s.ring = append(s.ring, peer)
	}
	wake := len(s.ring) > 0 || s.closed
	s.mu.Unlock()
	if wake {
		s.signal()
	}
}

// signal wakes the worker if it waits.
func (s *scheduler) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
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

// next pops the oldest job of the peer whose turn it is and marks the
// scheduler busy with it, unless a job already runs. Jobs cancelled while
// queued are dropped on the way.
func (s *scheduler) next() (*job, string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for !s.busy && len(s.ring) > 0 {
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
				s.busy, s.running = true, peer
				return j, peer, true
			}
		}
	}
	return nil, "", false
}

func (s *scheduler) work() {
	defer close(s.stopped)
	for {
		j, peer, ok := s.next()
		if ok {
			err := j.run(s.tpm)
			s.finish(peer)
			j.done <- err
			continue
		}

		s.mu.Lock()
		stop := s.closed && !s.busy && len(s.ring) == 0
		s.mu.Unlock()
		if stop {
			return
		}
		<-s.wake
	}
}

// abort stops taking jobs and fails the queued ones with errClosed. The
// running job, if any, goes on.
func (s *scheduler) abort() {
	s.mu.Lock()
	s.closed = true
	queues := s.queues
	s.queues = make(map[string][]*job)
	s.ring = nil
	s.mu.Unlock()
	for _, q := range queues {
		for _, j := range q {
			if j.state.CompareAndSwap(jobQueued, jobCancelled) {
				j.done <- errClosed
			}
		}
	}
	s.signal()
}

// close stops taking jobs, lets the queued ones and the running one
// finish, and waits for the worker to stop.
func (s *scheduler) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.signal()
	<-s.stopped
}
