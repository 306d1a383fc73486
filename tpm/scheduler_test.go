package tpm

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
)

// TestSchedulerTakesPeersInTurn queues many jobs for one peer and one for
// another while the worker is busy, and checks that the second peer's job
// runs next, not after all of the first peer's.
func TestSchedulerTakesPeersInTurn(t *testing.T) {
	s := newScheduler(nil)
	defer s.close()
	release, started := blockWorker(s)
	defer release()

	var mu sync.Mutex
	var order []string
	record := func(name string) func(transport.TPM) error {
		return func(transport.TPM) error {
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			return nil
		}
	}

	<-started
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.Do(context.Background(), "a", record("a"))
		}()
	}
	waitForDepth(t, s, "a", 5)
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.Do(context.Background(), "b", record("b"))
	}()
	waitForDepth(t, s, "b", 1)

	release()
	wg.Wait()
	if len(order) != 6 {
		t.Fatalf("ran %d jobs; want 6", len(order))
	}
	if order[1] != "b" {
		t.Fatalf("order = %v; want b second, right after a's first queued job", order)
	}
}

// TestSchedulerNewPeerAfterRunningJob has peer a run a job with more of its
// own queued, and checks that a job that peer b queues meanwhile runs as
// soon as a's job ends, before a's queued ones.
func TestSchedulerNewPeerAfterRunningJob(t *testing.T) {
	s := newScheduler(nil)
	defer s.close()

	unblock := make(chan struct{})
	started := make(chan struct{})
	go s.Do(context.Background(), "a", func(transport.TPM) error {
		close(started)
		<-unblock
		return nil
	})
	<-started

	var mu sync.Mutex
	var order []string
	record := func(name string) func(transport.TPM) error {
		return func(transport.TPM) error {
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			return nil
		}
	}
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.Do(context.Background(), "a", record("a"))
		}()
	}
	waitForDepth(t, s, "a", 3)
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.Do(context.Background(), "b", record("b"))
	}()
	waitForDepth(t, s, "b", 1)

	close(unblock)
	wg.Wait()
	if len(order) != 4 || order[0] != "b" {
		t.Fatalf("order after a's running job = %v; want b first", order)
	}
}

// TestSchedulerCancelledJobsKeepTurns cancels the queued jobs of one peer
// and checks that the peer's later job and other peers' jobs still run.
func TestSchedulerCancelledJobsKeepTurns(t *testing.T) {
	s := newScheduler(nil)
	defer s.close()
	release, started := blockWorker(s)
	defer release()
	<-started

	ctx, cancel := context.WithCancel(context.Background())
	cancelled := make(chan error, 2)
	for range 2 {
		go func() { cancelled <- s.Do(ctx, "a", func(transport.TPM) error { return nil }) }()
	}
	waitForDepth(t, s, "a", 2)
	cancel()
	for range 2 {
		if err := <-cancelled; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled Do = %v; want context.Canceled", err)
		}
	}
	if depth := s.Depth()["a"]; depth != 0 {
		t.Errorf("Depth counts %d cancelled jobs of a; want 0", depth)
	}

	done := make(chan string, 2)
	for _, peer := range []string{"a", "b"} {
		go func() {
			s.Do(context.Background(), peer, func(transport.TPM) error { return nil })
			done <- peer
		}()
	}
	waitForDepth(t, s, "a", 1)
	waitForDepth(t, s, "b", 1)
	release()
	for range 2 {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("a job queued after cancelled ones did not run within 10s")
		}
	}
}

// blockWorker runs a job that holds the scheduler until release is called.
// An idle scheduler runs it on the caller's goroutine, and no other job runs
// meanwhile. started is closed once the blocking job runs.
func blockWorker(s *scheduler) (release func(), started chan struct{}) {
	unblock := make(chan struct{})
	started = make(chan struct{})
	go s.Do(context.Background(), "blocker", func(transport.TPM) error {
		close(started)
		<-unblock
		return nil
	})
	var once sync.Once
	return func() { once.Do(func() { close(unblock) }) }, started
}

// waitForDepth waits until peer has n queued jobs.
func waitForDepth(t *testing.T, s *scheduler, peer string, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.Depth()[peer] != n {
		if time.Now().After(deadline) {
			t.Fatalf("peer %s has %d queued jobs; want %d", peer, s.Depth()[peer], n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestSchedulerDropsCancelledJob(t *testing.T) {
	s := newScheduler(nil)
	defer s.close()
	release, started := blockWorker(s)
	defer release()
	<-started

	ctx, cancel := context.WithCancel(context.Background())
	ran := false
	done := make(chan error)
	go func() {
		done <- s.Do(ctx, "b", func(transport.TPM) error {
			ran = true
			return nil
		})
	}()
	waitForDepth(t, s, "b", 1)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Do = %v; want context.Canceled", err)
	}
	release()

	if err := s.Do(context.Background(), "c", func(transport.TPM) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if ran {
		t.Fatalf("a job cancelled while queued ran")
	}
}

func TestSchedulerClosed(t *testing.T) {
	s := newScheduler(nil)
	s.close()
	err := s.Do(context.Background(), "a", func(transport.TPM) error { return nil })
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Do after close = %v; want ErrUnavailable", err)
	}
}

// TestSchedulerCloseWaitsForCallerJob runs a job on the caller's goroutine,
// as an idle scheduler does, and checks that close waits for it.
func TestSchedulerCloseWaitsForCallerJob(t *testing.T) {
	s := newScheduler(nil)
	release, started := blockWorker(s)
	<-started

	closed := make(chan struct{})
	go func() {
		s.close()
		close(closed)
	}()
	select {
	case <-closed:
		t.Fatal("close returned while a job was running")
	case <-time.After(50 * time.Millisecond):
	}

	release()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("close did not return after the running job finished")
	}
}

// TestSchedulerQueuesBehindCallerJob checks that a job arriving while a
// job runs on a caller's goroutine waits for it and then runs on the
// worker.
func TestSchedulerQueuesBehindCallerJob(t *testing.T) {
	s := newScheduler(nil)
	defer s.close()
	release, started := blockWorker(s)
	defer release()
	<-started

	done := make(chan error, 1)
	go func() {
		done <- s.Do(context.Background(), "b", func(transport.TPM) error { return nil })
	}()
	waitForDepth(t, s, "b", 1)
	select {
	case err := <-done:
		t.Fatalf("a job ran while another was running: %v", err)
	default:
	}

	release()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("queued job: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the queued job did not run after the running one finished")
	}
}

// TestSchedulerCancelledBeforeStart checks that an idle scheduler does not
// run a job whose context has already ended.
func TestSchedulerCancelledBeforeStart(t *testing.T) {
	s := newScheduler(nil)
	defer s.close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	ran := false
	err := s.Do(ctx, "a", func(transport.TPM) error {
		ran = true
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Do = %v; want context.Canceled", err)
	}
	if ran {
		t.Error("a job whose context had ended ran")
	}
}

func TestSchedulerDropsJobOfGoneGuest(t *testing.T) {
	s := newScheduler(nil)
	defer s.close()
	release, started := blockWorker(s)
	defer release()
	<-started

	hangUp := make(chan func(), 1)
	stopped := make(chan struct{})
	ctx := WithHangupWatch(context.Background(), func(gone func()) func() {
		hangUp <- gone
		return func() { close(stopped) }
	})
	ran := false
	done := make(chan error)
	go func() {
		done <- s.Do(ctx, "b", func(transport.TPM) error {
			ran = true
			return nil
		})
	}()
	(<-hangUp)()
	if err := <-done; !errors.Is(err, ErrGuestGone) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Do = %v; want ErrGuestGone", err)
	}
	select {
	case <-stopped:
	default:
		t.Error("Do returned before it stopped the watch")
	}
	release()

	if err := s.Do(context.Background(), "c", func(transport.TPM) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if ran {
		t.Fatalf("the job of a guest that went away ran")
	}
}

func TestSchedulerWatchesOnlyQueuedJobs(t *testing.T) {
	s := newScheduler(nil)
	defer s.close()
	watched := 0
	ctx := WithHangupWatch(context.Background(), func(func()) func() {
		watched++
		return func() {}
	})
	if err := s.Do(ctx, "a", func(transport.TPM) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if watched != 0 {
		t.Errorf("a job that ran at once was watched %d times; want 0", watched)
	}
}

func TestSchedulerAbortFailsQueuedJobs(t *testing.T) {
	s := newScheduler(nil)
	release, started := blockWorker(s)
	<-started

	done := make(chan error)
	go func() { done <- s.Do(context.Background(), "b", func(transport.TPM) error { return nil }) }()
	waitForDepth(t, s, "b", 1)
	s.abort()
	if err := <-done; !errors.Is(err, ErrUnavailable) {
		t.Errorf("queued Do after abort = %v; want ErrUnavailable", err)
	}
	if err := s.Do(context.Background(), "c", func(transport.TPM) error { return nil }); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Do after abort = %v; want ErrUnavailable", err)
	}
	release()
	s.close()
}
