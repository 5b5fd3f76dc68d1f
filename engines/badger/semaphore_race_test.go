package badger

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
)

// The limit under concurrency: the sum of live slots' weights never exceeds
// it, within a batch, across pipelined batches, and under load.

// TestSlotRace: 120 goroutines acquire on one semaphore of limit 7 at once,
// weights 1–3, without waiting, while a reader watches; then 100 goroutines
// acquire and release over and over. The limit holds in every observation,
// and in the clients' own count of what they were granted and have not yet
// released; the one-shot grants fill the semaphore as far as any refused
// weight allowed.
func TestSlotRace(t *testing.T) {
	const limit = 7
	ctx := t.Context()
	e := open(t, t.TempDir())
	id := testID("race")

	// watch reads the semaphore until stop is closed, checking the limit.
	watch := func(stop <-chan struct{}) func() {
		var wg sync.WaitGroup
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				now := t0.Add(time.Duration(i) * time.Millisecond)
				sem, err := e.GetSemaphore(ctx, id, now)
				if errors.Is(err, locklock.ErrSemaphoreNotFound) {
					continue
				}
				if err != nil {
					t.Errorf("GetSemaphore: %v", err)
					return
				}
				sum := 0
				for _, s := range sem.Slots {
					sum += s.Weight
				}
				if sem.InUse != sum || sum > limit || sem.Limit != limit {
					t.Errorf("observed %d slots of weight %d, in use %d, limit %d: over the limit of %d", len(sem.Slots), sum, sem.InUse, sem.Limit, limit)
					return
				}
			}
		})
		return wg.Wait
	}

	// One shot each.
	const shots = 120
	stop := make(chan struct{})
	waitWatch := watch(stop)
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		granted atomic.Int64
		refused atomic.Int64 // the smallest weight refused, or 0
	)
	for i := range shots {
		wg.Go(func() {
			w := 1 + i%3
			<-start
			s, created, err := e.TryAcquireSlot(ctx, newSlot("race", limit, w, t0, time.Hour, ""), t0, nil)
			var full *locklock.FullError
			switch {
			case err == nil && created && s.Weight == w:
				granted.Add(int64(w))
			case errors.As(err, &full):
				if full.InUse+w <= limit {
					t.Errorf("refused weight %d with %d of %d in use", w, full.InUse, limit)
				}
				for {
					cur := refused.Load()
					if cur != 0 && cur <= int64(w) || refused.CompareAndSwap(cur, int64(w)) {
						break
					}
				}
			default:
				t.Errorf("acquire of weight %d: %+v, created %v, %v", w, s, created, err)
			}
		})
	}
	close(start)
	wg.Wait()
	close(stop)
	waitWatch()
	sem, err := e.GetSemaphore(ctx, id, t0)
	if err != nil || int64(sem.InUse) != granted.Load() || sem.InUse > limit {
		t.Fatalf("after the shots: %+v, %v; want the %d granted, at most %d", sem, err, granted.Load(), limit)
	}
	// In use only grows here, so a refused weight w saw more than
	// limit - w in use; at least limit - 3 is in use at the end.
	if g := granted.Load(); g < limit-3 || refused.Load() != 0 && g+refused.Load() <= limit {
		t.Errorf("granted %d of %d; smallest weight refused %d: a weight that fitted was refused", g, limit, refused.Load())
	}
	t.Logf("one shot each: %d of %d granted in %d slots", granted.Load(), limit, len(sem.Slots))
	for _, s := range sem.Slots {
		if _, err := e.ReleaseSlot(ctx, id, s.ID, t0, allowAnySlot); err != nil {
			t.Fatal(err)
		}
	}

	// Churn: each worker takes a slot grants times — trying again at
	// once when refused —, holds it for a moment and releases it. held is
	// the weight the clients were granted and have not begun to release:
	// never more than the engine holds, so never over the limit.
	const workers, grants = 100, 2
	var (
		held, max, attempts atomic.Int64
	)
	stop = make(chan struct{})
	waitWatch = watch(stop)
	for i := range workers {
		wg.Go(func() {
			w := 1 + i%3
			for r := 0; r < grants; {
				attempts.Add(1)
				now := t0.Add(time.Duration(r) * time.Second)
				s, _, err := e.TryAcquireSlot(ctx, newSlot("race", limit, w, now, time.Hour, ""), now, nil)
				if errors.Is(err, locklock.ErrSemaphoreFull) {
					time.Sleep(time.Millisecond)
					continue
				}
				if err != nil {
					t.Errorf("acquire: %v", err)
					return
				}
				r++
				h := held.Add(int64(w))
				for m := max.Load(); h > m && !max.CompareAndSwap(m, h); m = max.Load() {
				}
				if h > limit {
					t.Errorf("clients hold %d of %d", h, limit)
				}
				time.Sleep(time.Millisecond)
				held.Add(-int64(w))
				if _, err := e.ReleaseSlot(ctx, id, s.ID, now, allowAnySlot); err != nil {
					t.Errorf("release: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	waitWatch()
	t.Logf("churn: %d grants in %d attempts; clients held at most %d of %d at once", workers*grants, attempts.Load(), max.Load(), limit)
	if _, err := e.GetSemaphore(ctx, id, t0); !errors.Is(err, locklock.ErrSemaphoreNotFound) {
		t.Errorf("after every slot was released: %v, want ErrSemaphoreNotFound", err)
	}
	checkSlots(t, e)
}

// TestSlotBatch: acquires of one semaphore in one batch see each other's
// slots: the later ones are refused once the limit is reached, and tokens
// follow arrival order.
func TestSlotBatch(t *testing.T) {
	g := openGated(t)
	type res struct { // exported fields: fmt prints a Guard redacted only then
		S   locklock.Slot
		Err error
	}
	out := make([]res, 4)
	ops := make([]func(), len(out))
	for i := range ops {
		ops[i] = func() {
			out[i].S, _, out[i].Err = g.TryAcquireSlot(context.Background(), newSlot("b", 5, 2, t0, time.Hour, ""), t0, nil)
		}
	}
	wantBatches(t, g.batch(t, ops...), 1, 4, 0)
	if out[0].Err != nil || out[1].Err != nil || out[0].S.Token >= out[1].S.Token {
		t.Fatalf("first two: %+v, %+v; want granted, tokens rising", out[0], out[1])
	}
	var full *locklock.FullError
	for _, r := range out[2:] {
		if !errors.As(r.Err, &full) || full.InUse != 4 {
			t.Errorf("later acquire: %v, want FullError with 4 in use", r.Err)
		}
	}
	checkSlots(t, g.Engine)
}

// TestSlotPipelinedPhantom: an acquire whose batch runs on a snapshot
// without the batch in flight — which adds a slot to the same semaphore,
// a key the snapshot's scan neither sees nor registers — conflicts through
// the semaphore's head, runs again, and is refused.
func TestSlotPipelinedPhantom(t *testing.T) {
	cc := newCommitControl()
	g := openGated(t, withCommitWith(cc.commitWith))
	ctx := context.Background()
	before := g.CommitStats()
	var (
		wg         sync.WaitGroup
		first, sec locklock.Slot
		err1, err2 error
	)
	cc.mode.Store(commitHeld)
	wg.Go(func() { first, _, err1 = g.TryAcquireSlot(ctx, newSlot("p", 1, 1, t0, time.Hour, ""), t0, nil) })
	waitQueued(t, g.commit, 1)
	g.gate <- struct{}{} // the first acquire's batch runs; its commit is held
	<-cc.entered
	wg.Go(func() { sec, _, err2 = g.TryAcquireSlot(ctx, newSlot("p", 1, 1, t0, time.Hour, ""), t0, nil) })
	waitQueued(t, g.commit, 1)
	close(cc.release)
	g.gate <- struct{}{} // the second runs in the transaction opened before that commit
	wg.Wait()
	if err1 != nil {
		t.Fatal(err1)
	}
	if !errors.Is(err2, locklock.ErrSemaphoreFull) {
		t.Fatalf("second acquire of a semaphore of limit 1: %+v, %v; want ErrSemaphoreFull", sec, err2)
	}
	if d := g.CommitStats().Sub(before); d.Reruns != 1 {
		t.Errorf("%d reruns, want 1: the second acquire did not meet the first in flight", d.Reruns)
	}
	sem, err := g.GetSemaphore(ctx, testID("p"), t0)
	if err != nil || len(sem.Slots) != 1 || sem.Slots[0].ID != first.ID {
		t.Errorf("GetSemaphore = %+v, %v; want only the first slot", sem, err)
	}
	checkSlots(t, g.Engine)
}

// TestSlotRetryLargeSemaphore: on a semaphore with enough slots that the
// retry test runs ahead of the step (presame), its answers are still those
// of the step: a slot granted meanwhile is found, a slot released meanwhile
// is not.
func TestSlotRetryLargeSemaphore(t *testing.T) {
	g := openGated(t)
	ctx := context.Background()
	id := testID("large")
	planted := make([]locklock.Slot, presameMin+10)
	for i := range planted {
		planted[i] = normalizeSlot(newSlot("large", 1000, 1, t0, time.Hour, fmt.Sprintf("p%d", i)))
		planted[i].Token = uint64(i + 1)
	}
	g.batch(t, func() { plantSlots(t, g.Engine, planted) })

	type res struct { // exported fields: fmt prints a Guard redacted only then
		S       locklock.Slot
		Created bool
		Err     error
	}
	acquire := func(out *res, secret string) func() {
		return func() {
			out.S, out.Created, out.Err = g.TryAcquireSlot(ctx, newSlot("large", 1000, 1, t0, time.Hour, secret), t0, sameSecret(secret))
		}
	}
	var first, again, back, after res
	var released error
	g.batch(t,
		acquire(&first, "s"),
		acquire(&again, "s"), // tested ahead before the first was granted
		acquire(&back, "p1"), // a live planted slot
		func() { _, released = g.ReleaseSlot(ctx, id, planted[0].ID, t0, allowAnySlot) },
		acquire(&after, "p0"), // tested ahead while planted[0] was still there
	)
	if first.Err != nil || !first.Created {
		t.Fatalf("first acquire: %+v", first)
	}
	if again.Err != nil || again.Created || !sameSlot(again.S, first.S) {
		t.Errorf("retry of a slot granted after it was tested ahead: %+v; want the first's slot", again)
	}
	if back.Err != nil || back.Created || !sameSlot(back.S, planted[1]) {
		t.Errorf("retry of a planted slot: %+v; want it", back)
	}
	if released != nil || after.Err != nil || !after.Created || after.S.ID == planted[0].ID {
		t.Errorf("acquire with the secret of a slot released after it was tested ahead: %v, %+v; want a new slot", released, after)
	}
	checkSlots(t, g.Engine)
}
