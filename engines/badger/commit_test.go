package badger

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bdg "github.com/dgraph-io/badger/v4"

	"github.com/locklock/locklock/locklock"
)

// gatedEngine is an engine whose committer takes a batch only when the test
// lets it (withCommitGate), so that steps queued meanwhile form one batch.
type gatedEngine struct {
	*Engine
	gate     chan struct{}
	openOnce sync.Once
}

func openGated(t *testing.T, opts ...Option) *gatedEngine {
	t.Helper()
	g := &gatedEngine{gate: make(chan struct{})}
	g.Engine = open(t, t.TempDir(), append(opts, withCommitGate(g.gate))...)
	// Registered after open's Close: runs before it, so that a test that
	// failed with steps still queued does not leave Close waiting for them.
	t.Cleanup(g.open)
	return g
}

// failNextTokenReservation leaves one token in the lease and makes the
// next reservation of more fail once, with err: a step that fails after it
// has written.
func (g *gatedEngine) failNextTokenReservation(err error) {
	var persists atomic.Int32
	g.tokens.mu.Lock()
	defer g.tokens.mu.Unlock()
	g.tokens.leased = g.tokens.next + 1
	g.tokens.persist = func(db *bdg.DB, bound uint64) error {
		if persists.Add(1) == 1 {
			return err
		}
		return storeBound(db, bound)
	}
}

// open lets every later batch through without waiting.
func (g *gatedEngine) open() { g.openOnce.Do(func() { close(g.gate) }) }

// queuedLive is how many steps wait in the committer's queue, not canceled.
func (c *committer) queuedLive() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, s := range c.queue {
		if s.state.Load() == stepQueued {
			n++
		}
	}
	return n
}

func waitQueued(t *testing.T, c *committer, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for c.queuedLive() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d steps queued, want %d", c.queuedLive(), n)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// batch runs ops, each in its own goroutine, arriving in the order given,
// lets the committer take them all at once, and returns the commit
// statistics of what followed. Every op must submit exactly one step.
func (g *gatedEngine) batch(t *testing.T, ops ...func()) CommitStats {
	t.Helper()
	return g.queueThen(t, func() { g.gate <- struct{}{} }, ops)
}

// batchOpen is batch, but opens the gate for good once all ops are queued:
// for tests whose batches are split by the committer itself.
func (g *gatedEngine) batchOpen(t *testing.T, ops ...func()) CommitStats {
	t.Helper()
	return g.queueThen(t, g.open, ops)
}

// queueThen starts ops one by one, each queued before the next starts, then
// lets the committer go with release and waits for every op.
func (g *gatedEngine) queueThen(t *testing.T, release func(), ops []func()) CommitStats {
	t.Helper()
	before := g.CommitStats()
	var wg sync.WaitGroup
	for i, op := range ops {
		wg.Go(op)
		waitQueued(t, g.commit, i+1)
	}
	release()
	wg.Wait()
	return g.CommitStats().Sub(before)
}

func wantBatches(t *testing.T, d CommitStats, batches, steps, reruns uint64) {
	t.Helper()
	if d.Batches != batches || d.Steps != steps || d.Reruns != reruns {
		t.Errorf("%d batches of %d steps in all, %d reruns; want %d, %d, %d", d.Batches, d.Steps, d.Reruns, batches, steps, reruns)
	}
}

type result struct {
	lock locklock.Lock
	err  error
}

func (g *gatedEngine) acquireOp(out *result, l locklock.Lock, now time.Time) func() {
	return func() { out.lock, out.err = g.TryAcquire(context.Background(), l, now) }
}

func (g *gatedEngine) releaseOp(out *result, id locklock.ID, now time.Time, allow func(locklock.Lock) error) func() {
	return func() { out.lock, out.err = g.Release(context.Background(), id, now, allow) }
}

func (g *gatedEngine) refreshOp(out *result, id locklock.ID, now, expiresAt time.Time) func() {
	return func() { out.lock, out.err = g.Refresh(context.Background(), id, now, expireAt(expiresAt), allowAll) }
}

// TestBatchTwoAcquiresOneLock: of two acquires of one lock in one batch the
// first to arrive wins, and the second sees the first's lock, pending in the
// same transaction. Tokens follow arrival order.
func TestBatchTwoAcquiresOneLock(t *testing.T) {
	g := openGated(t)
	var first, second, other1, other2 result
	d := g.batch(t,
		g.acquireOp(&other1, newLock("other1", t0, time.Hour, ""), t0),
		g.acquireOp(&first, newLock("x", t0, time.Hour, "a"), t0),
		g.acquireOp(&second, newLock("x", t0, time.Hour, "b"), t0),
		g.acquireOp(&other2, newLock("other2", t0, time.Hour, ""), t0),
	)
	wantBatches(t, d, 1, 4, 0)
	if first.err != nil || other1.err != nil || other2.err != nil {
		t.Fatalf("acquires of free locks: %v, %v, %v", other1.err, first.err, other2.err)
	}
	var held *locklock.HeldError
	if !errors.As(second.err, &held) || !same(held.Lock, first.lock) {
		t.Fatalf("second acquire of x: %+v, %v; want HeldError with the first's lock %+v", second.lock, second.err, first.lock)
	}
	if !(other1.lock.Token < first.lock.Token && first.lock.Token < other2.lock.Token) {
		t.Errorf("tokens %d, %d, %d: not in arrival order", other1.lock.Token, first.lock.Token, other2.lock.Token)
	}
	if got, err := g.Get(t.Context(), testID("x"), t0); err != nil || !same(got, first.lock) {
		t.Errorf("after the batch Get(x) = %+v, %v; want %+v", got, err, first.lock)
	}
	checkIndex(t, g.Engine)
}

// TestBatchAcquireThenRelease: a release sees the acquire before it in the
// same batch; with the wrong secret it is refused and the lock stays.
func TestBatchAcquireThenRelease(t *testing.T) {
	g := openGated(t)
	wrong := errors.New("wrong secret")
	guarded := func(secret string) func(locklock.Lock) error {
		return func(l locklock.Lock) error {
			if !l.Guard.Admits(secret) {
				return wrong
			}
			return nil
		}
	}
	var acq, rel, acqG, relBad, relGood, relAgain result
	d := g.batch(t,
		g.acquireOp(&acq, newLock("free", t0, time.Hour, ""), t0),
		g.releaseOp(&rel, testID("free"), t0, allowAll),
		g.acquireOp(&acqG, newLock("guarded", t0, time.Hour, "pw"), t0),
		g.releaseOp(&relBad, testID("guarded"), t0, guarded("nope")),
		g.releaseOp(&relAgain, testID("free"), t0, allowAll),
	)
	wantBatches(t, d, 1, 5, 0) // refusals are answers: no rerun
	if acq.err != nil || rel.err != nil || !same(rel.lock, acq.lock) {
		t.Errorf("acquire then release: %+v, %v / %+v, %v", acq.lock, acq.err, rel.lock, rel.err)
	}
	if !errors.Is(relAgain.err, locklock.ErrNotFound) {
		t.Errorf("second release of a lock released earlier in the batch: %v, want ErrNotFound", relAgain.err)
	}
	if acqG.err != nil || relBad.err != wrong {
		t.Errorf("guarded: acquire %v, release with the wrong secret %v (want the allow error)", acqG.err, relBad.err)
	}
	if _, err := g.Get(t.Context(), testID("free"), t0); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("released lock after the batch: %v", err)
	}
	if got, err := g.Get(t.Context(), testID("guarded"), t0); err != nil || !same(got, acqG.lock) {
		t.Errorf("guarded lock after a refused release: %+v, %v; want %+v", got, err, acqG.lock)
	}

	// The right secret, in a batch after a refused one.
	d = g.batch(t,
		g.releaseOp(&relBad, testID("guarded"), t0, guarded("nope")),
		g.releaseOp(&relGood, testID("guarded"), t0, guarded("pw")),
	)
	wantBatches(t, d, 1, 2, 0)
	if relBad.err != wrong || relGood.err != nil || !same(relGood.lock, acqG.lock) {
		t.Errorf("releases: %v; %+v, %v", relBad.err, relGood.lock, relGood.err)
	}
	checkIndex(t, g.Engine)
}

// TestBatchExpiryIndex touches locks several times in one batch: the index
// must end with exactly one entry per lock, at its final expiry (Badger
// keeps one pending write per key, the last), and Sweep must go by it.
func TestBatchExpiryIndex(t *testing.T) {
	g := openGated(t)
	x, y := testID("x"), testID("y")
	r := make([]result, 10)
	d := g.batch(t,
		g.acquireOp(&r[0], newLock("x", t0, time.Minute, ""), t0),
		g.refreshOp(&r[1], x, t0, t0.Add(2*time.Minute)),
		g.refreshOp(&r[2], x, t0, t0.Add(3*time.Minute)),
		g.releaseOp(&r[3], x, t0, allowAll),
		g.acquireOp(&r[4], newLock("y", t0, time.Minute, ""), t0),
		g.refreshOp(&r[5], y, t0, t0.Add(2*time.Minute)),
		g.refreshOp(&r[6], y, t0, t0.Add(2*time.Minute)), // the same expiry: delete, then put, of one index key
	)
	wantBatches(t, d, 1, 7, 0)
	for i, res := range r[:7] {
		if res.err != nil {
			t.Fatalf("step %d: %v", i, res.err)
		}
	}
	if r[3].lock.ExpiresAt != t0.Add(3*time.Minute) || r[6].lock.ExpiresAt != t0.Add(2*time.Minute) {
		t.Errorf("release saw expiry %v, last refresh of y %v", r[3].lock.ExpiresAt, r[6].lock.ExpiresAt)
	}
	checkIndex(t, g.Engine)

	d = g.batch(t,
		g.acquireOp(&r[7], newLock("x", t0, time.Minute, ""), t0),
		g.refreshOp(&r[8], x, t0, t0.Add(5*time.Minute)),
	)
	wantBatches(t, d, 1, 2, 0)
	if r[7].err != nil || r[8].err != nil || r[8].lock.Token != r[7].lock.Token || r[7].lock.Token <= r[0].lock.Token {
		t.Fatalf("acquire and refresh of x: %+v %v / %+v %v", r[7].lock, r[7].err, r[8].lock, r[8].err)
	}
	checkIndex(t, g.Engine)

	sweep := func(at time.Duration, want int) {
		t.Helper()
		var n int
		var err error
		g.batch(t, func() { n, err = g.Sweep(t.Context(), t0.Add(at)) })
		if err != nil || n != want {
			t.Errorf("Sweep(+%v) = %d, %v; want %d", at, n, err, want)
		}
		checkIndex(t, g.Engine)
	}
	sweep(time.Minute, 0)   // nothing left at x's or y's first expiry
	sweep(3*time.Minute, 1) // y
	sweep(4*time.Minute, 0) // x's released expiry left no entry
	if got, err := g.Get(t.Context(), x, t0.Add(4*time.Minute)); err != nil || !same(got, r[8].lock) {
		t.Errorf("x after the sweeps: %+v, %v; want %+v", got, err, r[8].lock)
	}
	sweep(5*time.Minute, 1) // x
}

// TestBatchFailedStepTakenOut: a step that fails after writing (TryAcquire
// of an expired lock deletes its index entry, then cannot reserve tokens) is
// taken out of its batch with nothing of it applied, and the others commit.
func TestBatchFailedStepTakenOut(t *testing.T) {
	g := openGated(t)
	var old result
	g.batch(t, g.acquireOp(&old, newLock("old", t0, time.Second, ""), t0))
	if old.err != nil {
		t.Fatal(old.err)
	}

	failing := errors.New("disk full")
	g.failNextTokenReservation(failing)

	later := t0.Add(time.Hour)
	var a, replace, b result
	d := g.batch(t,
		g.acquireOp(&a, newLock("a", later, time.Hour, ""), later),
		g.acquireOp(&replace, newLock("old", later, time.Hour, ""), later),
		g.acquireOp(&b, newLock("b", later, time.Hour, ""), later),
	)
	wantBatches(t, d, 1, 2, 1)
	if !errors.Is(replace.err, failing) || !errors.Is(replace.err, locklock.ErrUnavailable) {
		t.Errorf("acquire whose token reservation failed: %v, want ErrUnavailable wrapping the failure", replace.err)
	}
	if a.err != nil || b.err != nil || a.lock.Token >= b.lock.Token {
		t.Errorf("the batch's other acquires: %+v %v / %+v %v", a.lock, a.err, b.lock, b.err)
	}
	// The failed step's deletion of old's index entry was not applied.
	if got, err := g.Get(t.Context(), testID("old"), t0); err != nil || !same(got, old.lock) {
		t.Errorf("the expired lock the failed acquire would have replaced: %+v, %v; want it as it was", got, err)
	}
	checkIndex(t, g.Engine)
	for _, l := range []result{a, b} {
		if got, err := g.Get(t.Context(), l.lock.ID, later); err != nil || !same(got, l.lock) {
			t.Errorf("Get(%s) = %+v, %v; want %+v", l.lock.Name, got, err, l.lock)
		}
	}
}

// TestBatchTooBig: steps that together exceed Badger's transaction limit
// commit in order over several batches (a step that overflowed a batch goes
// first in the next one); a step too big on its own fails alone.
func TestBatchTooBig(t *testing.T) {
	g := openGated(t)
	// A transaction holds MaxBatchCount-2 entries (one is its commit marker).
	perStep := int(g.db.MaxBatchCount()-2) / 3 // three fit, a fourth does not
	write := func(prefix string, n int) stepFunc {
		return func(txn *bdg.Txn, _ *eventLog) error {
			for i := range n {
				if err := txn.Set(fmt.Appendf(nil, "t\x00%s-%06d", prefix, i), nil); err != nil {
					return err
				}
			}
			return nil
		}
	}
	errs := make([]error, 6)
	sizes := []int{perStep, perStep, perStep, perStep, 2 * int(g.db.MaxBatchCount()), 1}
	var ops []func()
	for i, n := range sizes {
		ops = append(ops, func() { errs[i] = g.update(t.Context(), write(fmt.Sprint(i), n)) })
	}
	d := g.batchOpen(t, ops...)
	for i, err := range errs {
		if i == 4 {
			if !errors.Is(err, bdg.ErrTxnTooBig) {
				t.Errorf("step too big on its own: %v, want ErrTxnTooBig", err)
			}
		} else if err != nil {
			t.Errorf("step %d: %v", i, err)
		}
	}
	// [0 1 2 3 4 5]: 3 overflows, so [0 1 2] commits. [3 4 5]: 4
	// overflows, so [3] commits. [4 5]: 4 overflows on its own and fails;
	// [5] commits.
	wantBatches(t, d, 3, 5, 3)
	if d.BatchSizes[0] != 2 || d.BatchSizes[1] != 1 {
		t.Errorf("batch sizes %v, want one of 2-3 steps and two of 1", d.BatchSizes)
	}
	err := g.view(func(txn *bdg.Txn) error {
		for i, n := range sizes {
			key := fmt.Appendf(nil, "t\x00%d-%06d", i, n-1)
			if _, err := txn.Get(key); (err == nil) == (i == 4) {
				return fmt.Errorf("step %d's last key: %v", i, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// conflictOnceOp is a step that reads a key, and on its first run has
// another writer commit that key before the batch commits: the batch's
// commit conflicts and the batch runs again. *runs counts the runs that got
// to the end (the rerun finds the key and stops early); *out is the step's
// answer.
func (g *gatedEngine) conflictOnceOp(out *error, runs *atomic.Int32) func() {
	key := []byte("t\x00conflict")
	return func() {
		*out = g.update(context.Background(), func(txn *bdg.Txn, _ *eventLog) error {
			if _, err := txn.Get(key); !errors.Is(err, bdg.ErrKeyNotFound) {
				return err
			}
			if runs.Add(1) == 1 {
				// Another writer commits the key after this batch read it.
				if err := g.db.Update(func(txn *bdg.Txn) error { return txn.Set(key, []byte("x")) }); err != nil {
					return err
				}
			}
			return txn.Set([]byte("t\x00other"), []byte("y"))
		})
	}
}

// TestBatchConflictReruns: a commit that conflicts (a write outside the
// committer to a key the batch read) runs the whole batch again; its steps
// are answered once, from the attempt that committed.
func TestBatchConflictReruns(t *testing.T) {
	g := openGated(t)
	var runs atomic.Int32
	var conflicting error
	var acq result
	d := g.batch(t,
		g.acquireOp(&acq, newLock("a", t0, time.Hour, ""), t0),
		g.conflictOnceOp(&conflicting, &runs),
	)
	if runs.Load() != 1 {
		// The rerun found the key: it returned nil without counting.
		t.Errorf("the reading step ran %d times to the end, want 1", runs.Load())
	}
	wantBatches(t, d, 1, 2, 1)
	if acq.err != nil || conflicting != nil {
		t.Fatalf("after the rerun: %v, %v", acq.err, conflicting)
	}
	if got, err := g.Get(t.Context(), acq.lock.ID, t0); err != nil || !same(got, acq.lock) {
		t.Errorf("Get = %+v, %v; want %+v", got, err, acq.lock)
	}
}

// TestBatchPanicReachesCaller: a step that panics is taken out of its batch
// and its caller panics with the same value; the committer goes on.
func TestBatchPanicReachesCaller(t *testing.T) {
	g := openGated(t)
	var recovered any
	var acq result
	d := g.batch(t,
		func() {
			defer func() { recovered = recover() }()
			_ = g.update(t.Context(), func(*bdg.Txn, *eventLog) error { panic("boom") })
		},
		g.acquireOp(&acq, newLock("a", t0, time.Hour, ""), t0),
	)
	if recovered != "boom" {
		t.Errorf("caller recovered %v, want the step's panic", recovered)
	}
	wantBatches(t, d, 1, 1, 1)
	if acq.err != nil {
		t.Errorf("acquire batched with a panicking step: %v", acq.err)
	}
}

// TestCanceledWhileQueued: a step whose context ends while it waits in the
// queue is never run, and its caller gets the context's error.
func TestCanceledWhileQueued(t *testing.T) {
	g := openGated(t)
	ctx, cancel := context.WithCancel(t.Context())
	canceled := make(chan error, 1)
	go func() {
		_, err := g.TryAcquire(ctx, newLock("canceled", t0, time.Hour, ""), t0)
		canceled <- err
	}()
	waitQueued(t, g.commit, 1)
	cancel()
	if err := <-canceled; !errors.Is(err, context.Canceled) {
		t.Fatalf("TryAcquire canceled while queued: %v, want context.Canceled", err)
	}
	var other result
	d := g.batch(t, g.acquireOp(&other, newLock("other", t0, time.Hour, ""), t0))
	wantBatches(t, d, 1, 1, 0)
	if other.err != nil {
		t.Fatal(other.err)
	}
	if _, err := g.Get(t.Context(), testID("canceled"), t0); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("the canceled acquire was applied: %v", err)
	}
	checkIndex(t, g.Engine)
}

// TestCloseWithStepsQueued: Close while steps wait in the queue lets them
// commit and answers every caller, then stops the committer.
func TestCloseWithStepsQueued(t *testing.T) {
	g := openGated(t)
	const n = 10
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(g.acquireOp(&results[i], newLock(fmt.Sprint("q", i), t0, time.Hour, ""), t0))
		waitQueued(t, g.commit, i+1)
	}
	closed := make(chan error, 1)
	go func() { closed <- g.Close() }()
	// Close waits for the operations in flight: once it does, new ones
	// cannot enter (a pending writer blocks TryRLock).
	for deadline := time.Now().Add(10 * time.Second); g.mu.TryRLock(); {
		g.mu.RUnlock()
		if time.Now().After(deadline) {
			t.Fatal("Close did not start waiting")
		}
		time.Sleep(100 * time.Microsecond)
	}
	g.gate <- struct{}{}
	wg.Wait()
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	for i, r := range results {
		if r.err != nil {
			t.Errorf("acquire %d queued at Close: %v", i, r.err)
		}
	}
	select {
	case <-g.commit.exited:
	default:
		t.Error("the committer still runs after Close")
	}
	if _, err := g.TryAcquire(t.Context(), newLock("late", t0, time.Hour, ""), t0); !errors.Is(err, locklock.ErrClosed) {
		t.Errorf("TryAcquire after Close: %v", err)
	}
	e := open(t, g.dir)
	for _, r := range results {
		if got, err := e.Get(t.Context(), r.lock.ID, t0); err != nil || !same(got, r.lock) {
			t.Errorf("after reopening Get(%s) = %+v, %v; want %+v", r.lock.Name, got, err, r.lock)
		}
	}
}

// TestCommitterCloseFailsQueued: a step still queued when the committer
// stops (a caller that bypassed the engine's entry) gets ErrClosed, unrun.
func TestCommitterCloseFailsQueued(t *testing.T) {
	e := open(t, t.TempDir())
	gate := make(chan struct{}) // never opened
	c := startCommitter(e.db, gate, nil)
	var ran atomic.Bool
	res := make(chan error, 1)
	go func() {
		res <- c.submit(context.Background(), func(*bdg.Txn, *eventLog) error { ran.Store(true); return nil })
	}()
	waitQueued(t, c, 1)
	c.close()
	if err := <-res; !errors.Is(err, locklock.ErrClosed) || ran.Load() {
		t.Errorf("step queued at close: %v (ran: %v), want ErrClosed, unrun", err, ran.Load())
	}
}

// TestCommitStatsBuckets: the histograms in Prometheus's cumulative form.
func TestCommitStatsBuckets(t *testing.T) {
	var st CommitStats
	st.add(1, 500*time.Nanosecond, false)
	st.add(3, 3*time.Microsecond, false)
	st.add(64, 1500*time.Microsecond, false)
	st.add(maxBatch, time.Hour, true)
	if st.Batches != 4 || st.Steps != 1+3+64+maxBatch || st.Failed != 1 {
		t.Fatalf("stats %+v", st)
	}
	sizes := st.BatchSizeBuckets()
	for le, want := range map[float64]uint64{1: 1, 3: 2, 63: 2, 127: 3, 255: 3, 511: 4} {
		if sizes[le] != want {
			t.Errorf("batches of at most %v steps: %d, want %d", le, sizes[le], want)
		}
	}
	times := st.CommitTimeBuckets()
	for le, want := range map[float64]uint64{1e-6: 1, 2e-6: 1, 4e-6: 2, 0.001024: 2, 0.002048: 3, 0.524288: 3} {
		if times[le] != want {
			t.Errorf("commits under %vs: %d, want %d", le, times[le], want)
		}
	}
	if len(times) != len(st.CommitTimes)-1 {
		t.Errorf("%d duration buckets, want %d (the open-ended one left to the count)", len(times), len(st.CommitTimes)-1)
	}
}
