package semmodel

import (
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

var base = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return base.Add(time.Duration(ms) * time.Millisecond) }

// history builds a history in which an operation's clock readings and its
// place in real time are the same milliseconds, unless told otherwise.
type history []porcupine.Operation

func (h *history) op(in Input, callMs, retMs int, out Output) {
	in.Name = "S"
	if in.CallAt.IsZero() {
		in.CallAt, in.ReturnAt = at(callMs), at(retMs)
	}
	ret := int64(retMs)
	if out.Outcome == Unknown {
		in.ReturnAt, ret = FarFuture, 1<<62
	}
	*h = append(*h, porcupine.Operation{ClientId: in.Client, Input: in, Call: int64(callMs), Output: out, Return: ret})
}

const ttl = time.Second

// acquire: client c asks for weight w of limit, judged at grantMs.
func (h *history) acquire(c, limit, w int, protected bool, callMs, retMs int, out Output) {
	h.op(Input{Kind: Acquire, Client: c, Limit: limit, Weight: w, Protected: protected, TTL: ttl}, callMs, retMs, out)
}

func created(id string, token uint64, w, grantMs int) Output {
	return Output{Outcome: Created, Slot: Slot{ID: id, Client: -1, Token: token, Weight: w, ExpiresAt: at(grantMs).Add(ttl)}}
}

func full(limit, inUse int) Output { return Output{Outcome: Full, Limit: limit, InUse: inUse} }

func (h *history) release(c int, id string, callMs, retMs int, out Output) {
	h.op(Input{Kind: Release, Client: c, Slot: id}, callMs, retMs, out)
}

func released(id string, token uint64, w, grantMs int) Output {
	o := created(id, token, w, grantMs)
	o.Outcome = Released
	return o
}

func check(t *testing.T, name string, h history, want porcupine.CheckResult) {
	t.Helper()
	if res, _ := porcupine.CheckOperationsVerbose(Model(), h, 10*time.Second); res != want {
		t.Errorf("%s: %v, want %v", name, res, want)
	}
}

// The names are what logs and the conformance suite's counts print.
func TestNames(t *testing.T) {
	want := []string{"created", "reacquired", "full", "limit_mismatch", "released", "refreshed", "not_found", "mismatch", "found", "unknown"}
	for o := range Outcomes {
		if got := Outcome(o).String(); got != want[o] {
			t.Errorf("Outcome(%d) = %q, want %q", o, got, want[o])
		}
	}
	if Acquire.String() != "acquire" || Release.String() != "release" || Refresh.String() != "refresh" || Read.String() != "read" {
		t.Errorf("kinds named %v %v %v %v", Acquire, Release, Refresh, Read)
	}
}

// TestWeights: slots fit while their weights sum to at most the limit; a
// refusal must be true at its instant and show the sum in use.
func TestWeights(t *testing.T) {
	var ok history
	ok.acquire(1, 3, 2, true, 0, 10, created("a", 10, 2, 5))
	ok.acquire(2, 3, 1, true, 20, 30, created("b", 11, 1, 25))
	ok.acquire(3, 3, 1, true, 40, 50, full(3, 3))
	ok.release(1, "a", 60, 70, released("a", 10, 2, 5))
	ok.acquire(3, 3, 2, true, 80, 90, created("c", 12, 2, 85))
	check(t, "fit, fit, full, release, fit", ok, porcupine.Ok)

	var over history
	over.acquire(1, 3, 2, true, 0, 10, created("a", 10, 2, 5))
	over.acquire(2, 3, 2, true, 20, 30, created("b", 11, 2, 25))
	check(t, "2 + 2 under limit 3", over, porcupine.Illegal)

	var fits history
	fits.acquire(1, 3, 1, true, 0, 10, created("a", 10, 1, 5))
	fits.acquire(2, 3, 2, true, 20, 30, full(3, 1))
	check(t, "full when it fits", fits, porcupine.Illegal)

	var wrongSum history
	wrongSum.acquire(1, 2, 2, true, 0, 10, created("a", 10, 2, 5))
	wrongSum.acquire(2, 2, 1, true, 20, 30, full(2, 1))
	check(t, "full naming the wrong in_use", wrongSum, porcupine.Illegal)

	// Concurrent: whichever went first, only one of two weight-2 slots
	// fits under 3.
	var race history
	race.acquire(1, 3, 2, true, 0, 50, created("a", 10, 2, 20))
	race.acquire(2, 3, 2, true, 0, 50, full(3, 2))
	check(t, "concurrent, one fits", race, porcupine.Ok)
	var both history
	both.acquire(1, 3, 2, true, 0, 50, created("a", 10, 2, 20))
	both.acquire(2, 3, 2, true, 0, 50, created("b", 11, 2, 30))
	check(t, "concurrent, both fit", both, porcupine.Illegal)
}

// TestLimits: a limit other than the live slots' is refused with the
// semaphore's limit; once the last slot ends, by release or expiry, any
// limit goes.
func TestLimits(t *testing.T) {
	mismatch := Output{Outcome: LimitMismatch, Limit: 2}
	var h history
	h.acquire(1, 2, 1, true, 0, 10, created("a", 10, 1, 5))
	h.acquire(2, 3, 1, true, 20, 30, mismatch)
	h.release(1, "a", 40, 50, released("a", 10, 1, 5))
	h.acquire(2, 3, 3, true, 60, 70, created("b", 11, 3, 65))
	check(t, "mismatch, then a fresh limit after release", h, porcupine.Ok)

	var live history
	live.acquire(1, 2, 1, true, 0, 10, created("a", 10, 1, 5))
	live.acquire(2, 3, 1, true, 20, 30, created("b", 11, 1, 25))
	check(t, "another limit while a slot lives", live, porcupine.Illegal)

	var expired history
	expired.acquire(1, 2, 1, true, 0, 10, created("a", 10, 1, 5))
	expired.acquire(2, 3, 1, true, 1005, 1010, created("b", 11, 1, 1005)) // a expired at 1005
	check(t, "a fresh limit once the last slot expired", expired, porcupine.Ok)

	var early history
	early.acquire(1, 2, 1, true, 0, 10, created("a", 10, 1, 5))
	early.acquire(2, 3, 1, true, 1000, 1004, created("b", 11, 1, 1004))
	check(t, "a fresh limit a millisecond before expiry", early, porcupine.Illegal)

	var wrong history
	wrong.acquire(1, 2, 1, true, 0, 10, created("a", 10, 1, 5))
	wrong.acquire(2, 3, 1, true, 20, 30, Output{Outcome: LimitMismatch, Limit: 4})
	check(t, "mismatch naming a limit nobody set", wrong, porcupine.Illegal)
}

// TestRetry: an acquire with the secret of a live slot gets that slot back,
// whatever weight or limit it asks for; without a secret there is no retry.
func TestRetry(t *testing.T) {
	again := Output{Outcome: Reacquired, Slot: Slot{ID: "a", Token: 10, Weight: 1, ExpiresAt: at(5).Add(ttl)}}
	var h history
	h.acquire(1, 1, 1, true, 0, 10, created("a", 10, 1, 5))
	h.acquire(1, 9, 1, true, 20, 30, again) // before limit_mismatch
	h.acquire(2, 1, 1, true, 40, 50, full(1, 1))
	check(t, "retry, then another client is refused", h, porcupine.Ok)

	var fresh history
	fresh.acquire(1, 2, 1, true, 0, 10, created("a", 10, 1, 5))
	fresh.acquire(1, 2, 1, true, 20, 30, created("b", 11, 1, 25))
	check(t, "a second slot for the same secret", fresh, porcupine.Illegal)

	var unprotected history
	unprotected.acquire(1, 2, 1, false, 0, 10, created("a", 10, 1, 5))
	unprotected.acquire(1, 2, 1, true, 20, 30, created("b", 11, 1, 25))
	check(t, "an unprotected slot is no retry", unprotected, porcupine.Ok)

	var stale history
	stale.acquire(1, 1, 1, true, 0, 10, created("a", 10, 1, 5))
	stale.acquire(1, 1, 1, true, 1100, 1110, again)
	check(t, "a retry of an expired slot", stale, porcupine.Illegal)

	var other history
	other.acquire(1, 1, 1, true, 0, 10, created("a", 10, 1, 5))
	other.acquire(2, 1, 1, true, 20, 30, again)
	check(t, "another client's slot as a retry", other, porcupine.Illegal)
}

// TestTokens: every grant's token beats every token seen before.
func TestTokens(t *testing.T) {
	var h history
	h.acquire(1, 2, 1, true, 0, 10, created("a", 10, 1, 5))
	h.release(1, "a", 20, 30, released("a", 10, 1, 5))
	h.acquire(2, 2, 1, true, 40, 50, created("b", 10, 1, 45))
	check(t, "a token issued twice", h, porcupine.Illegal)
}

// TestNoRevival: once an operation has seen a slot expired, one judged at
// an earlier instant does not find it.
func TestNoRevival(t *testing.T) {
	var h history
	h.acquire(1, 2, 1, true, 0, 10, created("a", 10, 1, 5))
	h.release(2, "a", 1500, 1600, Output{Outcome: NotFound})
	// Called after that answer, but with a clock reading from before the
	// expiry, as two operations can reach an engine out of clock order.
	late := Input{Kind: Refresh, Client: 1, Slot: "a", TTL: ttl, CallAt: at(500), ReturnAt: at(2000)}
	h.op(late, 1700, 1800, Output{Outcome: Refreshed, Slot: Slot{ID: "a", Token: 10, Weight: 1, ExpiresAt: at(800).Add(ttl)}})
	check(t, "a refresh revives an expired slot", h, porcupine.Illegal)
	h = h[:2]
	h.op(late, 1700, 1800, Output{Outcome: NotFound})
	check(t, "the slot stays gone", h, porcupine.Ok)
}

// TestSecrets: a protected slot ends only with its secret, an unprotected
// one with anyone's.
func TestSecrets(t *testing.T) {
	var h history
	h.acquire(1, 2, 1, true, 0, 10, created("a", 10, 1, 5))
	h.acquire(2, 2, 1, false, 20, 30, created("b", 11, 1, 25))
	h.release(2, "a", 40, 50, Output{Outcome: Mismatch})
	h.release(1, "b", 60, 70, released("b", 11, 1, 25))
	h.release(1, "a", 80, 90, released("a", 10, 1, 5))
	check(t, "mismatch, then anyone's and the owner's releases", h, porcupine.Ok)

	var stolen history
	stolen.acquire(1, 2, 1, true, 0, 10, created("a", 10, 1, 5))
	stolen.release(2, "a", 20, 30, released("a", 10, 1, 5))
	check(t, "another secret releases a protected slot", stolen, porcupine.Illegal)

	// After expiry (at 1005) a slot needs no secret: it is simply gone.
	var expired history
	expired.acquire(1, 2, 1, true, 0, 10, created("a", 10, 1, 5))
	expired.release(2, "a", 1100, 1110, Output{Outcome: Mismatch})
	check(t, "a secret mismatch for an expired slot", expired, porcupine.Illegal)
	expired = expired[:1]
	expired.release(1, "a", 1100, 1110, released("a", 10, 1, 5))
	check(t, "the release of an expired slot", expired, porcupine.Illegal)
	expired = expired[:1]
	expired.release(1, "a", 1100, 1110, Output{Outcome: NotFound})
	check(t, "an expired slot not found", expired, porcupine.Ok)
}

// TestRead: a read shows exactly the live slots.
func TestRead(t *testing.T) {
	read := func(limit, inUse int, slots ...Slot) Output {
		return Output{Outcome: Found, Limit: limit, InUse: inUse, Slots: slots}
	}
	a := Slot{ID: "a", Client: 1, Token: 10, Weight: 2, ExpiresAt: at(5).Add(ttl)}
	b := Slot{ID: "b", Client: 2, Token: 11, Weight: 1, ExpiresAt: at(25).Add(ttl)}
	start := func() history {
		var h history
		h.acquire(1, 3, 2, true, 0, 10, created("a", 10, 2, 5))
		h.acquire(2, 3, 1, true, 20, 30, created("b", 11, 1, 25))
		return h
	}
	cases := []struct {
		name string
		out  Output
		want porcupine.CheckResult
	}{
		{"both slots", read(3, 3, a, b), porcupine.Ok},
		{"a slot missing", read(3, 2, a), porcupine.Illegal},
		{"the wrong sum", read(3, 2, a, b), porcupine.Illegal},
		{"the wrong limit", read(4, 3, a, b), porcupine.Illegal},
		{"not found", Output{Outcome: NotFound}, porcupine.Illegal},
	}
	for _, c := range cases {
		h := start()
		h.op(Input{Kind: Read, Client: 3}, 40, 50, c.out)
		check(t, c.name, h, c.want)
	}
	h := start()
	h.op(Input{Kind: Read, Client: 3}, 1010, 1020, read(3, 1, b)) // a expired at 1005
	check(t, "after the first expiry", h, porcupine.Ok)
}

// TestUnknown: an acquire whose outcome is unknown may have taken a slot,
// at any time after its call, or not; a later answer may show it.
func TestUnknown(t *testing.T) {
	var took history
	took.acquire(1, 2, 2, true, 0, 10, Output{Outcome: Unknown})
	took.acquire(2, 2, 1, true, 20, 30, full(2, 2))
	check(t, "it took the slot", took, porcupine.Ok)

	var didNot history
	didNot.acquire(1, 2, 2, true, 0, 10, Output{Outcome: Unknown})
	didNot.acquire(2, 2, 1, true, 20, 30, created("b", 11, 1, 25))
	check(t, "it did not", didNot, porcupine.Ok)

	var both history
	both.acquire(1, 2, 2, true, 0, 10, Output{Outcome: Unknown})
	both.acquire(2, 2, 1, true, 20, 30, full(2, 2))
	both.acquire(3, 2, 1, true, 40, 50, created("c", 12, 1, 45))
	check(t, "it took the slot and then did not", both, porcupine.Illegal)

	var shown history
	shown.acquire(1, 2, 2, true, 0, 10, Output{Outcome: Unknown})
	shown.op(Input{Kind: Read, Client: 3}, 20, 30, Output{Outcome: Found, Limit: 2, InUse: 2,
		Slots: []Slot{{ID: "x", Client: 1, Token: 10, Weight: 2, ExpiresAt: at(8).Add(ttl)}}})
	shown.release(1, "x", 40, 50, released("x", 10, 2, 8))
	shown.acquire(2, 2, 2, true, 60, 70, created("b", 11, 2, 65))
	check(t, "a read shows the slot, its owner releases it", shown, porcupine.Ok)
}

// TestRefresh: a refresh moves a slot's expiry to its instant plus the TTL.
func TestRefresh(t *testing.T) {
	refreshed := func(grantMs int) Output {
		return Output{Outcome: Refreshed, Slot: Slot{ID: "a", Token: 10, Weight: 1, ExpiresAt: at(grantMs).Add(ttl)}}
	}
	refresh := Input{Kind: Refresh, Client: 1, Slot: "a", TTL: ttl}
	var h history
	h.acquire(1, 1, 1, true, 0, 10, created("a", 10, 1, 5))
	h.op(refresh, 500, 510, refreshed(505))
	h.acquire(2, 1, 1, true, 1200, 1210, full(1, 1))
	check(t, "held past the first expiry", h, porcupine.Ok)

	var not history
	not.acquire(1, 1, 1, true, 0, 10, created("a", 10, 1, 5))
	not.acquire(2, 1, 1, true, 1200, 1210, full(1, 1))
	check(t, "full after the only slot expired", not, porcupine.Illegal)

	var outside history
	outside.acquire(1, 1, 1, true, 0, 10, created("a", 10, 1, 5))
	outside.op(refresh, 500, 510, refreshed(600))
	check(t, "a refresh judged outside its call", outside, porcupine.Illegal)
}

// TestSlack: an engine that keeps its own time judges a grant when its
// step reaches the storage, not at the Service's reading, and may end a
// slot up to the slack late.
func TestSlack(t *testing.T) {
	for _, slack := range []time.Duration{0, 500 * time.Millisecond} {
		var h history
		h.acquire(1, 1, 1, true, 0, 10, created("a", 10, 1, 5)) // expires at 1005
		// Read at 1000, granted by the storage after 1005.
		in := Input{Kind: Acquire, Client: 2, Limit: 1, Weight: 1, Protected: true, TTL: ttl, Slack: slack}
		h.op(in, 1000, 1020, created("b", 11, 1, 1000))
		want := porcupine.Illegal
		if slack > 0 {
			want = porcupine.Ok
		}
		check(t, "slack "+slack.String()+": granted as the other slot expired", h, want)

		var late history
		late.acquire(1, 1, 1, true, 0, 10, created("a", 10, 1, 5))
		in.Kind, in.Limit = Read, 0
		late.op(in, 1300, 1310, Output{Outcome: Found, Limit: 1, InUse: 1, Slots: []Slot{{ID: "a", Client: 1, Token: 10, Weight: 1, ExpiresAt: at(5).Add(ttl)}}})
		check(t, "slack "+slack.String()+": read 300ms after expiry", late, want)
	}
}
