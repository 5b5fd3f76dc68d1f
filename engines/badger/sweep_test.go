package badger

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	bdg "github.com/dgraph-io/badger/v4"

	"github.com/locklock/locklock/locklock"
)

func TestSweep(t *testing.T) {
	ctx := t.Context()
	e := open(t, t.TempDir())
	for i, ttl := range []time.Duration{1, 2, 3, 4, 5} {
		mustAcquire(t, e, newLock(fmt.Sprintf("l%d", i+1), t0, ttl*time.Second, ""), t0)
	}
	// l1 expired and was taken again: its first index entry must be gone.
	again := mustAcquire(t, e, newLock("l1", t0.Add(time.Second), 10*time.Second, ""), t0.Add(time.Second))
	// l2 is refreshed before it expires; its old expiry must not sweep it.
	if _, err := e.Refresh(ctx, testID("l2"), t0.Add(time.Second), expireAt(t0.Add(20*time.Second)), allowAll); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	checkIndex(t, e)

	sweep := func(at time.Duration, want int, stored ...string) {
		t.Helper()
		now := t0.Add(at)
		n, err := e.Sweep(ctx, now)
		if err != nil {
			t.Fatalf("Sweep(+%v): %v", at, err)
		}
		if n != want {
			t.Errorf("Sweep(+%v) = %d, want %d", at, n, want)
		}
		// Judged at t0, when every lock was live, Get shows what is stored.
		var left []string
		for _, name := range []string{"l1", "l2", "l3", "l4", "l5"} {
			if _, err := e.Get(ctx, testID(name), t0.Add(time.Second)); err == nil {
				left = append(left, name)
			}
		}
		if !slices.Equal(left, stored) {
			t.Errorf("after Sweep(+%v) stored locks %v, want %v", at, left, stored)
		}
		checkIndex(t, e)
	}
	sweep(0, 0, "l1", "l2", "l3", "l4", "l5")
	sweep(3*time.Second, 1, "l1", "l2", "l4", "l5") // l3; l2's old expiry passed
	sweep(3*time.Second, 0, "l1", "l2", "l4", "l5")
	sweep(5*time.Second, 2, "l1", "l2") // l4, l5
	if got, err := e.Get(ctx, again.ID, t0.Add(5*time.Second)); err != nil || !same(got, again) {
		t.Errorf("re-acquired l1 = %+v, %v; want %+v", got, err, again)
	}
	sweep(11*time.Second, 1, "l2") // l1 expires at exactly +11s
	sweep(time.Hour, 1)

	// Nothing left in the index either.
	n, err := e.Sweep(ctx, t0.Add(1000*time.Hour))
	if n != 0 || err != nil {
		t.Errorf("final Sweep = %d, %v; want 0, nil", n, err)
	}
}

// checkIndex verifies the index invariant: one entry per stored record, in
// the expiry index at its expiry while it is held, in the delay index at the
// end of its lock-delay once it has ended, and nothing else.
func checkIndex(t *testing.T, e *Engine) {
	t.Helper()
	want := map[string]bool{}
	var got []string
	err := e.view(func(txn *bdg.Txn) error {
		it := txn.NewIterator(bdg.IteratorOptions{Prefix: lockPrefix, PrefetchValues: true})
		for it.Rewind(); it.Valid(); it.Next() {
			id, err := parseLockKey(it.Item().Key())
			if err != nil {
				return err
			}
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			l, err := decodeRecord(id, v)
			if err != nil {
				return err
			}
			want[string(indexKey(l))] = true
		}
		it.Close()
		for _, prefix := range [][]byte{expiryPrefix, delayPrefix} {
			it = txn.NewIterator(bdg.IteratorOptions{Prefix: prefix})
			for it.Rewind(); it.Valid(); it.Next() {
				got = append(got, string(it.Item().KeyCopy(nil)))
			}
			it.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("reading the index: %v", err)
	}
	for _, k := range got {
		if !want[k] {
			t.Errorf("stray expiry index entry %q", k)
		}
		delete(want, k)
	}
	for k := range want {
		t.Errorf("missing expiry index entry %q", k)
	}
}

// TestSweepStaleIndexEntry plants an index entry that disagrees with the
// record, as a bug or a future format change might leave: Sweep must judge by
// the record and only drop the stray entry.
func TestSweepStaleIndexEntry(t *testing.T) {
	e := open(t, t.TempDir())
	l := mustAcquire(t, e, newLock("s", t0, time.Hour, ""), t0)
	err := e.update(t.Context(), func(txn *bdg.Txn, _ *eventLog) error {
		return txn.Set(expiryKey(t0.Add(time.Second), l.ID), []byte{})
	})
	if err != nil {
		t.Fatal(err)
	}
	n, err := e.Sweep(t.Context(), t0.Add(time.Minute))
	if err != nil || n != 0 {
		t.Fatalf("Sweep = %d, %v; want 0, nil", n, err)
	}
	if got, err := e.Get(t.Context(), l.ID, t0.Add(time.Minute)); err != nil || !same(got, l) {
		t.Fatalf("Get after Sweep = %+v, %v; want %+v", got, err, l)
	}
	checkIndex(t, e)
}

// TestConcurrentMixed runs every writing operation and Sweep at once over a
// few locks, with and without lock-delays, so that conflicts and retries
// happen, then checks the index.
func TestConcurrentMixed(t *testing.T) {
	ctx := t.Context()
	e := open(t, t.TempDir(), WithSyncWrites(false))
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 200 {
				now := t0.Add(time.Duration(i) * 100 * time.Millisecond)
				id := testID(fmt.Sprintf("m%d", (w+i)%4))
				var err error
				switch i % 4 {
				case 0:
					// Half the workers' locks have a lock-delay, so that
					// ended records meet every other step too.
					_, err = e.TryAcquire(ctx, locklock.Lock{ID: id, AcquiredAt: now, ExpiresAt: now.Add(time.Duration(w+1) * 100 * time.Millisecond),
						LockDelay: time.Duration(w%2) * time.Second}, now)
				case 1:
					_, err = e.Refresh(ctx, id, now, expireAt(now.Add(time.Second)), allowAll)
				case 2:
					_, err = e.Release(ctx, id, now, allowAll)
				case 3:
					_, err = e.Sweep(ctx, now)
				}
				if err != nil && !errors.Is(err, locklock.ErrHeld) && !errors.Is(err, locklock.ErrNotFound) && !errors.Is(err, locklock.ErrDelayed) {
					t.Errorf("op %d: %v", i%4, err)
					return
				}
			}
		})
	}
	wg.Wait()
	checkIndex(t, e)
}

func TestSweepManyBatches(t *testing.T) {
	ctx := t.Context()
	e := open(t, t.TempDir(), WithSyncWrites(false)) // speed; durability is tested elsewhere
	const expired, live = 3*sweepBatch + 7, 5
	for i := range expired + live {
		ttl := time.Second
		if i >= expired {
			ttl = time.Hour
		}
		mustAcquire(t, e, newLock(fmt.Sprintf("n%04d", i), t0, ttl, ""), t0)
	}
	n, err := e.Sweep(ctx, t0.Add(time.Minute))
	if err != nil || n != expired {
		t.Fatalf("Sweep = %d, %v; want %d, nil", n, err, expired)
	}
	got, err := e.List(ctx, locklock.ListQuery{Namespace: "public", Kind: locklock.KindKey, Limit: 100}, t0)
	if err != nil || len(got) != live {
		t.Fatalf("List after sweep: %d locks, %v; want %d", len(got), err, live)
	}
	checkIndex(t, e)
}
