package lockmodel

import (
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// The names are what logs, dumps and the conformance suite's outcome counts
// print; every outcome has one.
func TestNames(t *testing.T) {
	want := []string{"created", "reacquired", "held", "released", "refreshed", "not_found", "mismatch", "unknown"}
	for o := range Outcomes {
		if got := Outcome(o).String(); got != want[o] {
			t.Errorf("Outcome(%d) = %q, want %q", o, got, want[o])
		}
	}
	if Acquire.String() != "acquire" || Release.String() != "release" || Refresh.String() != "refresh" {
		t.Errorf("kinds named %v %v %v", Acquire, Release, Refresh)
	}
}

// Check accepts a grant, its release and a later grant with a higher token,
// and rejects a second grant while the first is held.
func TestCheck(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return base.Add(time.Duration(ms) * time.Millisecond) }
	grant := func(client, call int, token uint64) HistoryOp {
		return HistoryOp{Client: client, Kind: Acquire, Name: "L", Protected: true, TTL: 3 * time.Second,
			CallAt: at(call), ReturnAt: at(call + 10), Outcome: Created, Token: token, ExpiresAt: at(call + 5).Add(3 * time.Second)}
	}
	release := HistoryOp{Client: 1, Kind: Release, Name: "L", CallAt: at(500), ReturnAt: at(510), Outcome: Released, Token: 100}
	cases := []struct {
		name string
		ops  []HistoryOp
		want porcupine.CheckResult
	}{
		{"grant, release, grant", []HistoryOp{grant(1, 0, 100), release, grant(2, 1000, 101)}, porcupine.Ok},
		{"second grant while held", []HistoryOp{grant(1, 0, 100), grant(2, 1000, 101)}, porcupine.Illegal},
	}
	for _, c := range cases {
		if res, _ := Check(c.ops, 0, 10*time.Second); res != c.want {
			t.Errorf("%s: %v, want %v", c.name, res, c.want)
		}
	}
}
