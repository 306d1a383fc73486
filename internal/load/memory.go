package load

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
)

// IdleGuests are guests whose connections to the agent stay open and idle.
type IdleGuests struct {
	clients []guestClient
}

// OpenIdle opens n guests, each with a client of the kind given and one
// connection, and has each send r once, so that each holds a keep-alive
// connection that has served a request. At most 64 of them send at once.
// Close closes the connections.
func OpenIdle(ctx context.Context, kind ClientKind, address string, r *Request, n int) (*IdleGuests, error) {
	idle := &IdleGuests{}
	for range n {
		c, err := newGuestClient(kind, address, r, 0)
		if err != nil {
			return nil, err
		}
		idle.clients = append(idle.clients, c)
	}

	const parallel = 64
	tokens := make(chan struct{}, parallel)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, c := range idle.clients {
		tokens <- struct{}{}
		wg.Go(func() {
			defer func() { <-tokens }()
			errs[i] = c.do(ctx)
		})
	}
	wg.Wait()
	if err := firstRequestsFailed("idle guest", errs); err != nil {
		idle.Close()
		return nil, err
	}
	return idle, nil
}

// Close closes every guest's connection.
func (g *IdleGuests) Close() {
	for _, c := range g.clients {
		c.close()
	}
}

// ResidentMemory returns the resident set size of process pid, in bytes,
// from the VmRSS line of /proc/PID/status. It works on Linux only.
func ResidentMemory(pid int) (int64, error) {
	path := fmt.Sprintf("/proc/%d/status", pid)
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("read the resident memory of process %d: %w", pid, err)
	}
	defer f.Close()

	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		value, ok := strings.CutPrefix(scanner.Text(), "VmRSS:")
		if !ok {
			continue
		}
		fields := strings.Fields(value)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("%s: unexpected VmRSS line %q", path, scanner.Text())
		}
		kib, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: unexpected VmRSS line %q", path, scanner.Text())
		}
		return kib << 10, nil
	}
	if err := scanner.Err(); err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return 0, fmt.Errorf("%s has no VmRSS line", path)
}
