package badger

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	bdg "github.com/dgraph-io/badger/v4"

	"github.com/locklock/locklock/locklock"
)

// Events and the group commit: reported only once a batch has committed,
// once per committed change, and what a read saw before it answers.

// commitControl stands in for Badger's CommitWith (withCommitWith): it
// commits, fails the commit, or holds it until released.
type commitControl struct {
	mode    atomic.Int32 // commitNormally, commitFails, commitHeld
	entered chan struct{}
	release chan struct{}
}

const (
	commitNormally = iota
	commitFails
	commitHeld
)

var errInjectedCommit = errors.New("injected commit failure")

func newCommitControl() *commitControl {
	return &commitControl{entered: make(chan struct{}, 1), release: make(chan struct{})}
}

func (c *commitControl) commitWith(txn *bdg.Txn, cb func(error)) {
	switch c.mode.Swap(commitNormally) {
	case commitFails:
		txn.Discard()
		cb(errInjectedCommit)
		return
	case commitHeld:
		c.entered <- struct{}{}
		<-c.release
	}
	txn.CommitWith(cb)
}

// TestEventsOnlyAfterCommit: nothing is reported before a batch's commit,
// nor for a commit that fails, nor for a step canceled while queued.
func TestEventsOnlyAfterCommit(t *testing.T) {
	cc := newCommitControl()
	g := openGated(t, withCommitWith(cc.commitWith))
	log := watchEngine(t, g.Engine)

	// Held before its commit: the steps ran, nothing is reported yet.
	cc.mode.Store(commitHeld)
	var x result
	done := make(chan struct{})
	go func() { defer close(done); g.acquireOp(&x, newLock("x", t0, time.Hour, ""), t0)() }()
	waitQueued(t, g.commit, 1)
	g.gate <- struct{}{}
	<-cc.entered
	time.Sleep(20 * time.Millisecond) // a reporter that did not wait would have by now
	wantEvents(t, "a batch whose commit has not begun", log.take())
	close(cc.release)
	<-done
	if x.err != nil {
		t.Fatal(x.err)
	}
	wantEvents(t, "after its commit", log.take(), acquired(t0, x.lock))

	// A commit that fails: its steps get the storage error, nothing is
	// reported, nothing was applied.
	cc.mode.Store(commitFails)
	var y, rel result
	g.batch(t,
		g.acquireOp(&y, newLock("y", t0, time.Hour, ""), t0),
		g.releaseOp(&rel, x.lock.ID, t0, allowAll),
	)
	if !errors.Is(y.err, errInjectedCommit) || !errors.Is(y.err, locklock.ErrUnavailable) || !errors.Is(rel.err, errInjectedCommit) {
		t.Fatalf("steps of a failed commit: %v, %v; want ErrUnavailable wrapping the failure", y.err, rel.err)
	}
	wantEvents(t, "a failed commit", log.take())
	if got, err := g.Get(t.Context(), x.lock.ID, t0); err != nil || !same(got, x.lock) {
		t.Errorf("x after the failed release: %+v, %v", got, err)
	}

	// Canceled while queued: never run, nothing reported.
	ctx, cancel := context.WithCancel(t.Context())
	canceled := make(chan error, 1)
	go func() {
		_, err := g.TryAcquire(ctx, newLock("z", t0, time.Hour, ""), t0)
		canceled <- err
	}()
	waitQueued(t, g.commit, 1)
	cancel()
	if err := <-canceled; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled acquire: %v", err)
	}
	var w result
	g.batch(t, g.acquireOp(&w, newLock("w", t0, time.Hour, ""), t0))
	wantEvents(t, "a canceled step, then an acquire", log.take(), acquired(t0, w.lock))
}

// TestEventsFailedStepTakenOut: a step taken out of its batch (it failed
// after writing) reports nothing of what its discarded attempt did — here
// the expiry of the lock an acquire would have replaced, which the next
// step to settle the lock reports — and the steps run again report once.
func TestEventsFailedStepTakenOut(t *testing.T) {
	g := openGated(t)
	log := watchEngine(t, g.Engine)
	var old result
	g.batch(t, g.acquireOp(&old, newLock("old", t0, time.Second, ""), t0))
	if old.err != nil {
		t.Fatal(old.err)
	}
	log.take()
	g.failNextTokenReservation(errors.New("disk full"))

	later := t0.Add(time.Hour)
	var a, replace, b result
	failing := errors.New("failed after writing")
	var custom error
	d := g.batch(t,
		g.acquireOp(&a, newLock("a", later, time.Hour, ""), later),
		g.acquireOp(&replace, newLock("old", later, time.Hour, ""), later),
		func() {
			// A step that records an event, then fails.
			custom = g.update(t.Context(), func(txn *bdg.Txn, ev *eventLog) error {
				if err := txn.Set([]byte("t\x00custom"), nil); err != nil {
					return err
				}
				ev.add(locklock.EventAcquired, later, newLock("custom", later, time.Hour, ""))
				return failing
			})
		},
		g.acquireOp(&b, newLock("b", later, time.Hour, ""), later),
	)
	wantBatches(t, d, 1, 2, 2)
	if a.err != nil || replace.err == nil || custom != failing || b.err != nil {
		t.Fatalf("steps: %v, %v (want a failure), %v (want %v), %v", a.err, replace.err, custom, failing, b.err)
	}
	wantEvents(t, "a batch with a step taken out", log.take(), acquired(later, a.lock), acquired(later, b.lock))
	var got result
	g.batch(t, func() { got.lock, got.err = g.Get(t.Context(), old.lock.ID, later) })
	if !errors.Is(got.err, locklock.ErrNotFound) {
		t.Fatalf("Get of the expired lock: %v", got.err)
	}
	wantEvents(t, "Get settling the lock", log.take(), expired(old.lock))
}

// TestEventsConflictRerunReportsOnce: a batch whose commit conflicts runs
// again; its steps report once, from the attempt that committed (whose
// tokens differ from the discarded attempt's).
func TestEventsConflictRerunReportsOnce(t *testing.T) {
	g := openGated(t)
	log := watchEngine(t, g.Engine)
	var runs atomic.Int32
	var conflicting error
	var acq result
	d := g.batch(t,
		g.acquireOp(&acq, newLock("a", t0, time.Hour, ""), t0),
		g.conflictOnceOp(&conflicting, &runs),
	)
	wantBatches(t, d, 1, 2, 1)
	if acq.err != nil || conflicting != nil {
		t.Fatalf("after the rerun: %v, %v", acq.err, conflicting)
	}
	wantEvents(t, "a batch run again after a conflict", log.take(), acquired(t0, acq.lock))
}

// TestGetWaitsForReport: Badger makes a commit visible to readers before
// its callback reports the events; a Get that reads the change waits for
// the report, so that a stream starting from what Get read never gets the
// change's event after it.
func TestGetWaitsForReport(t *testing.T) {
	var delay atomic.Bool
	hold := make(chan struct{})
	e := open(t, t.TempDir(), withCommitWith(func(txn *bdg.Txn, cb func(error)) {
		if !delay.Load() {
			txn.CommitWith(cb)
			return
		}
		txn.CommitWith(func(err error) { <-hold; cb(err) })
	}))
	log := watchEngine(t, e)
	delay.Store(true)
	acq := make(chan result, 1)
	go func() {
		l, err := e.TryAcquire(context.Background(), newLock("x", t0, time.Hour, ""), t0)
		acq <- result{l, err}
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		var found bool
		if err := e.view(func(txn *bdg.Txn) (err error) { _, found, err = getLock(txn, testID("x")); return err }); err != nil {
			t.Fatal(err)
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the acquire's commit never became visible")
		}
	}
	got := make(chan result, 1)
	go func() {
		l, err := e.Get(context.Background(), testID("x"), t0)
		got <- result{l, err}
	}()
	select {
	case r := <-got:
		close(hold)
		<-acq
		t.Fatalf("Get answered %+v, %v before the change it read was reported", r.lock, r.err)
	case <-time.After(100 * time.Millisecond):
	}
	wantEvents(t, "a commit whose callback has not run", log.take())
	close(hold)
	r := <-got
	a := <-acq
	if a.err != nil || r.err != nil || !same(r.lock, a.lock) {
		t.Fatalf("acquire %+v, %v; Get %+v, %v", a.lock, a.err, r.lock, r.err)
	}
	wantEvents(t, "once reported", log.take(), acquired(t0, a.lock))
}
