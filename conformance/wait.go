package conformance

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
)

type acquireResult struct {
	lock    locklock.Lock
	created bool
	err     error
}

// startWaiter begins a long-poll acquire and returns once it is queued.
func (e *env) startWaiter(ctx context.Context, req locklock.AcquireRequest) <-chan acquireResult {
	e.t.Helper()
	return startWaiting(e, req.ID, func() acquireResult {
		l, created, err := e.svc.Acquire(ctx, req)
		return acquireResult{l, created, err}
	})
}

func (e *env) result(ch <-chan acquireResult) acquireResult {
	e.t.Helper()
	return answerOf(e, ch)
}

func (e *env) assertStillWaiting(ch <-chan acquireResult) {
	e.t.Helper()
	assertWaiting(e, ch)
}

// startWaiting runs acquire, a waiting acquire of a lock or a slot named
// id, and returns once the Service counts it as a waiter.
func startWaiting[R any](e *env, id locklock.ID, acquire func() R) <-chan R {
	e.t.Helper()
	before := e.svc.Waiters()
	out := make(chan R, 1)
	go func() { out <- acquire() }()
	deadline := time.Now().Add(10 * time.Second)
	for e.svc.Waiters() <= before {
		if time.Now().After(deadline) {
			e.t.Fatalf("waiter for %s never queued", id)
		}
		time.Sleep(time.Millisecond)
	}
	return out
}

// answerOf is a waiter's answer, within 30 s.
func answerOf[R any](e *env, ch <-chan R) R {
	e.t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(30 * time.Second):
		e.t.Fatal("waiter never answered")
		var zero R
		return zero
	}
}

// assertWaiting checks that a waiter has not answered yet.
func assertWaiting[R any](e *env, ch <-chan R) {
	e.t.Helper()
	select {
	case r := <-ch:
		e.t.Fatalf("waiter answered early: %+v", r)
	case <-time.After(50 * time.Millisecond):
	}
}

func testWaitFIFO(t *testing.T, h Harness) {
	e := newEnv(t, h)
	id := e.id("fifo")
	e.acquire(locklock.AcquireRequest{ID: id, Secret: "holder", TTL: time.Hour})
	var waiters []<-chan acquireResult
	for i := range 3 {
		waiters = append(waiters, e.startWaiter(e.ctx(), locklock.AcquireRequest{
			ID: id, Secret: fmt.Sprint("w", i), TTL: time.Hour, Wait: time.Minute,
		}))
	}
	secret := "holder"
	var last uint64
	for i, w := range waiters {
		if _, err := e.svc.Release(e.ctx(), id, secret); err != nil {
			t.Fatalf("release before waiter %d: %v", i, err)
		}
		r := e.result(w)
		if r.err != nil || !r.created {
			t.Fatalf("waiter %d: %+v, want the lock", i, r)
		}
		if !r.lock.Guard.Admits(fmt.Sprint("w", i)) || r.lock.Token <= last {
			t.Fatalf("waiter %d got a lock that is not its own or an old token: %+v", i, r.lock)
		}
		last = r.lock.Token
		for _, later := range waiters[i+1:] {
			e.assertStillWaiting(later)
		}
		secret = fmt.Sprint("w", i)
	}
}

func testWaitForExpiry(t *testing.T, h Harness) {
	e := newEnv(t, h)
	id := e.id("wait-expiry")
	ttl := e.shortTTL()
	first := e.acquire(locklock.AcquireRequest{ID: id, TTL: ttl})
	w := e.startWaiter(e.ctx(), locklock.AcquireRequest{ID: id, Secret: "next", Wait: 3 * ttl})
	e.pass(ttl)
	r := e.result(w)
	if r.err != nil || !r.created || r.lock.Token <= first.Token {
		t.Fatalf("waiter after expiry: %+v, want a new lock with a higher token", r)
	}
}

func testWaitTimesOut(t *testing.T, h Harness) {
	e := newEnv(t, h)
	id := e.id("wait-timeout")
	holder := e.acquire(locklock.AcquireRequest{ID: id, TTL: time.Hour})
	wait := 2 * time.Second
	w := e.startWaiter(e.ctx(), locklock.AcquireRequest{ID: id, Wait: wait})
	second := e.startWaiter(e.ctx(), locklock.AcquireRequest{ID: id, Wait: wait})
	e.pass(wait)
	for _, ch := range []<-chan acquireResult{w, second} {
		r := e.result(ch)
		var held *locklock.HeldError
		if !errors.As(r.err, &held) || held.Lock.Token != holder.Token {
			t.Errorf("timed-out waiter: %+v, want *HeldError naming the holder", r)
		}
	}
	if n := e.svc.Waiters(); n != 0 {
		t.Errorf("%d waiters left after timeouts", n)
	}
}

func testWaiterGone(t *testing.T, h Harness) {
	e := newEnv(t, h)
	id := e.id("waiter-gone")
	e.acquire(locklock.AcquireRequest{ID: id, Secret: "holder", TTL: time.Hour})
	ctx, cancel := context.WithCancel(e.ctx())
	w := e.startWaiter(ctx, locklock.AcquireRequest{ID: id, Secret: "gone", Wait: time.Minute})
	cancel()
	if r := e.result(w); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled waiter: %+v, want context.Canceled", r)
	}
	if _, err := e.svc.Release(e.ctx(), id, "holder"); err != nil {
		t.Fatalf("release: %v", err)
	}
	if _, err := e.svc.Get(e.ctx(), id); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("after the waiter left and the holder released: %v, want a free lock", err)
	}
	if n := e.svc.Waiters(); n != 0 {
		t.Errorf("%d waiters left", n)
	}
}

func testStopWaiting(t *testing.T, h Harness) {
	e := newEnv(t, h)
	id := e.id("draining")
	e.acquire(locklock.AcquireRequest{ID: id, TTL: time.Hour})
	w := e.startWaiter(e.ctx(), locklock.AcquireRequest{ID: id, Wait: time.Minute})
	e.svc.StopWaiting()
	if r := e.result(w); !errors.Is(r.err, locklock.ErrShuttingDown) || !errors.Is(r.err, locklock.ErrUnavailable) {
		t.Fatalf("waiter during drain: %+v, want ErrShuttingDown (ErrUnavailable)", r)
	}
	if _, _, err := e.svc.Acquire(e.ctx(), locklock.AcquireRequest{ID: id, Wait: time.Second}); !errors.Is(err, locklock.ErrShuttingDown) {
		t.Errorf("new waiter during drain: %v, want ErrShuttingDown", err)
	}
	// Requests that do not wait are still served while draining.
	if _, err := e.svc.Get(e.ctx(), id); err != nil {
		t.Errorf("get during drain: %v", err)
	}
}

// testHolderRetryWithWait: the holder retrying with its secret and a wait
// gets its lock back at once, even with others queued for it.
func testHolderRetryWithWait(t *testing.T, h Harness) {
	e := newEnv(t, h)
	id := e.id("retry-wait")
	mine := e.acquire(locklock.AcquireRequest{ID: id, Secret: "mine", TTL: time.Hour})
	other := e.startWaiter(e.ctx(), locklock.AcquireRequest{ID: id, Secret: "other", Wait: time.Minute})
	// A real-time bound, so that a regression fails instead of hanging on
	// the manual clock.
	ctx, cancel := context.WithTimeout(e.ctx(), 10*time.Second)
	defer cancel()
	l, created, err := e.svc.Acquire(ctx, locklock.AcquireRequest{ID: id, Secret: "mine", Wait: 5 * time.Second})
	if err != nil || created || !sameGrant(l, mine) {
		t.Fatalf("holder's retry with wait: %+v created=%v err=%v, want its lock unchanged", l, created, err)
	}
	e.assertStillWaiting(other)
}

// testWaitAsLongAsTTL: a wait that ends exactly when the holder's lock
// expires gets the lock, not a 409.
func testWaitAsLongAsTTL(t *testing.T, h Harness) {
	if h.RealTime {
		t.Skip("needs the manual clock to make both deadlines the same instant")
	}
	e := newEnv(t, h)
	id := e.id("wait-equals-ttl")
	ttl := 10 * time.Second
	e.acquire(locklock.AcquireRequest{ID: id, TTL: ttl})
	w := e.startWaiter(e.ctx(), locklock.AcquireRequest{ID: id, Wait: ttl})
	e.pass(ttl)
	if r := e.result(w); r.err != nil || !r.created {
		t.Fatalf("waiter whose wait ends as the lock expires: %+v, want the lock", r)
	}
}
