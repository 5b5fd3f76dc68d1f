package conformance

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
)

type slotResult struct {
	slot    locklock.Slot
	created bool
	err     error
}

// startSlotWaiter begins a waiting acquire and returns once it is queued.
func (e *env) startSlotWaiter(ctx context.Context, req locklock.SlotRequest) <-chan slotResult {
	e.t.Helper()
	return startWaiting(e, req.ID, func() slotResult {
		sl, created, err := e.svc.AcquireSlot(ctx, req)
		return slotResult{sl, created, err}
	})
}

func (e *env) slotResult(ch <-chan slotResult) slotResult {
	e.t.Helper()
	return answerOf(e, ch)
}

func (e *env) assertSlotWaiting(ch <-chan slotResult) {
	e.t.Helper()
	assertWaiting(e, ch)
}

// testSemaphoreWriterNotStarved: waiting is first come, first served. A
// writer (weight = limit) queued behind readers holds back the readers who
// come after it — waiting or not, even when they would fit — and gets the
// semaphore once the earlier readers are gone; only then do the later
// readers get in. A request that fits while nobody waits is granted.
func testSemaphoreWriterNotStarved(t *testing.T, h Harness) {
	e := newEnv(t, h)
	id := e.id("rw")
	reader := func(secret string) locklock.SlotRequest {
		return locklock.SlotRequest{ID: id, Limit: 2, Weight: 1, Secret: secret, TTL: time.Hour}
	}
	r1, r2 := e.take(reader("r1")), e.take(reader("r2"))
	writerReq := locklock.SlotRequest{ID: id, Limit: 2, Weight: 2, Secret: "writer", TTL: time.Hour, Wait: time.Minute}
	writer := e.startSlotWaiter(e.ctx(), writerReq)
	lateReq := reader("r3")
	lateReq.Wait = time.Minute
	late := e.startSlotWaiter(e.ctx(), lateReq)

	_, _, err := e.svc.AcquireSlot(e.ctx(), reader("no-wait"))
	if full := assertFull(t, "a reader without wait behind waiters", err, 2, 2); full.Queued != 2 {
		t.Errorf("full error says %d queued, want 2", full.Queued)
	}
	if _, err := e.svc.ReleaseSlot(e.ctx(), id, r1.ID, "r1"); err != nil {
		t.Fatal(err)
	}
	// Room for one reader now, but the writer came first.
	e.assertSlotWaiting(writer)
	e.assertSlotWaiting(late)
	_, _, err = e.svc.AcquireSlot(e.ctx(), reader("no-wait"))
	if full := assertFull(t, "a reader that fits, behind a waiting writer", err, 2, 1); full.Queued != 2 {
		t.Errorf("full error says %d queued, want 2", full.Queued)
	}
	if sem := e.semaphore(id); !hasSlots(sem, r2) {
		t.Fatalf("semaphore while the writer waits: %+v; want just %+v", sem, r2)
	}

	if _, err := e.svc.ReleaseSlot(e.ctx(), id, r2.ID, "r2"); err != nil {
		t.Fatal(err)
	}
	w := e.slotResult(writer)
	if w.err != nil || !w.created || w.slot.Weight != 2 || !w.slot.Guard.Admits("writer") || w.slot.Token <= r2.Token {
		t.Fatalf("writer: %+v, want its slot of weight 2 with a new token", w)
	}
	e.assertSlotWaiting(late)
	if _, err := e.svc.ReleaseSlot(e.ctx(), id, w.slot.ID, "writer"); err != nil {
		t.Fatal(err)
	}
	r3 := e.slotResult(late)
	if r3.err != nil || !r3.created || !r3.slot.Guard.Admits("r3") || r3.slot.Token <= w.slot.Token {
		t.Fatalf("late reader: %+v, want its slot after the writer's", r3)
	}
	if n := e.svc.Waiters(); n != 0 {
		t.Errorf("%d waiters left", n)
	}
	// Nobody waits: a request that fits is granted at once, waiting or not
	// (a real-time bound, so that a regression fails rather than hangs).
	if _, err := e.svc.ReleaseSlot(e.ctx(), id, r3.slot.ID, "r3"); err != nil {
		t.Fatal(err)
	}
	if sl := e.take(reader("r4")); sl.Token <= r3.slot.Token {
		t.Errorf("token %d, want > %d", sl.Token, r3.slot.Token)
	}
	ctx, cancel := context.WithTimeout(e.ctx(), 10*time.Second)
	defer cancel()
	sl, created, err := e.svc.AcquireSlot(ctx, locklock.SlotRequest{ID: id, Limit: 2, Secret: "r5", Wait: time.Minute})
	if err != nil || !created || sl.Token <= r3.slot.Token {
		t.Errorf("a waiting request that fits: %+v, created %v, %v; want a slot at once", sl, created, err)
	}
}

// testSemaphoreWaitForExpiry: a waiter gets in when a slot expires — also
// when its wait ends at that very instant.
func testSemaphoreWaitForExpiry(t *testing.T, h Harness) {
	e := newEnv(t, h)
	id := e.id("wait-expiry")
	ttl := e.shortTTL()
	first := e.take(locklock.SlotRequest{ID: id, Limit: 1, TTL: ttl})
	wait := 3 * ttl
	if !h.RealTime {
		wait = ttl // the wait ends as the slot expires: the slot, not a 409
	}
	w := e.startSlotWaiter(e.ctx(), locklock.SlotRequest{ID: id, Limit: 1, Secret: "next", Wait: wait})
	e.pass(ttl)
	r := e.slotResult(w)
	if r.err != nil || !r.created || r.slot.Token <= first.Token || !r.slot.Guard.Admits("next") {
		t.Fatalf("waiter after expiry: %+v, want a new slot with a higher token", r)
	}
}

// testSemaphoreWaitTimesOut: waiters whose wait runs out get a *FullError
// counting the earlier waiters still queued (not themselves), and leave
// nothing behind.
func testSemaphoreWaitTimesOut(t *testing.T, h Harness) {
	e := newEnv(t, h)
	id := e.id("wait-timeout")
	holder := e.take(locklock.SlotRequest{ID: id, Limit: 2, Weight: 2, TTL: time.Hour})
	first, stop := context.WithCancel(e.ctx())
	defer stop()
	patient := e.startSlotWaiter(first, locklock.SlotRequest{ID: id, Limit: 2, Weight: 1, Wait: time.Minute})
	wait := 2 * time.Second
	w1 := e.startSlotWaiter(e.ctx(), locklock.SlotRequest{ID: id, Limit: 2, Weight: 1, Wait: wait})
	w2 := e.startSlotWaiter(e.ctx(), locklock.SlotRequest{ID: id, Limit: 2, Weight: 2, Wait: wait})
	e.pass(wait)
	// w1 has the patient waiter before it; w2 that one and w1, unless w1
	// has left already.
	for i, ch := range []<-chan slotResult{w1, w2} {
		r := e.slotResult(ch)
		full := assertFull(t, "timed-out waiter", r.err, 2, 2)
		if full.Queued < 1 || full.Queued > i+1 {
			t.Errorf("timed-out waiter %d: %d earlier requests queued, want 1 to %d", i+1, full.Queued, i+1)
		}
	}
	e.assertSlotWaiting(patient)
	stop()
	if r := e.slotResult(patient); !errors.Is(r.err, context.Canceled) {
		t.Errorf("cancelled waiter: %+v", r)
	}
	if n := e.svc.Waiters(); n != 0 {
		t.Errorf("%d waiters left after timeouts", n)
	}
	if sem := e.semaphore(id); !hasSlots(sem, holder) {
		t.Errorf("semaphore after timeouts: %+v; want just the holder", sem)
	}
}

// testSlotRetryWhileQueued: a holder retrying with its secret gets its slot
// back at once, with or without a wait, even with others queued — and
// before limit_mismatch; a wrong limit is still refused as such.
func testSlotRetryWhileQueued(t *testing.T, h Harness) {
	e := newEnv(t, h)
	id := e.id("retry-queued")
	mine := e.take(locklock.SlotRequest{ID: id, Limit: 1, Secret: "mine", TTL: time.Hour})
	other := e.startSlotWaiter(e.ctx(), locklock.SlotRequest{ID: id, Limit: 1, Secret: "other", Wait: time.Minute})
	// A real-time bound, so that a regression fails instead of hanging on
	// the manual clock.
	ctx, cancel := context.WithTimeout(e.ctx(), 10*time.Second)
	defer cancel()
	for _, req := range []locklock.SlotRequest{
		{ID: id, Limit: 1, Secret: "mine", Wait: 5 * time.Second},
		{ID: id, Limit: 1, Secret: "mine"},
		{ID: id, Limit: 9, Secret: "mine"},
	} {
		sl, created, err := e.svc.AcquireSlot(ctx, req)
		if err != nil || created || !sameSlot(sl, mine) {
			t.Fatalf("holder's retry %+v while another waits: %+v created=%v err=%v, want its slot unchanged", req, sl, created, err)
		}
	}
	if _, _, err := e.svc.AcquireSlot(ctx, locklock.SlotRequest{ID: id, Limit: 9, Secret: "x"}); !errors.Is(err, locklock.ErrLimitMismatch) {
		t.Errorf("another limit while a waiter is queued: %v, want ErrLimitMismatch", err)
	}
	e.assertSlotWaiting(other)
	if _, err := e.svc.ReleaseSlot(e.ctx(), id, mine.ID, "mine"); err != nil {
		t.Fatal(err)
	}
	if r := e.slotResult(other); r.err != nil || !r.created {
		t.Fatalf("waiter after the release: %+v", r)
	}
}

// testSemaphoreWaiterGone: a waiter whose client went away never holds a
// slot.
func testSemaphoreWaiterGone(t *testing.T, h Harness) {
	e := newEnv(t, h)
	id := e.id("waiter-gone")
	held := e.take(locklock.SlotRequest{ID: id, Limit: 1, Secret: "holder", TTL: time.Hour})
	ctx, cancel := context.WithCancel(e.ctx())
	w := e.startSlotWaiter(ctx, locklock.SlotRequest{ID: id, Limit: 1, Secret: "gone", Wait: time.Minute})
	cancel()
	if r := e.slotResult(w); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled waiter: %+v, want context.Canceled", r)
	}
	if _, err := e.svc.ReleaseSlot(e.ctx(), id, held.ID, "holder"); err != nil {
		t.Fatalf("release: %v", err)
	}
	if _, err := e.svc.GetSemaphore(e.ctx(), locklock.SemaphoreRequest{ID: id}); !errors.Is(err, locklock.ErrSemaphoreNotFound) {
		t.Errorf("after the waiter left and the holder released: %v, want no semaphore", err)
	}
	if n := e.svc.Waiters(); n != 0 {
		t.Errorf("%d waiters left", n)
	}
}

// testSemaphoreStopWaiting: draining answers waiters with ErrShuttingDown
// and refuses new ones; requests without wait are still served.
func testSemaphoreStopWaiting(t *testing.T, h Harness) {
	e := newEnv(t, h)
	id := e.id("draining")
	e.take(locklock.SlotRequest{ID: id, Limit: 1, TTL: time.Hour})
	w := e.startSlotWaiter(e.ctx(), locklock.SlotRequest{ID: id, Limit: 1, Wait: time.Minute})
	e.svc.StopWaiting()
	if r := e.slotResult(w); !errors.Is(r.err, locklock.ErrShuttingDown) || !errors.Is(r.err, locklock.ErrUnavailable) {
		t.Fatalf("waiter during drain: %+v, want ErrShuttingDown (ErrUnavailable)", r)
	}
	if _, _, err := e.svc.AcquireSlot(e.ctx(), locklock.SlotRequest{ID: id, Limit: 1, Wait: time.Second}); !errors.Is(err, locklock.ErrShuttingDown) {
		t.Errorf("new waiter during drain: %v, want ErrShuttingDown", err)
	}
	e.take(locklock.SlotRequest{ID: e.id("draining-free"), Limit: 1})
	if sem := e.semaphore(id); sem.InUse != 1 {
		t.Errorf("semaphore during drain: %+v", sem)
	}
}
