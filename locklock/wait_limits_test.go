package locklock_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/locklock/locklock/engines/memory"
	"github.com/locklock/locklock/locklock"
)

// nthID is the i-th of a family of distinct uuid locks.
func nthID(i int) locklock.ID { return uuidID(fmt.Sprintf("00000000-0000-4000-8000-%012d", i)) }

type waitResult struct {
	i       int
	lock    locklock.Lock
	created bool
	err     error
}

// eventually fails the test unless cond holds within 10 s of real time.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func receive(t *testing.T, ch <-chan waitResult, what string) waitResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		return waitResult{}
	}
}

func assertNoResult(t *testing.T, ch <-chan waitResult) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("a waiter answered early: %+v", r)
	case <-time.After(50 * time.Millisecond):
	}
}

// isTooManyWaiters: refused waiting, which is a 503 (ErrUnavailable), not a
// lock_held answer.
func isTooManyWaiters(err error) bool {
	var held *locklock.HeldError
	return errors.Is(err, locklock.ErrTooManyWaiters) && errors.Is(err, locklock.ErrUnavailable) &&
		!errors.Is(err, locklock.ErrHeld) && !errors.As(err, &held)
}

// startWaiter begins a waiting acquire and returns once it is counted.
func startWaiter(t *testing.T, svc *locklock.Service, ctx context.Context, req locklock.AcquireRequest) <-chan waitResult {
	t.Helper()
	before := svc.Waiters()
	out := make(chan waitResult, 1)
	go func() {
		l, created, err := svc.Acquire(ctx, req)
		out <- waitResult{lock: l, created: created, err: err}
	}()
	eventually(t, "the waiter to queue", func() bool { return svc.Waiters() > before })
	return out
}

// TestWaiterCapsAreExact: of many concurrent waiting acquires for held
// locks, exactly as many as a cap allows wait and every other one is refused
// at once with ErrTooManyWaiters, never more, whatever the scheduling.
func TestWaiterCapsAreExact(t *testing.T) {
	cases := []struct {
		name        string
		opts        []locklock.Option
		n, admitted int
		lock        func(i int) locklock.ID
	}{
		{"per lock 5 of 20", []locklock.Option{locklock.WithMaxWaitersPerLock(5), locklock.WithMaxWaiters(0)},
			20, 5, func(int) locklock.ID { return nthID(0) }},
		{"total 5 of 20 on 4 locks", []locklock.Option{locklock.WithMaxWaiters(5), locklock.WithMaxWaitersPerLock(0)},
			20, 5, func(i int) locklock.ID { return nthID(i % 4) }},
		{"total 5 of 20 on 20 locks", []locklock.Option{locklock.WithMaxWaiters(5)},
			20, 5, nthID},
		{"per lock 3 on 4 locks below total 100", []locklock.Option{locklock.WithMaxWaitersPerLock(3), locklock.WithMaxWaiters(100)},
			200, 12, func(i int) locklock.ID { return nthID(i % 4) }},
		{"total 50 of 500, per lock 20 on 10 locks", []locklock.Option{locklock.WithMaxWaiters(50), locklock.WithMaxWaitersPerLock(20)},
			500, 50, func(i int) locklock.ID { return nthID(i % 10) }},
		{"defaults: per lock 1000 of 1100", nil,
			1100, locklock.DefaultMaxWaitersPerLock, func(int) locklock.ID { return nthID(0) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			svc, clock := newService(t, c.opts...)
			held := map[locklock.ID]bool{}
			for i := range c.n {
				if id := c.lock(i); !held[id] {
					held[id] = true
					if _, _, err := svc.Acquire(t.Context(), locklock.AcquireRequest{ID: id, Secret: "holder"}); err != nil {
						t.Fatal(err)
					}
				}
			}

			// Watch the counts the whole time: they must never pass a cap.
			var peak atomic.Int64
			stopWatch := make(chan struct{})
			watched := make(chan struct{})
			go func() {
				defer close(watched)
				for {
					n := int64(svc.Waiters())
					if n > peak.Load() {
						peak.Store(n)
					}
					select {
					case <-stopWatch:
						return
					default:
					}
				}
			}()

			start := make(chan struct{})
			results := make(chan waitResult, c.n)
			for i := range c.n {
				go func() {
					<-start
					l, created, err := svc.Acquire(t.Context(), locklock.AcquireRequest{
						ID: c.lock(i), Secret: fmt.Sprint("w", i), Wait: time.Minute,
					})
					results <- waitResult{i, l, created, err}
				}()
			}
			close(start)
			refused := c.n - c.admitted
			for range refused {
				r := receive(t, results, "the refusals")
				if !isTooManyWaiters(r.err) {
					t.Fatalf("waiter %d: %+v, want ErrTooManyWaiters (an ErrUnavailable)", r.i, r)
				}
			}
			eventually(t, "the admitted waiters to queue", func() bool { return svc.Waiters() == c.admitted })
			assertNoResult(t, results)
			close(stopWatch)
			<-watched
			if p := peak.Load(); p > int64(c.admitted) {
				t.Errorf("up to %d waiters at once, cap %d", p, c.admitted)
			}

			// Every admitted waiter times out, and its slot is free again.
			clock.Advance(time.Minute)
			for range c.admitted {
				r := receive(t, results, "the timeouts")
				var h *locklock.HeldError
				if !errors.As(r.err, &h) {
					t.Fatalf("waiter %d after its wait: %+v, want *HeldError", r.i, r)
				}
			}
			if n := svc.Waiters(); n != 0 {
				t.Errorf("%d waiters left after all timed out", n)
			}
		})
	}
}

// TestPerLockCapLeavesOtherLocks: a lock whose queue is full does not stop
// waits for other locks.
func TestPerLockCapLeavesOtherLocks(t *testing.T) {
	svc, _ := newService(t, locklock.WithMaxWaitersPerLock(1))
	a, b := nthID(1), nthID(2)
	for _, id := range []locklock.ID{a, b} {
		if _, _, err := svc.Acquire(t.Context(), locklock.AcquireRequest{ID: id, Secret: "holder"}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	wa := startWaiter(t, svc, ctx, locklock.AcquireRequest{ID: a, Wait: time.Minute})
	if _, _, err := svc.Acquire(ctx, locklock.AcquireRequest{ID: a, Wait: time.Minute}); !isTooManyWaiters(err) {
		t.Fatalf("second waiter for a: %v, want ErrTooManyWaiters", err)
	}
	wb := startWaiter(t, svc, ctx, locklock.AcquireRequest{ID: b, Wait: time.Minute})
	if n := svc.Waiters(); n != 2 {
		t.Errorf("Waiters() = %d, want 2", n)
	}
	cancel()
	for _, w := range []<-chan waitResult{wa, wb} {
		if r := receive(t, w, "the cancelled waiter"); !errors.Is(r.err, context.Canceled) {
			t.Errorf("cancelled waiter: %+v", r)
		}
	}
}

// TestFreeLockGrantedWhenWaiterCapsFull: the caps refuse only waiting. A
// waiting acquire beyond them still makes its immediate attempt, so a free
// lock is granted, and the holder retrying gets its lock back.
func TestFreeLockGrantedWhenWaiterCapsFull(t *testing.T) {
	t.Run("total cap full", func(t *testing.T) {
		svc, _ := newService(t, locklock.WithMaxWaiters(1))
		held, free := nthID(1), nthID(2)
		holder, _, err := svc.Acquire(t.Context(), locklock.AcquireRequest{ID: held, Secret: "holder"})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		w := startWaiter(t, svc, ctx, locklock.AcquireRequest{ID: held, Wait: time.Minute})

		// A free lock, with a wait the cap would refuse.
		l, created, err := svc.Acquire(t.Context(), locklock.AcquireRequest{ID: free, Secret: "s", Wait: time.Minute})
		if err != nil || !created || !l.Guard.Admits("s") {
			t.Fatalf("free lock with the total cap full: %+v %v %v, want it granted", l, created, err)
		}
		// The same lock, now held: refused at once.
		if _, _, err := svc.Acquire(t.Context(), locklock.AcquireRequest{ID: free, Wait: time.Minute}); !isTooManyWaiters(err) {
			t.Fatalf("held lock with the total cap full: %v, want ErrTooManyWaiters", err)
		}
		// The holder retrying with a wait gets its lock back (the idempotent 200).
		for _, id := range []locklock.ID{held, free} {
			secret := map[locklock.ID]string{held: "holder", free: "s"}[id]
			l, created, err := svc.Acquire(t.Context(), locklock.AcquireRequest{ID: id, Secret: secret, Wait: time.Minute})
			if err != nil || created || !l.Guard.Admits(secret) {
				t.Errorf("holder of %s retrying with the cap full: %+v %v %v", id.Name, l, created, err)
			}
		}
		if n := svc.Waiters(); n != 1 {
			t.Errorf("Waiters() = %d, want the 1 admitted", n)
		}
		cancel()
		receive(t, w, "the cancelled waiter")
		if l, err := svc.Get(t.Context(), held); err != nil || l.Token != holder.Token {
			t.Errorf("the holder's lock: %+v %v, want it unchanged", l, err)
		}
	})

	t.Run("per-lock cap full, lock freed behind the waiters' backs", func(t *testing.T) {
		// The lock is released straight through the engine, as another
		// server sharing it would: the waiter is not woken and the lock is
		// free while its queue is full.
		clock := locklock.NewManualClock(epoch)
		engine := memory.New()
		t.Cleanup(func() { _ = engine.Close() })
		svc := locklock.NewService(engine, locklock.WithClock(clock), locklock.WithMaxWaitersPerLock(1))
		id := nthID(1)
		if _, _, err := svc.Acquire(t.Context(), locklock.AcquireRequest{ID: id, Secret: "holder"}); err != nil {
			t.Fatal(err)
		}
		w := startWaiter(t, svc, t.Context(), locklock.AcquireRequest{ID: id, Secret: "waiter", Wait: time.Minute})
		if _, err := engine.Release(t.Context(), id, clock.Now(), func(locklock.Lock) error { return nil }); err != nil {
			t.Fatal(err)
		}
		l, created, err := svc.Acquire(t.Context(), locklock.AcquireRequest{ID: id, Secret: "late", Wait: time.Minute})
		if err != nil || !created || !l.Guard.Admits("late") {
			t.Fatalf("free lock with its queue full: %+v %v %v, want it granted", l, created, err)
		}
		// The queued waiter is still there and gets the lock next.
		assertNoResult(t, w)
		if _, err := svc.Release(t.Context(), id, "late"); err != nil {
			t.Fatal(err)
		}
		if r := receive(t, w, "the waiter's lock"); r.err != nil || !r.created || !r.lock.Guard.Admits("waiter") {
			t.Fatalf("waiter: %+v", r)
		}
	})
}

// TestWaiterSlotsFreedOnEveryExit: whichever way a waiter leaves — granted,
// timed out, cancelled — its slot is free at once for the next one; a
// refused acquire never holds one; StopWaiting empties the queues.
func TestWaiterSlotsFreedOnEveryExit(t *testing.T) {
	exits := []struct {
		name  string
		leave func(*testing.T, *locklock.ManualClock, *locklock.Service, context.CancelFunc)
		check func(waitResult) bool
	}{
		{"granted", func(t *testing.T, _ *locklock.ManualClock, svc *locklock.Service, _ context.CancelFunc) {
			if _, err := svc.Release(t.Context(), nthID(1), "holder"); err != nil {
				t.Fatal(err)
			}
		}, func(r waitResult) bool { return r.err == nil && r.created && r.lock.Guard.Admits("first") }},
		{"timed out", func(_ *testing.T, clock *locklock.ManualClock, _ *locklock.Service, _ context.CancelFunc) {
			clock.Advance(time.Minute)
		}, func(r waitResult) bool { return errors.Is(r.err, locklock.ErrHeld) }},
		{"cancelled", func(_ *testing.T, _ *locklock.ManualClock, _ *locklock.Service, cancel context.CancelFunc) {
			cancel()
		}, func(r waitResult) bool { return errors.Is(r.err, context.Canceled) }},
	}
	for _, ex := range exits {
		t.Run(ex.name, func(t *testing.T) {
			svc, clock := newService(t, locklock.WithMaxWaiters(1), locklock.WithMaxWaitersPerLock(1))
			id := nthID(1)
			if _, _, err := svc.Acquire(t.Context(), locklock.AcquireRequest{ID: id, Secret: "holder"}); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			w := startWaiter(t, svc, ctx, locklock.AcquireRequest{ID: id, Secret: "first", Wait: time.Minute})
			for range 3 { // refusals take no slot
				if _, _, err := svc.Acquire(t.Context(), locklock.AcquireRequest{ID: id, Wait: time.Minute}); !isTooManyWaiters(err) {
					t.Fatalf("waiter over the cap: %v, want ErrTooManyWaiters", err)
				}
			}
			ex.leave(t, clock, svc, cancel)
			if r := receive(t, w, "the waiter to leave"); !ex.check(r) {
				t.Fatalf("waiter: %+v", r)
			}
			if n, per := svc.Waiters(), locklock.WaitersFor(svc, id); n != 0 || per != 0 {
				t.Fatalf("after the waiter left: Waiters() = %d, %d for the lock; want 0", n, per)
			}
			// The slot is free: the next waiter is admitted (the lock is
			// held again, by the first waiter or still by the holder).
			next, stop := context.WithCancel(t.Context())
			defer stop()
			w2 := startWaiter(t, svc, next, locklock.AcquireRequest{ID: id, Wait: time.Minute})
			if _, _, err := svc.Acquire(t.Context(), locklock.AcquireRequest{ID: id, Wait: time.Minute}); !isTooManyWaiters(err) {
				t.Fatalf("waiter over the cap again: %v, want ErrTooManyWaiters", err)
			}
			stop()
			receive(t, w2, "the second waiter")
			if n := svc.Waiters(); n != 0 {
				t.Errorf("Waiters() = %d at the end", n)
			}
		})
	}

	t.Run("StopWaiting", func(t *testing.T) {
		svc, _ := newService(t, locklock.WithMaxWaiters(2))
		for i := range 2 {
			if _, _, err := svc.Acquire(t.Context(), locklock.AcquireRequest{ID: nthID(i), Secret: "holder"}); err != nil {
				t.Fatal(err)
			}
		}
		var ws []<-chan waitResult
		for i := range 2 {
			ws = append(ws, startWaiter(t, svc, t.Context(), locklock.AcquireRequest{ID: nthID(i), Wait: time.Minute}))
		}
		svc.StopWaiting()
		for _, w := range ws {
			if r := receive(t, w, "the drained waiter"); !errors.Is(r.err, locklock.ErrShuttingDown) {
				t.Fatalf("drained waiter: %+v", r)
			}
		}
		if n := svc.Waiters(); n != 0 {
			t.Errorf("Waiters() = %d after StopWaiting", n)
		}
		// Draining wins over the cap: new waits are told the server is
		// shutting down, not that it is full.
		if _, _, err := svc.Acquire(t.Context(), locklock.AcquireRequest{ID: nthID(0), Wait: time.Minute}); !errors.Is(err, locklock.ErrShuttingDown) {
			t.Errorf("wait after StopWaiting: %v, want ErrShuttingDown", err)
		}
	})
}

// TestWaiterCapsUnderChurn: waiters arrive, are granted, release, give up
// and are refused all at once, from many goroutines; neither count ever
// passes its cap, and at the end every slot is free again.
func TestWaiterCapsUnderChurn(t *testing.T) {
	const (
		total, perLock = 8, 3
		locks          = 4
		workers        = 64
		rounds         = 20
	)
	svc, _ := newService(t, locklock.WithMaxWaiters(total), locklock.WithMaxWaitersPerLock(perLock))
	for i := range locks {
		if _, _, err := svc.Acquire(t.Context(), locklock.AcquireRequest{ID: nthID(i), Secret: "holder"}); err != nil {
			t.Fatal(err)
		}
	}
	stopWatch := make(chan struct{})
	var watch sync.WaitGroup
	var overTotal, overPerLock atomic.Int64
	watch.Go(func() {
		for {
			if n := svc.Waiters(); n > total {
				overTotal.Store(int64(n))
			}
			for i := range locks {
				if n := locklock.WaitersFor(svc, nthID(i)); n > perLock {
					overPerLock.Store(int64(n))
				}
			}
			select {
			case <-stopWatch:
				return
			default:
			}
		}
	})

	var granted, refused, gaveUp atomic.Int64
	var work sync.WaitGroup
	for w := range workers {
		work.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for r := range rounds {
				id := nthID(rng.IntN(locks))
				secret := fmt.Sprintf("w%d-%d", w, r)
				ctx, cancel := context.WithTimeout(t.Context(), time.Duration(rng.IntN(3000))*time.Microsecond)
				_, created, err := svc.Acquire(ctx, locklock.AcquireRequest{ID: id, Secret: secret, Wait: time.Minute})
				cancel()
				switch {
				case err == nil && created:
					granted.Add(1)
					if _, err := svc.Release(t.Context(), id, secret); err != nil {
						t.Errorf("release: %v", err)
					}
				case isTooManyWaiters(err):
					refused.Add(1)
				case errors.Is(err, context.DeadlineExceeded):
					gaveUp.Add(1)
				default:
					t.Errorf("acquire: created %v, err %v", created, err)
				}
			}
		})
	}
	// Let the holders go once the workers are under way, so that grants
	// and releases mix with the queueing.
	time.Sleep(5 * time.Millisecond)
	for i := range locks {
		if _, err := svc.Release(t.Context(), nthID(i), "holder"); err != nil {
			t.Fatal(err)
		}
	}
	work.Wait()
	close(stopWatch)
	watch.Wait()
	if n := overTotal.Load(); n != 0 {
		t.Errorf("%d waiters at once, cap %d", n, total)
	}
	if n := overPerLock.Load(); n != 0 {
		t.Errorf("%d waiters for one lock at once, cap %d", n, perLock)
	}
	if n := svc.Waiters(); n != 0 {
		t.Errorf("Waiters() = %d after every worker finished", n)
	}
	for i := range locks {
		if n := locklock.WaitersFor(svc, nthID(i)); n != 0 {
			t.Errorf("%d waiters left for lock %d", n, i)
		}
	}
	t.Logf("granted %d, refused %d, gave up %d", granted.Load(), refused.Load(), gaveUp.Load())
	if refused.Load() == 0 {
		t.Error("no acquire was ever refused: the test did not reach the caps")
	}
}

// TestMaxWaitersOptionsRejectNegative: a negative cap is a programming error.
func TestMaxWaitersOptionsRejectNegative(t *testing.T) {
	for name, opt := range map[string]func(int) locklock.Option{
		"WithMaxWaiters":        locklock.WithMaxWaiters,
		"WithMaxWaitersPerLock": locklock.WithMaxWaitersPerLock,
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s(-1) did not panic", name)
				}
			}()
			opt(-1)
		}()
	}
}
