package load

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Config is one load run: Guests concurrent guests send Request to the
// agent at Address for Duration.
type Config struct {
	// Address is the agent's address, as client.ParseAddress takes it.
	Address string
	// Target is the kind of server at Address, recorded in the Result.
	Target Target
	// Request is the request that every guest sends, one call after another.
	Request *Request
	// Guests is the number of concurrent guests. Each has a client of its
	// own with one keep-alive connection.
	Guests int
	// Client is the kind of client each guest uses; empty means WireClient.
	Client ClientKind
	// Duration is how long the guests send requests. A call in progress
	// at the end completes and counts.
	Duration time.Duration
	// CallTimeout bounds one call; zero means no bound for WireClient and
	// client.DefaultTimeout for GoClient.
	CallTimeout time.Duration
}

// guest is one guest's client and what it measured.
type guest struct {
	client  guestClient
	samples []time.Duration
	errors  errorLog
	end     time.Time
}

// Run runs the load of cfg and returns its result. Every guest first sends
// one request outside the measurement, so that its connection is open
// before the clock starts. Run fails if any of those fails, with an error
// in which errors.As finds each guest's cause, such as a
// *client.StatusError.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Guests < 1 {
		return Result{}, fmt.Errorf("guests is %d; at least 1 is needed", cfg.Guests)
	}
	guests, err := newGuests(cfg)
	if err != nil {
		return Result{}, err
	}
	defer func() {
		for _, g := range guests {
			g.client.close()
		}
	}()

	if err := warmUp(ctx, guests); err != nil {
		return Result{}, err
	}

	start := time.Now()
	deadline := start.Add(cfg.Duration)
	var wg sync.WaitGroup
	for _, g := range guests {
		wg.Go(func() { g.loop(ctx, deadline) })
	}
	wg.Wait()
	return collect(cfg, start, guests), nil
}

func newGuests(cfg Config) ([]*guest, error) {
	guests := make([]*guest, cfg.Guests)
	for i := range guests {
		c, err := newGuestClient(cfg.Client, cfg.Address, cfg.Request, cfg.CallTimeout)
		if err != nil {
			return nil, err
		}
		guests[i] = &guest{client: c, samples: make([]time.Duration, 0, 1024)}
	}
	return guests, nil
}

// warmUp has every guest send one request at the same time.
func warmUp(ctx context.Context, guests []*guest) error {
	errs := make([]error, len(guests))
	var wg sync.WaitGroup
	for i, g := range guests {
		wg.Go(func() { errs[i] = g.client.do(ctx) })
	}
	wg.Wait()
	return firstRequestsFailed("guest", errs)
}

// loop sends requests until deadline or until ctx ends.
func (g *guest) loop(ctx context.Context, deadline time.Time) {
	for {
		begin := time.Now()
		if !begin.Before(deadline) || ctx.Err() != nil {
			g.end = begin
			return
		}
		if err := g.client.do(ctx); err != nil {
			g.errors.add(err)
			continue
		}
		g.samples = append(g.samples, time.Since(begin))
	}
}

func collect(cfg Config, start time.Time, guests []*guest) Result {
	var samples []time.Duration
	var errs errorLog
	end := start
	for _, g := range guests {
		samples = append(samples, g.samples...)
		errs.merge(&g.errors)
		if g.end.After(end) {
			end = g.end
		}
	}
	return Result{
		Op:             cfg.Request.Op,
		Target:         cfg.Target,
		Guests:         cfg.Guests,
		Calls:          len(samples),
		Errors:         errs.count,
		ErrorsByStatus: errs.byStatus,
		Elapsed:        end.Sub(start),
		Latency:        summarise(samples),
		ErrorSamples:   errs.samples,
	}
}
