package policy

import "sync/atomic"

// Store holds the policy in force and lets a reload replace it while
// requests are checked. Store implements Checker.
type Store struct {
	current atomic.Pointer[checkerBox]
}

// checkerBox wraps a Checker, because atomic.Pointer needs a concrete type.
type checkerBox struct{ Checker }

// NewStore returns a Store that holds c.
func NewStore(c Checker) *Store {
	s := &Store{}
	s.Set(c)
	return s
}

// Get returns the policy in force.
func (s *Store) Get() Checker {
	return s.current.Load().Checker
}

// Set puts c in force. Checks that have started finish with the policy
// they started with.
func (s *Store) Set(c Checker) {
	s.current.Store(&checkerBox{c})
}

// Allow implements Checker with the policy in force.
func (s *Store) Allow(peer string, op Operation, h uint32) error {
	return s.Get().Allow(peer, op, h)
}
