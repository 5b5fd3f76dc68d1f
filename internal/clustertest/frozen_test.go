package clustertest

import (
	"strings"
	"testing"
	"time"

	"github.com/locklock/locklock/internal/lockmodel"
)

func TestMeasureFrozen(t *testing.T) {
	acq, rel := lockmodel.Acquire, lockmodel.Release
	f := Fault{Kind: FreezeEtcdFollower, Injected: at(5000), Healed: at(15000)}
	var ops []Op
	// Before: 10 grants in the 5 s of quiet (2/s), and one 409, which is
	// no grant.
	for i := range 10 {
		ops = append(ops, op(1, acq, 400*i, 400*i+5, lockmodel.Created))
	}
	ops = append(ops, op(2, acq, 4000, 4005, lockmodel.Held))
	// During: 10 grants in 10 s (1/s), one of them a 200 to a retry.
	for i := range 10 {
		out := lockmodel.Created
		if i == 3 {
			out = lockmodel.Reacquired
		}
		ops = append(ops, op(1, acq, 5100+900*i, 5100+900*i+10, out))
	}
	// A release stuck until the server's timeout, a 503 ...
	stuck := op(3, rel, 5050, 7050, lockmodel.Unknown)
	stuck.Status = 503
	// ... one the client gave up on ...
	lost := op(4, rel, 5060, 10060, lockmodel.Unknown)
	// ... and an acquire that waited 2 s for a held lock, by design.
	waited := op(5, acq, 6000, 8000, lockmodel.Held)
	waited.Wait = 2 * time.Second
	// A grant sent before the freeze and answered during it counts as
	// one during; a request sent after the thaw is not the freeze's.
	straddle := op(6, acq, 4990, 5020, lockmodel.Created)
	after := op(7, rel, 15000, 17000, lockmodel.Unknown)
	after.Status = 503
	ops = append(ops, stuck, lost, waited, straddle, after)

	got := MeasureFrozen(ops, f, 5*time.Second, "500ms")
	if got.Before != 2 || got.During != 1.1 {
		t.Errorf("granted per second: before %v during %v, want 2 and 1.1", got.Before, got.During)
	}
	// Answered: 11 before (10 grants and a 409), 12 during (10 grants,
	// the 409 after waiting, and the straddling grant).
	if got.AnsweredBefore != 2.2 || got.AnsweredDuring != 1.2 {
		t.Errorf("answers per second: before %v during %v, want 2.2 and 1.2", got.AnsweredBefore, got.AnsweredDuring)
	}
	if got.Throughput() != 0.55 {
		t.Errorf("throughput %v, want 0.55", got.Throughput())
	}
	if got.Errors != 1 || got.NoAnswer != 1 || got.Requests != 13 {
		t.Errorf("errors %d, no answer %d, requests %d; want 1, 1, 13", got.Errors, got.NoAnswer, got.Requests)
	}
	// 12 requests without a wait; the highest, 5 s, is the p99.
	if got.P99 != 5*time.Second {
		t.Errorf("p99 %v, want 5s", got.P99)
	}
	line := got.String()
	if !strings.HasPrefix(line, "frozen member: throughput=0.55 of normal, p99_ms=5000, errors=1, role=follower, probe=500ms") {
		t.Errorf("line %q", line)
	}
	if (FrozenFigures{}).Throughput() != 0 {
		t.Errorf("throughput with nothing granted before is not 0")
	}
}
