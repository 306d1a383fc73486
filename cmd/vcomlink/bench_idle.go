package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/vcomlink/vcomlink/client"
	"github.com/vcomlink/vcomlink/internal/load"
)

// idleReport is the result of vcomlink bench --idle.
type idleReport struct {
	AgentPID    int           `json:"agent_pid"`
	Connections int           `json:"connections"`
	Settle      time.Duration `json:"settle_ns"`
	Before      int64         `json:"rss_before_bytes"`
	After       int64         `json:"rss_after_bytes"`
}

// benchIdle opens --idle guest connections that each send one request of
// the first --op and then stay idle, and reports how much the agent's
// resident memory grew.
func benchIdle(ctx context.Context, f *benchFlags, stdout io.Writer) error {
	pid, err := agentPID(f)
	if err != nil {
		return err
	}
	requests, _, err := prepareRequests(ctx, &benchFlags{
		connect: f.connect, ops: opList{values: f.ops.values[:1]}, handles: f.handles,
		dataSize: f.dataSize, callTimeout: f.callTimeout,
	})
	if err != nil {
		return err
	}

	before, err := load.ResidentMemory(pid)
	if err != nil {
		return err
	}
	idle, err := load.OpenIdle(ctx, load.ClientKind(f.client), f.connect, requests[0], f.idle)
	if err != nil {
		return err
	}
	defer idle.Close()
	select {
	case <-time.After(f.settle):
	case <-ctx.Done():
		return ctx.Err()
	}
	after, err := load.ResidentMemory(pid)
	if err != nil {
		return err
	}

	r := idleReport{AgentPID: pid, Connections: f.idle, Settle: f.settle, Before: before, After: after}
	if f.format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	const mib = 1 << 20
	added := after - before
	fmt.Fprintf(stdout, "agent process %d, resident memory (VmRSS):\n", pid)
	fmt.Fprintf(stdout, "  before:                          %8.1f MiB\n", float64(before)/mib)
	fmt.Fprintf(stdout, "  with %5d idle guest connections: %8.1f MiB\n", f.idle, float64(after)/mib)
	fmt.Fprintf(stdout, "  added:                           %8.1f MiB (%.1f KiB per connection)\n",
		float64(added)/mib, float64(added)/1024/float64(f.idle))
	return nil
}

// agentPID returns --agent-pid, or the process behind the --connect Unix
// socket.
func agentPID(f *benchFlags) (int, error) {
	if f.agentPID > 0 {
		return f.agentPID, nil
	}
	a, err := client.ParseAddress(f.connect)
	if err != nil {
		return 0, err
	}
	if a.Network != "unix" {
		return 0, fmt.Errorf("--idle on a %s agent needs --agent-pid", a.Network)
	}
	return load.PeerPID(a.Path)
}
