package conformance

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
)

// RunSemaphores runs the semaphore sub-tests (API.md §10) against engines
// from h, which must implement locklock.SemaphoreEngine. It is an entry
// point of its own, beside Run, so that engines opt in once they store
// semaphores:
//
//	func TestSemaphoreConformance(t *testing.T) {
//		conformance.RunSemaphores(t, conformance.Harness{NewEngine: ...})
//	}
func RunSemaphores(t *testing.T, h Harness) {
	t.Helper()
	probe := h.NewEngine(t)
	_, ok := probe.(locklock.SemaphoreEngine)
	_ = probe.Close()
	if !ok {
		t.Fatalf("%T does not implement locklock.SemaphoreEngine", probe)
	}
	for _, tc := range semaphoreSuite() {
		t.Run(tc.name, func(t *testing.T) {
			if h.Parallel {
				t.Parallel()
			}
			tc.run(t, h)
		})
	}
}

func semaphoreSuite() []testCase {
	return []testCase{
		{"Fits", testSlotFits},
		{"Weights", testSlotWeights},
		{"Full", testSemaphoreFull},
		{"LimitMismatch", testLimitMismatch},
		{"RetryWithSecret", testSlotRetry},
		{"Validation", testSlotValidation},
		{"TokensRise", testSlotTokensRise},
		{"ExpiryJudgedAtNow", testSlotExpiry},
		{"NoRevivalAfterExpiry", testSlotNoRevival},
		{"SweepCounts", testSlotSweep},
		{"SecretRules", testSlotSecrets},
		{"SlotNotFound", testSlotNotFound},
		{"GetSemaphore", testGetSemaphore},
		{"ListSemaphores", testListSemaphores},
		{"NamespaceIsolation", testSemaphoreNamespaces},
		{"LockAndSemaphoreShareAName", testLockAndSemaphore},
		{"LabelsStored", testSlotLabels},
		{"Patch", testSlotPatch},
		{"Revoke", testRevokeSlot},
		{"WaitWriterNotStarved", testSemaphoreWriterNotStarved},
		{"WaitForExpiry", testSemaphoreWaitForExpiry},
		{"WaitTimesOut", testSemaphoreWaitTimesOut},
		{"RetryWhileQueued", testSlotRetryWhileQueued},
		{"WaiterGoneNeverHolds", testSemaphoreWaiterGone},
		{"StopWaiting", testSemaphoreStopWaiting},
		{"ContextCancelled", testSlotContextCancelled},
		{"Close", testSemaphoreClose},
		{"Reopen", testSemaphoreReopen},
		{"RaceNeverOverLimit", testSemaphoreRace},
		{"RaceChurn", testSemaphoreChurn},
		{"Linearizable", testSemaphoresLinearizable},
	}
}

// slots is the engine's semaphore side (RunSemaphores checked it is there).
func (e *env) slots() locklock.SemaphoreEngine { return e.engine.(locklock.SemaphoreEngine) }

// take must create a slot.
func (e *env) take(req locklock.SlotRequest) locklock.Slot {
	e.t.Helper()
	sl, created, err := e.svc.AcquireSlot(e.ctx(), req)
	if err != nil || !created {
		e.t.Fatalf("acquire a slot of %s (limit %d, weight %d): created=%v err=%v, want a new slot", req.ID.Name, req.Limit, req.Weight, created, err)
	}
	return sl
}

// semaphore must find the semaphore.
func (e *env) semaphore(id locklock.ID) locklock.Semaphore {
	e.t.Helper()
	sem, err := e.svc.GetSemaphore(e.ctx(), locklock.SemaphoreRequest{ID: id})
	if err != nil {
		e.t.Fatalf("get semaphore %s: %v", id.Name, err)
	}
	return sem
}

// sameSlot compares what an engine stored, ignoring when it was observed.
func sameSlot(a, b locklock.Slot) bool {
	return a.Semaphore == b.Semaphore && a.ID == b.ID && a.Limit == b.Limit && a.Weight == b.Weight &&
		a.Token == b.Token && a.Guard == b.Guard && a.AcquiredAt.Equal(b.AcquiredAt) && a.ExpiresAt.Equal(b.ExpiresAt) &&
		a.Holder == b.Holder && maps.Equal(a.Metadata, b.Metadata)
}

// hasSlots says whether sem's slots are want's, in that order.
func hasSlots(sem locklock.Semaphore, want ...locklock.Slot) bool {
	return slices.EqualFunc(sem.Slots, want, sameSlot)
}

func tokens(slots []locklock.Slot) []uint64 {
	var out []uint64
	for _, sl := range slots {
		out = append(out, sl.Token)
	}
	return out
}

// assertFull checks that err is a *FullError with these numbers.
func assertFull(t *testing.T, what string, err error, limit, inUse int) *locklock.FullError {
	t.Helper()
	var full *locklock.FullError
	if !errors.As(err, &full) || !errors.Is(err, locklock.ErrSemaphoreFull) {
		t.Fatalf("%s: %v, want *FullError", what, err)
	}
	if full.Limit != limit || full.InUse != inUse {
		t.Errorf("%s: full with limit %d, in use %d; want %d and %d", what, full.Limit, full.InUse, limit, inUse)
	}
	return full
}

// testSlotFits: slots are granted while their weights fit under the limit,
// with the fields asked for, and read back as granted.
func testSlotFits(t *testing.T, h Harness) {
	e := newEnv(t, h)
	id := e.id("fits")
	a := e.take(locklock.SlotRequest{ID: id, Limit: 3, Weight: 2, Secret: "a", TTL: time.Minute})
	if a.Semaphore != id || !locklock.ValidSlotID(a.ID) || a.Limit != 3 || a.Weight != 2 || a.Token == 0 || !a.Protected() {
		t.Fatalf("slot %+v: want semaphore %s, a 22-character id, limit 3, weight 2, a token, protected", a, id)
	}
	if got := a.ExpiresAt.Sub(a.AcquiredAt); got != time.Minute || a.Remaining() != time.Minute {
		t.Errorf("expires_at - acquired_at = %v, remaining %v; want 1m", got, a.Remaining())
	}
	if got, err := e.svc.GetSlot(e.ctx(), id, a.ID); err != nil || !sameSlot(got, a) {
		t.Fatalf("get slot = %+v, %v; want %+v", got, err, a)
	}
	b := e.take(locklock.SlotRequest{ID: id, Limit: 3, Weight: 1, TTL: time.Minute})
	if b.ID == a.ID || b.Token <= a.Token || b.Protected() {
		t.Errorf("second slot %+v: want another id, a higher token than %d, unprotected", b, a.Token)
	}
	sem := e.semaphore(id)
	if sem.ID != id || sem.Limit != 3 || sem.InUse != 3 || !hasSlots(sem, a, b) || sem.Next != "" {
		t.Errorf("semaphore = %+v; want limit 3, in use 3, slots %v by token", sem, tokens([]locklock.Slot{a, b}))
	}

	// Without TTL the default lifetime applies.
	d := e.take(locklock.SlotRequest{ID: e.id("fits-default"), Limit: 1})
	if got := d.ExpiresAt.Sub(d.AcquiredAt); got != locklock.DefaultTTL {
		t.Errorf("default ttl = %v, want %v", got, locklock.DefaultTTL)
	}
}

// testSlotWeights: weight defaults to 1 (a zero weight in a SlotRequest is
// no weight given), and a slot may take the whole limit.
func testSlotWeights(t *testing.T, h Harness) {
	e := newEnv(t, h)
	one := e.take(locklock.SlotRequest{ID: e.id("default-weight"), Limit: 2})
	if one.Weight != 1 {
		t.Errorf("weight without one given = %d, want 1", one.Weight)
	}
	if sem := e.semaphore(one.Semaphore); sem.InUse != 1 {
		t.Errorf("in use %d, want 1", sem.InUse)
	}
	writer := e.id("writer")
	w := e.take(locklock.SlotRequest{ID: writer, Limit: 5, Weight: 5})
	if w.Weight != 5 {
		t.Errorf("weight = %d, want 5", w.Weight)
	}
	_, _, err := e.svc.AcquireSlot(e.ctx(), locklock.SlotRequest{ID: writer, Limit: 5})
	assertFull(t, "a reader beside a writer", err, 5, 5)
	big := e.take(locklock.SlotRequest{ID: e.id("largest"), Limit: locklock.MaxSemaphoreLimit, Weight: locklock.MaxSemaphoreLimit})
	if big.Limit != locklock.MaxSemaphoreLimit || big.Weight != locklock.MaxSemaphoreLimit {
		t.Errorf("largest slot %+v", big)
	}
}

// testSemaphoreFull: a weight that does not fit is refused with the
// semaphore's numbers and the earliest expiry, and changes nothing.
func testSemaphoreFull(t *testing.T, h Harness) {
	e := newEnv(t, h)
	id := e.id("full")
	a := e.take(locklock.SlotRequest{ID: id, Limit: 3, Weight: 2, Secret: "a", TTL: time.Hour})
	b := e.take(locklock.SlotRequest{ID: id, Limit: 3, Weight: 1, Secret: "b", TTL: 30 * time.Minute})
	for _, secret := range []string{"", "c"} {
		sl, created, err := e.svc.AcquireSlot(e.ctx(), locklock.SlotRequest{ID: id, Limit: 3, Secret: secret, TTL: time.Minute})
		full := assertFull(t, "a third slot", err, 3, 3)
		if created || sl.ID != "" {
			t.Errorf("a refused acquire returned %+v, created %v", sl, created)
		}
		if full.Weight != 1 || full.Queued != 0 || !full.FreesAt.Equal(b.ExpiresAt) || full.ID != id {
			t.Errorf("full error %+v: want weight 1, nobody queued, frees at the earliest expiry %v", full, b.ExpiresAt)
		}
	}
	if sem := e.semaphore(id); sem.InUse != 3 || !hasSlots(sem, a, b) {
		t.Fatalf("after refused acquires: %+v; want the two slots unchanged", sem)
	}
	if _, err := e.svc.ReleaseSlot(e.ctx(), id, b.ID, "b"); err != nil {
		t.Fatalf("release: %v", err)
	}
	_, _, err := e.svc.AcquireSlot(e.ctx(), locklock.SlotRequest{ID: id, Limit: 3, Weight: 2})
	if full := assertFull(t, "weight 2 beside weight 2", err, 3, 2); !full.FreesAt.Equal(a.ExpiresAt) {
		t.Errorf("frees at %v, want %v", full.FreesAt, a.ExpiresAt)
	}
	c := e.take(locklock.SlotRequest{ID: id, Limit: 3, Weight: 1})
	if sem := e.semaphore(id); sem.InUse != 3 || !hasSlots(sem, a, c) {
		t.Errorf("after the release and a new slot: %+v", sem)
	}
}

// testLimitMismatch: while a semaphore has live slots, an acquire with
// another limit is refused with the semaphore's — even where its weight
// would fit, and before fullness; after the last slot is released the next
// acquire sets the limit afresh (expiry: ExpiryJudgedAtNow).
func testLimitMismatch(t *testing.T, h Harness) {
	e := newEnv(t, h)
	id := e.id("limits")
	a := e.take(locklock.SlotRequest{ID: id, Limit: 3, Secret: "a"})
	b := e.take(locklock.SlotRequest{ID: id, Limit: 3})
	mismatch := func(what string, limit int) {
		t.Helper()
		sl, created, err := e.svc.AcquireSlot(e.ctx(), locklock.SlotRequest{ID: id, Limit: limit, Secret: "other"})
		var lm *locklock.LimitMismatchError
		if !errors.As(err, &lm) || !errors.Is(err, locklock.ErrLimitMismatch) || created || sl.ID != "" {
			t.Fatalf("%s: %+v, created %v, %v; want *LimitMismatchError", what, sl, created, err)
		}
		if lm.Limit != 3 || lm.Asked != limit || lm.ID != id {
			t.Errorf("%s: mismatch %+v; want limit 3, asked %d", what, lm, limit)
		}
	}
	mismatch("a larger limit", 4)
	mismatch("a smaller limit", 2)
	c := e.take(locklock.SlotRequest{ID: id, Limit: 3})
	mismatch("a larger limit on a full semaphore", 5)
	if sem := e.semaphore(id); sem.Limit != 3 || !hasSlots(sem, a, b, c) {
		t.Fatalf("after refused acquires: %+v", sem)
	}
	for _, sl := range []locklock.Slot{a, b} {
		if _, err := e.svc.ReleaseSlot(e.ctx(), id, sl.ID, "a"); err != nil {
			t.Fatalf("release: %v", err)
		}
	}
	mismatch("another limit with one slot left", 4)
	if _, err := e.svc.ReleaseSlot(e.ctx(), id, c.ID, ""); err != nil {
		t.Fatalf("release: %v", err)
	}
	fresh := e.take(locklock.SlotRequest{ID: id, Limit: 4, Weight: 4})
	if fresh.Limit != 4 || fresh.Token <= c.Token {
		t.Errorf("after the last slot: %+v; want limit 4 and a token above %d", fresh, c.Token)
	}
	if sem := e.semaphore(id); sem.Limit != 4 || sem.InUse != 4 {
		t.Errorf("semaphore after a fresh limit: %+v", sem)
	}
}

// testSlotRetry: an acquire carrying the secret of a live slot gets that
// slot back, unchanged, whatever else it asks for — before limit_mismatch
// and before fullness; without a secret, or with another, there is no retry.
func testSlotRetry(t *testing.T, h Harness) {
	e := newEnv(t, h)
	id := e.id("retry")
	mine := e.take(locklock.SlotRequest{ID: id, Limit: 2, Secret: "mine", TTL: time.Hour, Holder: "h"})
	e.pass(time.Second)
	retries := []locklock.SlotRequest{
		{ID: id, Limit: 2, Weight: 2, Secret: "mine", TTL: 2 * time.Hour, Holder: "other", Metadata: someMetadata},
		{ID: id, Limit: 7, Secret: "mine"}, // another limit: still the retry
	}
	for _, req := range retries {
		again, created, err := e.svc.AcquireSlot(e.ctx(), req)
		if err != nil || created || !sameSlot(again, mine) {
			t.Fatalf("retry %+v: %+v, created %v, %v; want the slot unchanged %+v", req, again, created, err, mine)
		}
	}
	e.take(locklock.SlotRequest{ID: id, Limit: 2, Secret: "second"}) // now full
	if again, created, err := e.svc.AcquireSlot(e.ctx(), locklock.SlotRequest{ID: id, Limit: 2, Secret: "mine"}); err != nil || created || !sameSlot(again, mine) {
		t.Fatalf("retry on a full semaphore: %+v, created %v, %v; want the slot", again, created, err)
	}
	_, _, err := e.svc.AcquireSlot(e.ctx(), locklock.SlotRequest{ID: id, Limit: 2, Secret: "someone"})
	assertFull(t, "another secret", err, 2, 2)
	if sem := e.semaphore(id); len(sem.Slots) != 2 || sem.InUse != 2 {
		t.Errorf("retries changed the semaphore: %+v", sem)
	}

	// Without a secret there is no telling a holder from anyone else:
	// every acquire is a new slot, and a secret matches no unprotected one.
	open := e.id("retry-unprotected")
	u := e.take(locklock.SlotRequest{ID: open, Limit: 3})
	u2 := e.take(locklock.SlotRequest{ID: open, Limit: 3})
	u3 := e.take(locklock.SlotRequest{ID: open, Limit: 3, Secret: "x"})
	if u2.ID == u.ID || u3.ID == u.ID || u3.ID == u2.ID {
		t.Error("acquires without a secret, or with a new one, returned an existing slot")
	}
	_, _, err = e.svc.AcquireSlot(e.ctx(), locklock.SlotRequest{ID: open, Limit: 3})
	assertFull(t, "unprotected acquire on a full semaphore", err, 3, 3)

	// Once the slot is gone the secret takes a new one.
	if _, err := e.svc.ReleaseSlot(e.ctx(), id, mine.ID, "mine"); err != nil {
		t.Fatal(err)
	}
	next := e.take(locklock.SlotRequest{ID: id, Limit: 2, Secret: "mine"})
	if next.ID == mine.ID || next.Token <= mine.Token {
		t.Errorf("after release the secret got %+v; want a new slot", next)
	}
}

// testSlotValidation: bad requests are refused with ErrInvalidArgument
// naming the field (or the name's own error), and change nothing.
func testSlotValidation(t *testing.T, h Harness) {
	e := newEnv(t, h)
	id := e.id("validated")
	held := e.take(locklock.SlotRequest{ID: id, Limit: 3, Secret: "s", Holder: "h"})
	fresh := e.id("validated-fresh")
	cases := []struct {
		name  string
		req   locklock.SlotRequest
		field string
	}{
		{"limit 0", locklock.SlotRequest{Limit: 0}, "limit"},
		{"negative limit", locklock.SlotRequest{Limit: -1}, "limit"},
		{"limit over the maximum", locklock.SlotRequest{Limit: locklock.MaxSemaphoreLimit + 1}, "limit"},
		{"negative weight", locklock.SlotRequest{Limit: 3, Weight: -1}, "weight"},
		{"weight over the limit", locklock.SlotRequest{Limit: 3, Weight: 4}, "weight"},
		{"weight over the maximum", locklock.SlotRequest{Limit: locklock.MaxSemaphoreLimit, Weight: locklock.MaxSemaphoreLimit + 1}, "weight"},
		{"negative ttl", locklock.SlotRequest{Limit: 3, TTL: -time.Second}, "expires_in"},
		{"ttl under a second", locklock.SlotRequest{Limit: 3, TTL: 500 * time.Millisecond}, "expires_in"},
		{"negative wait", locklock.SlotRequest{Limit: 3, Wait: -time.Second}, "wait"},
		{"wait over the maximum", locklock.SlotRequest{Limit: 3, Wait: locklock.DefaultMaxWait + time.Second}, "wait"},
		{"secret with a leading space", locklock.SlotRequest{Limit: 3, Secret: " s"}, "secret"},
		{"secret with a control character", locklock.SlotRequest{Limit: 3, Secret: "a\x01"}, "secret"},
		{"holder with a newline", locklock.SlotRequest{Limit: 3, Holder: "a\nb"}, "holder"},
		{"metadata name with a space", locklock.SlotRequest{Limit: 3, Metadata: map[string]string{"a b": "v"}}, "metadata"},
	}
	for _, c := range cases {
		for _, target := range []locklock.ID{id, fresh} {
			req := c.req
			req.ID = target
			_, created, err := e.svc.AcquireSlot(e.ctx(), req)
			if created || !errors.Is(err, locklock.ErrInvalidArgument) || !strings.Contains(err.Error(), c.field) {
				t.Errorf("%s: created %v, %v; want ErrInvalidArgument naming %s", c.name, created, err, c.field)
			}
		}
	}
	badNames := map[locklock.ID]error{
		{Namespace: locklock.DefaultNamespace, Kind: locklock.KindKey, Name: "a b"}:   locklock.ErrInvalidName,
		{Namespace: locklock.DefaultNamespace, Kind: locklock.KindUUID, Name: "nope"}: locklock.ErrInvalidUUID,
	}
	for bad, want := range badNames {
		if _, _, err := e.svc.AcquireSlot(e.ctx(), locklock.SlotRequest{ID: bad, Limit: 1}); !errors.Is(err, want) {
			t.Errorf("acquire of %q: %v, want %v", bad.Name, err, want)
		}
		if _, err := e.svc.GetSemaphore(e.ctx(), locklock.SemaphoreRequest{ID: bad}); !errors.Is(err, want) {
			t.Errorf("get of %q: %v, want %v", bad.Name, err, want)
		}
	}
	bad := "a\x00b"
	patches := []locklock.PatchRequest{
		{ID: id, Secret: "s", Holder: &bad},
		{ID: id, Secret: "s", SetMetadata: true, Metadata: map[string]string{"": "v"}},
		{ID: id, Secret: "s", TTL: -time.Second},
	}
	for _, p := range patches {
		if _, err := e.svc.PatchSlot(e.ctx(), held.ID, p); !errors.Is(err, locklock.ErrInvalidArgument) {
			t.Errorf("patch %+v: %v, want ErrInvalidArgument", p, err)
		}
	}
	for _, req := range []locklock.SemaphoreRequest{{ID: id, Limit: -1}, {ID: id, Limit: locklock.MaxSlotsPage + 1}, {ID: id, After: "x"}} {
		if _, err := e.svc.GetSemaphore(e.ctx(), req); !errors.Is(err, locklock.ErrInvalidArgument) {
			t.Errorf("get semaphore %+v: %v, want ErrInvalidArgument", req, err)
		}
	}
	if sem := e.semaphore(id); sem.InUse != 1 || !hasSlots(sem, held) {
		t.Errorf("refused requests changed the semaphore: %+v; want just %+v", sem, held)
	}
	if _, err := e.svc.GetSemaphore(e.ctx(), locklock.SemaphoreRequest{ID: fresh}); !errors.Is(err, locklock.ErrSemaphoreNotFound) {
		t.Errorf("refused requests made a semaphore: %v", err)
	}
}
