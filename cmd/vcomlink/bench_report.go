package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vcomlink/vcomlink/internal/load"
)

// benchReport is the result of vcomlink bench.
type benchReport struct {
	Duration time.Duration
	Results  []load.Result
	// Incomplete is the reason that the load stopped before every
	// measurement ran, or nil.
	Incomplete error
}

// reportRow is a result with its rate and its ratio to the raw TPM rate of
// the same operation, where that was measured.
type reportRow struct {
	load.Result
	Rate  float64  `json:"calls_per_second"`
	VsRaw *float64 `json:"ratio_to_raw,omitempty"`
}

// splitRow divides the time per agent call into the raw TPM's time, the
// trivial server's time and the rest, which is the agent's own. Each time
// is the inverse of a rate, and each rate comes from a separate
// measurement, so the rest also carries the spread of all three and can be
// negative at any number of guests. Above one guest the parts overlap,
// because one guest's HTTP exchange runs while another's TPM command does,
// so the rest understates the agent's own time there.
type splitRow struct {
	Op        load.Op       `json:"op"`
	Guests    int           `json:"guests"`
	Agent     time.Duration `json:"agent_ns"`
	TPM       time.Duration `json:"tpm_ns"`
	Transport time.Duration `json:"transport_ns"`
	Own       time.Duration `json:"own_ns"`
}

func (r *benchReport) rows() []reportRow {
	raw := make(map[load.Op]float64)
	for _, res := range r.Results {
		if res.Target == load.TargetRaw {
			raw[res.Op] = res.Rate()
		}
	}
	rows := make([]reportRow, len(r.Results))
	for i, res := range r.Results {
		rows[i] = reportRow{Result: res, Rate: res.Rate()}
		if base, ok := raw[res.Op]; ok && base > 0 && res.Target != load.TargetTrivial {
			ratio := res.Rate() / base
			rows[i].VsRaw = &ratio
		}
	}
	return rows
}

func (r *benchReport) split() []splitRow {
	raw := make(map[load.Op]float64)
	trivial := make(map[string]float64)
	for _, res := range r.Results {
		switch res.Target {
		case load.TargetRaw:
			raw[res.Op] = res.Rate()
		case load.TargetTrivial:
			trivial[fmt.Sprintf("%s/%d", res.Op, res.Guests)] = res.Rate()
		}
	}
	var rows []splitRow
	for _, res := range r.Results {
		if res.Target != load.TargetAgent {
			continue
		}
		tpmRate, rawOK := raw[res.Op]
		floorRate, floorOK := trivial[fmt.Sprintf("%s/%d", res.Op, res.Guests)]
		if !rawOK || !floorOK || res.Rate() <= 0 || tpmRate <= 0 || floorRate <= 0 {
			continue
		}
		row := splitRow{
			Op:        res.Op,
			Guests:    res.Guests,
			Agent:     perCall(res.Rate()),
			TPM:       perCall(tpmRate),
			Transport: perCall(floorRate),
		}
		row.Own = row.Agent - row.TPM - row.Transport
		rows = append(rows, row)
	}
	return rows
}

func perCall(rate float64) time.Duration {
	return time.Duration(float64(time.Second) / rate)
}

// failedCalls returns an error that counts the failed calls, or nil if
// every call succeeded.
func (r *benchReport) failedCalls() error {
	failed, measurements, rateLimited := 0, 0, false
	for _, res := range r.Results {
		if res.Errors == 0 {
			continue
		}
		failed += res.Errors
		measurements++
		rateLimited = rateLimited || res.ErrorsByStatus[http.StatusTooManyRequests] > 0
	}
	if failed == 0 {
		return nil
	}
	err := fmt.Errorf("%d calls failed, in %d of %d measurements; the report shows their errors", failed, measurements, len(r.Results))
	if rateLimited {
		err = fmt.Errorf("%w; %s", err, rateLimitAdvice)
	}
	return err
}

func (r *benchReport) write(w io.Writer, format string) error {
	if format == "json" {
		incomplete := ""
		if r.Incomplete != nil {
			incomplete = r.Incomplete.Error()
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Duration   time.Duration `json:"duration_ns"`
			Results    []reportRow   `json:"results"`
			Split      []splitRow    `json:"split,omitempty"`
			Incomplete string        `json:"incomplete,omitempty"`
		}{r.Duration, r.rows(), r.split(), incomplete})
	}

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "op\ttarget\tguests\tcalls\tcalls/s\tp50 ms\tp99 ms\tmax ms\terrors\tvs raw\t")
	for _, row := range r.rows() {
		ratio := "-"
		if row.VsRaw != nil {
			ratio = fmt.Sprintf("%.2f", *row.VsRaw)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.1f\t%s\t%s\t%s\t%d\t%s\t\n",
			row.Op, row.Target, row.Guests, row.Calls, row.Rate,
			millis(row.Latency.P50), millis(row.Latency.P99), millis(row.Latency.Max),
			row.Errors, ratio)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	if split := r.split(); len(split) > 0 {
		if err := writeSplit(w, split); err != nil {
			return err
		}
	}

	for _, row := range r.rows() {
		if len(row.ErrorSamples) > 0 {
			fmt.Fprintf(w, "\n%s on %s with %s failed %d of %d calls, such as:\n  %s\n",
				row.Op, targetName(row.Target), guestCount(row.Guests), row.Errors, row.Calls+row.Errors,
				strings.Join(row.ErrorSamples, "\n  "))
		}
	}
	return nil
}

// writeSplit writes the table of splitRows with a note on how to read it.
// The note explains a negative rest where the table has one, so that a
// reader does not take it for a fault.
func writeSplit(w io.Writer, split []splitRow) error {
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Time per agent call (1/rate) in µs: raw TPM + trivial server + the agent's own rest.")
	fmt.Fprintln(w, "Above 1 guest the parts overlap, so the rest understates the agent's own time.")
	if slices.ContainsFunc(split, func(row splitRow) bool { return row.Own < 0 }) {
		fmt.Fprintln(w, "The parts are separate measurements, so the rest also carries the change of the")
		fmt.Fprintln(w, "rates between them, and the trivial server's net/http spends more per call than")
		fmt.Fprintln(w, "the agent's own HTTP loop. A negative rest means that these errors are larger")
		fmt.Fprintln(w, "than the agent's own time, not that the agent saved time; repeat the run to see")
		fmt.Fprintln(w, "how far it moves.")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "op\tguests\tagent\ttpm\ttransport\town\t")
	for _, row := range split {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t\n", row.Op, row.Guests,
			micros(row.Agent), micros(row.TPM), micros(row.Transport), micros(row.Own))
	}
	return tw.Flush()
}

func millis(d time.Duration) string {
	return fmt.Sprintf("%.3f", float64(d)/float64(time.Millisecond))
}

func micros(d time.Duration) string {
	return fmt.Sprintf("%.0f", float64(d)/float64(time.Microsecond))
}
