package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// benchReport is what a run measured.
type benchReport struct {
	Mode              string                   `json:"mode"`
	Server            string                   `json:"server"`
	Concurrency       int                      `json:"concurrency"`
	Keys              int                      `json:"keys,omitempty"`
	Rate              float64                  `json:"rate,omitempty"` // --rate, cycles/s
	Seconds           float64                  `json:"seconds"`
	Cycles            int64                    `json:"cycles"`
	CyclesPerSecond   float64                  `json:"cycles_per_second"`
	Requests          int64                    `json:"requests"`
	RequestsPerSecond float64                  `json:"requests_per_second"`
	Errors            int64                    `json:"errors"`
	ErrorsBy          map[string]int64         `json:"errors_by"`
	Latency           map[string]latencyReport `json:"latency"`
	Interrupted       bool                     `json:"interrupted,omitempty"`

	// Event streams kept open during the run (--watch, --watch-namespace):
	// how many, the events and resets they received by the end of the
	// load, and how many the server ended early.
	Streams      int    `json:"streams,omitempty"`
	StreamEvents int64  `json:"stream_events,omitempty"`
	StreamResets int64  `json:"stream_resets,omitempty"`
	StreamsCut   int64  `json:"streams_cut,omitempty"`
	StreamError  string `json:"stream_error,omitempty"` // the streams could not be opened: no load ran
}

// latencyReport is one request kind's latencies in milliseconds.
type latencyReport struct {
	Count int64   `json:"count"`
	Min   float64 `json:"min_ms"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

func (r *benchRun) report(elapsed time.Duration) *benchReport {
	c := r.cfg
	rep := &benchReport{
		Mode:        c.mode,
		Server:      c.api.String(),
		Concurrency: c.concurrency,
		Rate:        c.rate,
		Seconds:     round(elapsed.Seconds(), 3),
		ErrorsBy:    map[string]int64{},
		Latency:     map[string]latencyReport{},
	}
	switch c.mode {
	case benchHealthz:
		rep.Server = c.ops.String()
	case benchContended, benchKeyed:
		rep.Keys = c.keys
	}
	if s := r.streams; s != nil {
		rep.Streams, rep.StreamEvents, rep.StreamResets, rep.StreamsCut = s.open, s.events.Load(), s.resets.Load(), s.cut.Load()
	}
	var hists [numKinds]histogram
	for _, w := range r.workers {
		rep.Cycles += w.cycles.Load()
		rep.Requests += w.requests.Load()
		rep.Errors += w.errors.Load()
		for k, n := range w.errs {
			rep.ErrorsBy[k] += n
		}
		for k := range hists {
			hists[k].merge(&w.hist[k])
		}
	}
	secs := elapsed.Seconds()
	rep.CyclesPerSecond = round(float64(rep.Cycles)/secs, 1)
	rep.RequestsPerSecond = round(float64(rep.Requests)/secs, 1)
	ms := func(d time.Duration) float64 { return round(float64(d)/float64(time.Millisecond), 3) }
	for k, h := range hists {
		if h.n == 0 {
			continue
		}
		rep.Latency[kindNames[k]] = latencyReport{
			Count: h.n,
			Min:   ms(h.min),
			Mean:  ms(h.sum / time.Duration(h.n)),
			P50:   ms(h.quantile(0.50)),
			P90:   ms(h.quantile(0.90)),
			P99:   ms(h.quantile(0.99)),
			P999:  ms(h.quantile(0.999)),
			Max:   ms(h.max),
		}
	}
	return rep
}

func round(x float64, digits int) float64 {
	p := math.Pow10(digits)
	return math.Round(x*p) / p
}

func (rep *benchReport) writeText(w io.Writer) {
	what := fmt.Sprintf("%s mode", rep.Mode)
	if rep.Keys > 0 {
		what += fmt.Sprintf(" on %d keys", rep.Keys)
	}
	if rep.Rate > 0 {
		what += fmt.Sprintf(" at %g cycles/s", rep.Rate)
	}
	fmt.Fprintf(w, "locklock bench: %s, %d workers, %.2fs against %s", what, rep.Concurrency, rep.Seconds, rep.Server)
	if rep.Interrupted {
		fmt.Fprint(w, " (interrupted)")
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "cycles    %12d  %12.1f/s\n", rep.Cycles, rep.CyclesPerSecond)
	fmt.Fprintf(w, "requests  %12d  %12.1f/s\n", rep.Requests, rep.RequestsPerSecond)
	fmt.Fprintf(w, "errors    %12d\n", rep.Errors)
	if rep.StreamError != "" {
		fmt.Fprintf(w, "streams   %s\n", rep.StreamError)
	}
	if rep.Streams > 0 {
		fmt.Fprintf(w, "streams   %12d  events %d, resets %d, cut %d\n", rep.Streams, rep.StreamEvents, rep.StreamResets, rep.StreamsCut)
	}
	if len(rep.Latency) > 0 {
		fmt.Fprintf(w, "\nlatency   %10s %10s %10s %10s %10s %10s %10s %10s\n", "count", "min", "mean", "p50", "p90", "p99", "p99.9", "max")
		for _, kind := range kindNames {
			l, ok := rep.Latency[kind]
			if !ok {
				continue
			}
			fmt.Fprintf(w, "%-9s %10d %10s %10s %10s %10s %10s %10s %10s\n", kind, l.Count,
				fmtMillis(l.Min), fmtMillis(l.Mean), fmtMillis(l.P50), fmtMillis(l.P90), fmtMillis(l.P99), fmtMillis(l.P999), fmtMillis(l.Max))
		}
	}
	if len(rep.ErrorsBy) > 0 {
		fmt.Fprintln(w, "\nerrors by kind:")
		keys := make([]string, 0, len(rep.ErrorsBy))
		for k := range rep.ErrorsBy {
			keys = append(keys, k)
		}
		// Most frequent first.
		slices.SortFunc(keys, func(a, b string) int {
			if c := rep.ErrorsBy[b] - rep.ErrorsBy[a]; c != 0 {
				return int(max(min(c, 1), -1))
			}
			return strings.Compare(a, b)
		})
		for _, k := range keys {
			fmt.Fprintf(w, "  %s: %d\n", k, rep.ErrorsBy[k])
		}
	}
}

// fmtMillis shows a latency in milliseconds with a unit that suits it.
func fmtMillis(ms float64) string {
	switch {
	case ms < 1:
		return fmt.Sprintf("%.0fµs", ms*1000)
	case ms < 1000:
		return fmt.Sprintf("%.2fms", ms)
	default:
		return fmt.Sprintf("%.2fs", ms/1000)
	}
}
