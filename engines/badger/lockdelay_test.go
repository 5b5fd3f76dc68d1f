package badger

import (
	"errors"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
)

// The lock-delay as the Badger engine keeps it: an Ended record, indexed in
// the delay index, written in the committed batch of the step that judged
// the lock expired. The conformance suite covers the rules; these tests
// cover the storage.

// delayedLock expires at t0+10s and keeps others off until t0+30s.
func delayedLock(name string) locklock.Lock {
	l := newLock(name, t0, 10*time.Second, "pw")
	l.LockDelay = 20 * time.Second
	l.Holder = "host-a:7"
	l.Metadata = map[string]string{"addr": "10.0.0.7:8080"}
	return l
}

func wantDelayed(t *testing.T, op string, err error, want locklock.Lock) {
	t.Helper()
	var d *locklock.DelayedError
	if !errors.As(err, &d) || !same(d.Lock, want) {
		t.Fatalf("%s: %v, want *DelayedError with %+v", op, err, want)
	}
}

// TestEndedRecordAcrossCrash: a lock ended by the sweeper stays ended,
// labels and all, across a kill -9; it is neither counted nor listed, even
// by a step judged before its expiry; the sweeper deletes it exactly when
// its lock-delay runs out.
func TestEndedRecordAcrossCrash(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	e, err := Open(dir, quiet)
	if err != nil {
		t.Fatal(err)
	}
	l := mustAcquire(t, e, delayedLock("ended"), t0)
	if n, err := e.Sweep(ctx, t0.Add(11*time.Second)); err != nil || n != 1 {
		t.Fatalf("Sweep after expiry = %d, %v; want the lock ended", n, err)
	}
	checkIndex(t, e)
	crash(t, e)

	e = open(t, dir)
	checkIndex(t, e)
	ended := l
	ended.Ended = true
	at := t0.Add(12 * time.Second)
	_, err = e.TryAcquire(ctx, newLock(l.Name, at, time.Hour, "other"), at)
	wantDelayed(t, "acquire after the crash", err, ended)
	_, err = e.Refresh(ctx, l.ID, t0, expireAt(t0.Add(time.Hour)), allowAll)
	wantDelayed(t, "refresh judged before the expiry", err, ended)
	for _, now := range []time.Time{t0, at} {
		if n, err := e.CountHeld(ctx, now); err != nil || n != 0 {
			t.Errorf("CountHeld(%v) = %d, %v; want 0: an ended record is not held", now, n, err)
		}
		got, err := e.List(ctx, locklock.ListQuery{Namespace: l.Namespace, Kind: l.Kind, Limit: 10}, now)
		if err != nil || len(got) != 0 {
			t.Errorf("List(%v) = %+v, %v; want nothing", now, got, err)
		}
	}

	until := t0.Add(30 * time.Second)
	if n, err := e.Sweep(ctx, until.Add(-time.Millisecond)); err != nil || n != 0 {
		t.Errorf("Sweep 1 ms before the lock-delay ends = %d, %v; want 0", n, err)
	}
	_, err = e.Get(ctx, l.ID, until.Add(-time.Millisecond))
	wantDelayed(t, "get 1 ms before the lock-delay ends", err, ended)
	if n, err := e.Sweep(ctx, until); err != nil || n != 1 {
		t.Errorf("Sweep when the lock-delay ends = %d, %v; want the record deleted", n, err)
	}
	checkIndex(t, e)
	if _, err := e.Get(ctx, l.ID, t0); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("after the sweep: %v, want ErrNotFound", err)
	}
	if n, err := e.Sweep(ctx, until.Add(1000*time.Hour)); err != nil || n != 0 {
		t.Errorf("final Sweep = %d, %v; want 0", n, err)
	}
}

// TestBarredAcquireEndsDurably: an acquire barred by a lock-delay marks the
// expired lock Ended in its own committed batch, so that after a kill -9 a
// step judged at an earlier instant still finds it ended; the lost holder's
// reclaim then replaces the record and its index entry.
func TestBarredAcquireEndsDurably(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	e, err := Open(dir, quiet)
	if err != nil {
		t.Fatal(err)
	}
	l := mustAcquire(t, e, delayedLock("barred"), t0)
	ended := l
	ended.Ended = true
	at := t0.Add(11 * time.Second)
	_, err = e.TryAcquire(ctx, newLock(l.Name, at, time.Hour, "other"), at)
	wantDelayed(t, "acquire after expiry", err, ended)
	crash(t, e)

	e = open(t, dir)
	checkIndex(t, e)
	_, err = e.Refresh(ctx, l.ID, t0, expireAt(t0.Add(time.Hour)), allowAll)
	wantDelayed(t, "refresh judged before the expiry, after the crash", err, ended)
	_, err = e.Get(ctx, l.ID, t0)
	wantDelayed(t, "get judged before the expiry, after the crash", err, ended)

	back := newLock(l.Name, at, time.Hour, "pw")
	back.Reclaims = l.Token
	got, err := e.TryAcquire(ctx, back, at)
	if err != nil || got.Token <= l.Token || got.Ended || got.Reclaims != 0 || got.LockDelay != 0 || got.Holder != "" {
		t.Fatalf("reclaim = %+v, %v; want a new plain grant above token %d", got, err, l.Token)
	}
	checkIndex(t, e)
	if n, err := e.CountHeld(ctx, at); err != nil || n != 1 {
		t.Errorf("CountHeld after the reclaim = %d, %v; want 1", n, err)
	}
}

// TestAcquireReplacesEndedRecord: once the lock-delay has run out, an
// acquire replaces the ended record before any sweep, index entry included.
func TestAcquireReplacesEndedRecord(t *testing.T) {
	ctx := t.Context()
	e := open(t, t.TempDir())
	l := mustAcquire(t, e, delayedLock("replaced"), t0)
	if n, err := e.Sweep(ctx, t0.Add(11*time.Second)); err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want the lock ended", n, err)
	}
	at := t0.Add(31 * time.Second)
	got := mustAcquire(t, e, newLock(l.Name, at, time.Hour, "other"), at)
	if got.Token <= l.Token {
		t.Errorf("token %d, want > %d", got.Token, l.Token)
	}
	checkIndex(t, e)
	if n, err := e.Sweep(ctx, at); err != nil || n != 0 {
		t.Errorf("Sweep = %d, %v; want 0: nothing is due", n, err)
	}
}
