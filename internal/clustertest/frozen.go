package clustertest

import (
	"fmt"
	"slices"
	"time"

	"github.com/locklock/locklock/internal/lockmodel"
)

// FrozenFigures is what freezing one etcd member did to the clients, from
// the recorded history: a measurement the suite prints, not a check.
type FrozenFigures struct {
	Role  string // follower or leader
	Probe string // the servers' --etcd-probe-interval ("off": none)

	// Granted acquires (201 or 200) per second that arrived in the
	// FrozenQuiet before the freeze and during it.
	Before, During float64
	// Answers per second with a definite outcome (any request, anything
	// but a 5xx or no answer), before and during: a steadier view of the
	// same, since grants also depend on how often locks come free.
	AnsweredBefore, AnsweredDuring float64
	// P99 of the latency of the requests without a wait sent during the
	// freeze, answered or not (a request that timed out counts with the
	// time it took to give up); an acquire with a wait may wait for a held
	// lock by design, and is left out.
	P99 time.Duration
	// Errors is the number of 5xx answers to requests sent during the
	// freeze; NoAnswer those that got no answer in time (or lost their
	// connection).
	Errors, NoAnswer, Requests int
}

// Throughput is During over Before (0 when nothing was granted before).
func (f FrozenFigures) Throughput() float64 {
	if f.Before == 0 {
		return 0
	}
	return f.During / f.Before
}

func (f FrozenFigures) String() string {
	return fmt.Sprintf("frozen member: throughput=%.2f of normal, p99_ms=%d, errors=%d, role=%s, probe=%s (granted acquires/s %.1f before, %.1f during; answers/s %.1f before, %.1f during; %d requests sent during the freeze, %d without an answer)",
		f.Throughput(), f.P99.Milliseconds(), f.Errors, f.Role, f.Probe, f.Before, f.During,
		f.AnsweredBefore, f.AnsweredDuring, f.Requests, f.NoAnswer)
}

// MeasureFrozen computes the figures of the frozen-member fault f from the
// history ops, with before the stretch of quiet before it to compare with.
func MeasureFrozen(ops []Op, f Fault, before time.Duration, probe string) FrozenFigures {
	out := FrozenFigures{Role: f.Kind.Role(), Probe: probe}
	quietFrom := f.Injected.Add(-before)
	in := func(t, from, to time.Time) bool { return !t.Before(from) && t.Before(to) }
	var granted, answered [2]int // before, during
	var latencies []time.Duration
	for _, op := range ops {
		when := -1
		switch {
		case in(op.ReturnAt, quietFrom, f.Injected):
			when = 0
		case in(op.ReturnAt, f.Injected, f.Healed):
			when = 1
		}
		if when >= 0 && op.Outcome != lockmodel.Unknown {
			answered[when]++
			if op.Kind == lockmodel.Acquire && (op.Outcome == lockmodel.Created || op.Outcome == lockmodel.Reacquired) {
				granted[when]++
			}
		}
		if !in(op.CallAt, f.Injected, f.Healed) {
			continue
		}
		out.Requests++
		if op.Status >= 500 {
			out.Errors++
		} else if op.Outcome == lockmodel.Unknown {
			out.NoAnswer++
		}
		if op.Wait == 0 {
			latencies = append(latencies, op.ReturnAt.Sub(op.CallAt))
		}
	}
	if before > 0 {
		out.Before = float64(granted[0]) / before.Seconds()
		out.AnsweredBefore = float64(answered[0]) / before.Seconds()
	}
	if d := f.Healed.Sub(f.Injected); d > 0 {
		out.During = float64(granted[1]) / d.Seconds()
		out.AnsweredDuring = float64(answered[1]) / d.Seconds()
	}
	if len(latencies) > 0 {
		slices.Sort(latencies)
		out.P99 = latencies[min(len(latencies)-1, len(latencies)*99/100)]
	}
	return out
}
