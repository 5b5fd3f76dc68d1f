package clustertest

import (
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/locklock/locklock/internal/lockmodel"
)

// The checks must catch what they are there for, and not cry wolf over
// what the answers leave uncertain. These hand-made histories exercise
// both, without Docker.

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// op is an operation called at call ms and answered at ret ms.
func op(client int, kind lockmodel.Kind, call, ret int, out lockmodel.Outcome) Op {
	return Op{HistoryOp: lockmodel.HistoryOp{Client: client, Kind: kind, Name: "L", Protected: true,
		TTL: 2 * time.Second, CallAt: at(call), ReturnAt: at(ret), Outcome: out}}
}

func grant(client, call, ret int, token uint64) Op {
	o := op(client, lockmodel.Acquire, call, ret, lockmodel.Created)
	o.Token, o.ExpiresAt = token, at(call+2000)
	return o
}

func withToken(o Op, token uint64, expires int) Op {
	o.Token = token
	if expires > 0 {
		o.ExpiresAt = at(expires)
	}
	return o
}

func TestChecks(t *testing.T) {
	rel, ref, acq := lockmodel.Release, lockmodel.Refresh, lockmodel.Acquire
	cases := []struct {
		name         string
		ops          []Op
		doubleHolds  int
		regressions  int
		linearizable bool
	}{
		{
			name: "one after the other, released",
			ops: []Op{
				grant(1, 0, 10, 100),
				withToken(op(1, rel, 500, 510, lockmodel.Released), 100, 0),
				grant(2, 520, 530, 101),
			},
			linearizable: true,
		},
		{
			name: "one after the other, expired",
			ops: []Op{
				grant(1, 0, 10, 100),
				op(2, acq, 1000, 1010, lockmodel.Held),
				grant(2, 2000, 2010, 101),
			},
			linearizable: true,
		},
		{
			name: "granted again while held",
			ops: []Op{
				grant(1, 0, 10, 100),
				grant(2, 1000, 1010, 101),
			},
			doubleHolds: 1,
		},
		{
			name: "granted again after a refresh extended the lock",
			ops: []Op{
				grant(1, 0, 10, 100),
				withToken(op(1, ref, 1500, 1510, lockmodel.Refreshed), 100, 3500),
				grant(2, 2500, 2510, 101),
			},
			doubleHolds: 1,
		},
		{
			name: "a release with an unknown outcome may have freed it",
			ops: []Op{
				grant(1, 0, 10, 100),
				op(1, rel, 500, 600, lockmodel.Unknown),
				grant(2, 1000, 1010, 101),
			},
			linearizable: true,
		},
		{
			name: "a refresh with an unknown outcome may have shortened it",
			ops: func() []Op {
				r := op(1, ref, 100, 200, lockmodel.Unknown)
				r.TTL = time.Second
				return []Op{grant(1, 0, 10, 100), r, grant(2, 1200, 1210, 101)}
			}(),
			linearizable: true,
		},
		{
			name: "an unprotected lock released by someone else",
			ops: func() []Op {
				g := grant(1, 0, 10, 100)
				g.Protected = false
				return []Op{g, withToken(op(3, rel, 300, 310, lockmodel.Released), 100, 0), grant(2, 400, 410, 101)}
			}(),
			linearizable: true,
		},
		{
			name: "a token that did not rise",
			ops: []Op{
				grant(1, 0, 10, 100),
				withToken(op(1, rel, 500, 510, lockmodel.Released), 100, 0),
				grant(2, 520, 530, 99),
			},
			regressions: 1,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			grants := HeldIntervals(c.ops)
			if got := len(DoubleHolds(grants)); got != c.doubleHolds {
				t.Errorf("double holds: got %d, want %d", got, c.doubleHolds)
			}
			if got := len(TokenRegressions(grants)); got != c.regressions {
				t.Errorf("token regressions: got %d, want %d", got, c.regressions)
			}
			hist := make([]lockmodel.HistoryOp, len(c.ops))
			for i, o := range c.ops {
				hist[i] = o.HistoryOp
			}
			res, _ := lockmodel.Check(hist, time.Second, 10*time.Second)
			if got := res == porcupine.Ok; got != c.linearizable {
				t.Errorf("porcupine: got %v, want linearizable=%v", res, c.linearizable)
			}
		})
	}
}

func TestResource(t *testing.T) {
	r := NewResource()
	future := time.Now().Add(time.Hour)
	steps := []struct {
		token uint64
		until time.Time
		want  bool
	}{
		{10, future, true},
		{10, future, true},       // the same grant again
		{12, future, true},       // a later grant
		{10, time.Time{}, false}, // the first holder, waking late: stale
		{11, future, false},      // on time by its own reckoning, yet stale: a double hold
		{13, future, true},
	}
	for i, s := range steps {
		if got := r.Write("L", s.token, i, s.until); got != s.want {
			t.Errorf("write %d with token %d: got %v, want %v", i, s.token, got, s.want)
		}
	}
	rep := r.Report(nil)
	if rep.Writes != 6 || rep.Stale != 2 || rep.StaleAccepted != 0 || rep.OnTimeRefused != 1 || rep.Late != 1 {
		t.Errorf("report: %+v", rep)
	}
}

func TestForgeDoubleGrant(t *testing.T) {
	ops := []Op{
		grant(1, 0, 10, 100),
		op(2, lockmodel.Acquire, 500, 510, lockmodel.Held),
		withToken(op(1, lockmodel.Release, 900, 910, lockmodel.Released), 100, 0),
	}
	forged, at, ok := ForgeDoubleGrant(ops)
	if !ok || at.Client != 2 || at.Token != 101 {
		t.Fatalf("forged %v %+v", ok, at)
	}
	if n := len(DoubleHolds(HeldIntervals(forged))); n != 1 {
		t.Errorf("double holds in the forged history: %d, want 1", n)
	}
	hist := make([]lockmodel.HistoryOp, len(forged))
	for i, o := range forged {
		hist[i] = o.HistoryOp
	}
	if res, _ := lockmodel.Check(hist, time.Second, 10*time.Second); res == porcupine.Ok {
		t.Error("porcupine took the forged history")
	}
}

func TestLabelled(t *testing.T) {
	got, err := labelled([]byte("# comment\nFROM scratch\nCOPY x /x\n"), map[string]string{"b": "2", "a": "1"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "# comment\nFROM scratch\nLABEL a=\"1\" b=\"2\"\nCOPY x /x\n"; string(got) != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if _, err := labelled([]byte("COPY x /x\n"), nil); err == nil {
		t.Error("a Dockerfile without FROM was taken")
	}
}
