package load

import (
	"errors"
	"slices"
	"time"

	"github.com/vcomlink/vcomlink/client"
)

// Target names what a Result measured.
type Target string

// The targets of a measurement.
const (
	// TargetRaw is the TPM itself, on one connection with no agent.
	TargetRaw Target = "raw"
	// TargetAgent is the agent.
	TargetAgent Target = "agent"
	// TargetTrivial is a trivial HTTP server on the same kind of socket as
	// the agent, which returns a stored response to every request.
	TargetTrivial Target = "trivial"
)

// Result is one measurement of one operation.
type Result struct {
	Op     Op     `json:"op"`
	Target Target `json:"target"`
	// Guests is the number of concurrent guests; 1 for the raw TPM.
	Guests int `json:"guests"`
	// Calls is the number of calls that succeeded.
	Calls int `json:"calls"`
	// Errors is the number of calls that failed.
	Errors int `json:"errors"`
	// ErrorsByStatus counts the failed calls that got a response, by its
	// HTTP status code. Calls that got none, such as after a failed dial,
	// are not in it.
	ErrorsByStatus map[int]int `json:"errors_by_status,omitempty"`
	// Elapsed is the time from the start until the last call ended.
	Elapsed time.Duration `json:"elapsed_ns"`
	// Latency summarises the duration of the successful calls.
	Latency Latency `json:"latency"`
	// ErrorSamples holds the first distinct error messages, at most
	// maxErrorSamples of them.
	ErrorSamples []string `json:"error_samples,omitempty"`
}

// Rate returns the successful calls per second.
func (r Result) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Calls) / r.Elapsed.Seconds()
}

// Latency is the distribution of call durations.
type Latency struct {
	Mean time.Duration `json:"mean_ns"`
	P50  time.Duration `json:"p50_ns"`
	P99  time.Duration `json:"p99_ns"`
	Max  time.Duration `json:"max_ns"`
}

// maxErrorSamples is the number of distinct error messages a Result keeps.
const maxErrorSamples = 5

// summarise computes the latency distribution of samples, which it sorts.
func summarise(samples []time.Duration) Latency {
	if len(samples) == 0 {
		return Latency{}
	}
	slices.Sort(samples)
	var sum time.Duration
	for _, d := range samples {
		sum += d
	}
	return Latency{
		Mean: sum / time.Duration(len(samples)),
		P50:  percentile(samples, 50),
		P99:  percentile(samples, 99),
		Max:  samples[len(samples)-1],
	}
}

// percentile returns the p-th percentile of sorted samples by the
// nearest-rank method.
func percentile(sorted []time.Duration, p int) time.Duration {
	rank := (p*len(sorted) + 99) / 100
	return sorted[max(rank, 1)-1]
}

// errorLog collects the error count, the count by HTTP status and the
// first distinct messages.
type errorLog struct {
	count    int
	byStatus map[int]int
	samples  []string
}

func (e *errorLog) add(err error) {
	e.count++
	var status *client.StatusError
	if errors.As(err, &status) {
		if e.byStatus == nil {
			e.byStatus = make(map[int]int)
		}
		e.byStatus[status.StatusCode]++
	}
	msg := err.Error()
	if len(e.samples) < maxErrorSamples && !slices.Contains(e.samples, msg) {
		e.samples = append(e.samples, msg)
	}
}

func (e *errorLog) merge(other *errorLog) {
	e.count += other.count
	for code, n := range other.byStatus {
		if e.byStatus == nil {
			e.byStatus = make(map[int]int)
		}
		e.byStatus[code] += n
	}
	for _, msg := range other.samples {
		if len(e.samples) < maxErrorSamples && !slices.Contains(e.samples, msg) {
			e.samples = append(e.samples, msg)
		}
	}
}
