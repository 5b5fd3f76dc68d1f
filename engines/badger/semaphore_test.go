package badger

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	bdg "github.com/dgraph-io/badger/v4"

	"github.com/locklock/locklock/locklock"
)

// Semaphores in the Badger engine: the rules of API.md §10 as this engine
// stores them (slot records, the slot expiry index, heads), and durability.

// newSlot is a candidate slot of testID(name), acquired at at for ttl.
func newSlot(name string, limit, weight int, at time.Time, ttl time.Duration, secret string) locklock.Slot {
	return locklock.Slot{
		Semaphore: testID(name), ID: locklock.NewSlotID(), Limit: limit, Weight: weight,
		AcquiredAt: at, ExpiresAt: at.Add(ttl), Guard: locklock.NewGuard(secret),
	}
}

// sameSecret is the Service's retry test for a request with secret.
func sameSecret(secret string) func(locklock.Slot) bool {
	return func(s locklock.Slot) bool { return s.Guard.Protected() && s.Guard.Admits(secret) }
}

func mustSlot(t *testing.T, e *Engine, cand locklock.Slot, now time.Time) locklock.Slot {
	t.Helper()
	got, created, err := e.TryAcquireSlot(t.Context(), cand, now, nil)
	if err != nil || !created {
		t.Fatalf("TryAcquireSlot(%s, weight %d): created %v, %v", cand.Semaphore.Name, cand.Weight, created, err)
	}
	return got
}

func sameSlot(a, b locklock.Slot) bool { return reflect.DeepEqual(a, b) }

// slotIDs lists the slots' ids in order.
func slotIDs(slots []locklock.Slot) []string {
	var ids []string
	for _, s := range slots {
		ids = append(ids, s.ID)
	}
	return ids
}

// checkSlots verifies the semaphore tables: every slot record decodes and
// has exactly one expiry index entry, at its ExpiresAt; every index entry
// names a record; a head exists exactly for every semaphore with records,
// counting them.
func checkSlots(t *testing.T, e *Engine) {
	t.Helper()
	wantIndex := map[string]bool{}
	records := map[string]int{} // head key → slot records
	var index []string
	heads := map[string]int{}
	err := e.view(func(txn *bdg.Txn) error {
		it := txn.NewIterator(bdg.IteratorOptions{Prefix: slotPrefix, PrefetchValues: true})
		for it.Rewind(); it.Valid(); it.Next() {
			id, slot, err := parseSlotRef(it.Item().Key()[len(slotPrefix):])
			if err != nil {
				it.Close()
				return err
			}
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				it.Close()
				return err
			}
			s, err := decodeSlot(id, slot, v)
			if err != nil {
				it.Close()
				return err
			}
			wantIndex[string(slotExpiryKey(s.ExpiresAt, id, slot))] = true
			records[string(headKey(id))]++
		}
		it.Close()
		it = txn.NewIterator(bdg.IteratorOptions{Prefix: slotExpiryPrefix})
		for it.Rewind(); it.Valid(); it.Next() {
			index = append(index, string(it.Item().KeyCopy(nil)))
		}
		it.Close()
		it = txn.NewIterator(bdg.IteratorOptions{Prefix: headPrefix, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			id, err := parseID(it.Item().Key()[len(headPrefix):])
			if err != nil {
				return err
			}
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			if heads[string(it.Item().Key())], err = decodeHead(id, v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("reading the semaphore tables: %v", err)
	}
	for _, k := range index {
		if !wantIndex[k] {
			t.Errorf("stray slot expiry index entry %q", k)
		}
		delete(wantIndex, k)
	}
	for k := range wantIndex {
		t.Errorf("missing slot expiry index entry %q", k)
	}
	if !reflect.DeepEqual(heads, records) {
		t.Errorf("heads %v, want the slot records' counts %v", heads, records)
	}
}

func TestSlotAcquireRules(t *testing.T) {
	ctx := t.Context()
	e := open(t, t.TempDir())
	a := newSlot("pool", 4, 2, t0, time.Minute, "sa")
	a.Holder, a.Metadata = "worker-1", map[string]string{"job": "render"}
	got, created, err := e.TryAcquireSlot(ctx, a, t0, sameSecret("sa"))
	if err != nil || !created || got.Token == 0 {
		t.Fatalf("first acquire = %+v, created %v, %v", got, created, err)
	}
	want := normalizeSlot(a)
	want.Token = got.Token
	if !sameSlot(got, want) {
		t.Errorf("acquire returned %+v, want %+v", got, want)
	}

	// Fits: 2 + 2 of 4.
	b := mustSlot(t, e, newSlot("pool", 4, 2, t0, 2*time.Minute, ""), t0)
	if b.Token <= got.Token {
		t.Errorf("second token %d not above %d", b.Token, got.Token)
	}
	// Full: 4 of 4, and the answer says when room may come.
	_, _, err = e.TryAcquireSlot(ctx, newSlot("pool", 4, 1, t0, time.Minute, ""), t0, nil)
	var full *locklock.FullError
	if !errors.As(err, &full) || full.InUse != 4 || full.Limit != 4 || full.Weight != 1 || !full.FreesAt.Equal(got.ExpiresAt) {
		t.Errorf("acquire beyond the limit: %v (%+v), want a FullError with 4 in use, freeing at %v", err, full, got.ExpiresAt)
	}
	// Another limit while slots are live.
	_, _, err = e.TryAcquireSlot(ctx, newSlot("pool", 5, 1, t0, time.Minute, ""), t0, nil)
	var mismatch *locklock.LimitMismatchError
	if !errors.As(err, &mismatch) || mismatch.Limit != 4 || mismatch.Asked != 5 {
		t.Errorf("acquire with another limit: %v, want a LimitMismatchError (4, asked 5)", err)
	}
	// A retry (same secret) gets its slot back unchanged, before the limit
	// is checked — with a limit that would mismatch, and while full.
	for _, limit := range []int{4, 9} {
		r, created, err := e.TryAcquireSlot(ctx, newSlot("pool", limit, 1, t0.Add(time.Second), time.Hour, "sa"), t0.Add(time.Second), sameSecret("sa"))
		if err != nil || created || !sameSlot(r, got) {
			t.Errorf("retry with limit %d = %+v, created %v, %v; want the first slot unchanged", limit, r, created, err)
		}
	}
	// A wrong secret is no retry.
	if _, _, err := e.TryAcquireSlot(ctx, newSlot("pool", 4, 1, t0, time.Minute, "other"), t0, sameSecret("other")); !errors.Is(err, locklock.ErrSemaphoreFull) {
		t.Errorf("acquire with another secret: %v, want ErrSemaphoreFull", err)
	}
	sem, err := e.GetSemaphore(ctx, testID("pool"), t0)
	if err != nil || sem.Limit != 4 || sem.InUse != 4 || !slices.Equal(slotIDs(sem.Slots), []string{got.ID, b.ID}) {
		t.Errorf("GetSemaphore = %+v, %v; want both slots, 4 of 4", sem, err)
	}
	if s, err := e.GetSlot(ctx, testID("pool"), got.ID, t0); err != nil || !sameSlot(s, got) {
		t.Errorf("GetSlot = %+v, %v; want %+v", s, err, got)
	}

	// The first slot expires: its room is free at its expiry, and the
	// acquire that finds it expired deletes it.
	at := got.ExpiresAt
	c := mustSlot(t, e, newSlot("pool", 4, 2, at, time.Minute, ""), at)
	sem, err = e.GetSemaphore(ctx, testID("pool"), t0) // judged earlier: still gone
	if err != nil || sem.InUse != 4 || !slices.Equal(slotIDs(sem.Slots), []string{b.ID, c.ID}) {
		t.Errorf("after the expiry GetSemaphore = %+v, %v; want b and c", sem, err)
	}
	checkSlots(t, e)

	// Invalid slot ids never reach the key layout.
	bad := newSlot("pool", 4, 1, t0, time.Minute, "")
	for _, id := range []string{"", "a\x00b"} {
		bad.ID = id
		if _, _, err := e.TryAcquireSlot(ctx, bad, at, nil); !errors.Is(err, locklock.ErrInvalidArgument) {
			t.Errorf("acquire with slot id %q: %v, want ErrInvalidArgument", id, err)
		}
		if _, err := e.GetSlot(ctx, testID("pool"), id, at); !errors.Is(err, locklock.ErrSlotNotFound) {
			t.Errorf("GetSlot(%q): %v, want ErrSlotNotFound", id, err)
		}
	}
}

// TestSemaphoreGoneSetsLimitAfresh: once its last slot ends (released,
// expired, swept) a semaphore is gone, head and all, and the next acquire
// sets its limit.
func TestSemaphoreGoneSetsLimitAfresh(t *testing.T) {
	ctx := t.Context()
	e := open(t, t.TempDir())
	id := testID("fresh")
	a := mustSlot(t, e, newSlot("fresh", 2, 1, t0, time.Minute, ""), t0)
	if _, err := e.ReleaseSlot(ctx, id, a.ID, t0, allowAnySlot); err != nil {
		t.Fatal(err)
	}
	checkSlots(t, e)
	if _, err := e.GetSemaphore(ctx, id, t0); !errors.Is(err, locklock.ErrSemaphoreNotFound) {
		t.Errorf("after the release: %v, want ErrSemaphoreNotFound", err)
	}
	b := mustSlot(t, e, newSlot("fresh", 3, 3, t0, time.Minute, ""), t0) // released: limit 3 now
	at := b.ExpiresAt
	c := mustSlot(t, e, newSlot("fresh", 5, 5, at, time.Minute, ""), at) // expired: limit 5 now
	if n, err := e.Sweep(ctx, c.ExpiresAt); err != nil || n != 1 {
		t.Errorf("Sweep = %d, %v; want 1", n, err)
	}
	checkSlots(t, e)
	mustSlot(t, e, newSlot("fresh", 7, 1, c.ExpiresAt, time.Minute, ""), c.ExpiresAt) // swept: limit 7 now
	checkSlots(t, e)
}

// TestSlotTokensRise: tokens rise per semaphore across its slots, across a
// clean reopen, and across a crash (no token lease given back).
func TestSlotTokensRise(t *testing.T) {
	dir := t.TempDir()
	e, err := Open(dir, quiet)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var last uint64
	take := func(e *Engine, name string, step int) {
		t.Helper()
		now := t0.Add(time.Duration(step) * time.Millisecond)
		s := mustSlot(t, e, newSlot(name, 3, 1, now, time.Hour, ""), now)
		if s.Token <= last {
			t.Fatalf("step %d: token %d not above %d", step, s.Token, last)
		}
		last = s.Token
		if _, err := e.ReleaseSlot(ctx, s.Semaphore, s.ID, now, allowAnySlot); err != nil {
			t.Fatal(err)
		}
	}
	// More than a lease's worth, so that the stored bound matters; locks
	// share the counter.
	for i := range tokenBandwidth + 10 {
		if i%100 == 0 {
			mustAcquire(t, e, newLock(fmt.Sprintf("l%d", i), t0, time.Hour, ""), t0)
		}
		take(e, "t", i)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e, err = Open(dir, quiet)
	if err != nil {
		t.Fatal(err)
	}
	take(e, "t", 0)
	crash(t, e)
	e = open(t, dir)
	take(e, "t", 0)
}

// TestSlotNoRevival: a slot judged expired by one step stays gone for steps
// carrying an earlier clock reading — whether a read, a release, an
// acquire on its semaphore or Sweep judged it.
func TestSlotNoRevival(t *testing.T) {
	ctx := t.Context()
	e := open(t, t.TempDir())
	id := testID("rev")
	judges := map[string]func(at time.Time, s locklock.Slot) error{
		"GetSlot": func(at time.Time, s locklock.Slot) error { _, err := e.GetSlot(ctx, id, s.ID, at); return err },
		"GetSemaphore": func(at time.Time, _ locklock.Slot) error {
			_, err := e.GetSemaphore(ctx, id, at)
			return err
		},
		"ListSemaphores": func(at time.Time, _ locklock.Slot) error {
			_, err := e.ListSemaphores(ctx, locklock.ListQuery{Namespace: id.Namespace, Kind: id.Kind, Limit: 10}, at)
			return err
		},
		"acquire": func(at time.Time, _ locklock.Slot) error {
			_, _, err := e.TryAcquireSlot(ctx, newSlot("rev", 2, 2, at, time.Second, ""), at, nil)
			return err
		},
		"Sweep": func(at time.Time, _ locklock.Slot) error { _, err := e.Sweep(ctx, at); return err },
	}
	for name, judge := range judges {
		s := mustSlot(t, e, newSlot("rev", 2, 1, t0, 10*time.Second, ""), t0)
		if err := judge(s.ExpiresAt, s); err != nil && !errors.Is(err, locklock.ErrSlotNotFound) && !errors.Is(err, locklock.ErrSemaphoreNotFound) {
			t.Fatalf("%s at the expiry: %v", name, err)
		}
		// The expired slot's record is gone from storage, not just hidden.
		if err := e.view(func(txn *bdg.Txn) error {
			if _, found, err := getSlot(txn, id, s.ID); err != nil || found {
				return fmt.Errorf("record still stored (%v)", err)
			}
			return nil
		}); err != nil {
			t.Errorf("%s at the expiry: %v", name, err)
		}
		if _, err := e.RefreshSlot(ctx, id, s.ID, t0, expireAt(t0.Add(time.Hour)), allowAnySlot); !errors.Is(err, locklock.ErrSlotNotFound) {
			t.Errorf("after %s: refresh judged before the expiry: %v, want ErrSlotNotFound", name, err)
		}
		if _, err := e.GetSlot(ctx, id, s.ID, t0); !errors.Is(err, locklock.ErrSlotNotFound) {
			t.Errorf("after %s: GetSlot judged before the expiry: %v, want ErrSlotNotFound", name, err)
		}
		checkSlots(t, e)
		if _, err := e.Sweep(ctx, t0.Add(time.Hour)); err != nil { // clear the acquire's slot
			t.Fatal(err)
		}
	}
	// A release at the expiry likewise.
	s := mustSlot(t, e, newSlot("rev", 2, 1, t0, 10*time.Second, ""), t0)
	if _, err := e.ReleaseSlot(ctx, id, s.ID, s.ExpiresAt, allowAnySlot); !errors.Is(err, locklock.ErrSlotNotFound) {
		t.Errorf("release at the expiry: %v, want ErrSlotNotFound", err)
	}
	if _, err := e.ReleaseSlot(ctx, id, s.ID, t0, allowAnySlot); !errors.Is(err, locklock.ErrSlotNotFound) {
		t.Errorf("release judged earlier, after one at the expiry: %v, want ErrSlotNotFound", err)
	}
	checkSlots(t, e)
}

func TestSlotReleaseRefreshAllow(t *testing.T) {
	ctx := t.Context()
	e := open(t, t.TempDir())
	id := testID("guarded")
	s := mustSlot(t, e, newSlot("guarded", 3, 1, t0, time.Minute, "pw"), t0)
	deny := errors.New("denied")
	denyAll := func(locklock.Slot) error { return deny }
	if _, err := e.ReleaseSlot(ctx, id, s.ID, t0, denyAll); err != deny {
		t.Errorf("release refused by allow: %v, want allow's error unchanged", err)
	}
	if _, err := e.RefreshSlot(ctx, id, s.ID, t0, expireAt(t0.Add(time.Hour)), denyAll); err != deny {
		t.Errorf("refresh refused by allow: %v, want allow's error unchanged", err)
	}
	holder := "worker-9"
	ch := locklock.Change{ExpiresAt: t0.Add(time.Hour), Holder: &holder, SetMetadata: true, Metadata: map[string]string{"k": "v"}}
	r, err := e.RefreshSlot(ctx, id, s.ID, t0.Add(time.Second), ch, allowAnySlot)
	want := s
	want.ExpiresAt, want.Holder, want.Metadata = t0.Add(time.Hour), holder, map[string]string{"k": "v"}
	if err != nil || !sameSlot(r, want) {
		t.Fatalf("refresh = %+v, %v; want %+v", r, err, want)
	}
	checkSlots(t, e)
	// Refreshed past its old expiry, it is live there, with its token.
	if got, err := e.GetSlot(ctx, id, s.ID, s.ExpiresAt.Add(time.Second)); err != nil || !sameSlot(got, want) {
		t.Errorf("after the refresh GetSlot = %+v, %v", got, err)
	}
	if n, err := e.Sweep(ctx, s.ExpiresAt.Add(time.Second)); err != nil || n != 0 {
		t.Errorf("Sweep past the old expiry = %d, %v; want 0", n, err)
	}
	got, err := e.ReleaseSlot(ctx, id, s.ID, t0.Add(2*time.Second), allowAnySlot)
	if err != nil || !sameSlot(got, want) {
		t.Errorf("release = %+v, %v; want the slot as it was", got, err)
	}
	for op, err := range map[string]error{
		"get":     second(e.GetSlot(ctx, id, s.ID, t0)),
		"release": second(e.ReleaseSlot(ctx, id, s.ID, t0, allowAnySlot)),
		"refresh": second(e.RefreshSlot(ctx, id, s.ID, t0, expireAt(t0.Add(time.Hour)), allowAnySlot)),
	} {
		if !errors.Is(err, locklock.ErrSlotNotFound) {
			t.Errorf("%s after the release: %v, want ErrSlotNotFound", op, err)
		}
	}
	checkSlots(t, e)
}

func second[T any](_ T, err error) error { return err }

// TestGetSemaphoreOrder: slots come by token, whatever their random ids'
// key order.
func TestGetSemaphoreOrder(t *testing.T) {
	e := open(t, t.TempDir(), WithSyncWrites(false))
	var want []string
	inUse := 0
	for i := range 300 {
		s := mustSlot(t, e, newSlot("order", 1000, 1+i%3, t0, time.Hour, ""), t0)
		want = append(want, s.ID)
		inUse += s.Weight
	}
	sem, err := e.GetSemaphore(t.Context(), testID("order"), t0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(slotIDs(sem.Slots), want) || sem.InUse != inUse || sem.Limit != 1000 || sem.ID != testID("order") {
		t.Errorf("GetSemaphore: limit %d, in use %d (want %d), slots in grant order: %v",
			sem.Limit, sem.InUse, inUse, slices.Equal(slotIDs(sem.Slots), want))
	}
	if !slices.IsSortedFunc(sem.Slots, func(a, b locklock.Slot) int { return cmp.Compare(a.Token, b.Token) }) {
		t.Error("slots not by token")
	}
}

// TestManyExpiredSlots: more expired slots than one transaction could
// delete (Badger takes about 6,500 writes) are deleted in steps ahead of
// the operation that finds them, which then answers as if they had been
// deleted in its own step.
func TestManyExpiredSlots(t *testing.T) {
	ctx := t.Context()
	const n = 4000
	id := testID("many")
	fill := func(e *Engine) locklock.Slot {
		slots := make([]locklock.Slot, n)
		for i := range slots {
			slots[i] = normalizeSlot(newSlot("many", 10000, 1, t0, time.Second, ""))
			slots[i].Token = uint64(i + 1)
		}
		slots[n/2].ExpiresAt = t0.Add(time.Hour)
		plantSlots(t, e, slots)
		return slots[n/2]
	}
	at := t0.Add(time.Minute)
	ops := map[string]func(e *Engine) error{
		"acquire": func(e *Engine) error {
			_, _, err := e.TryAcquireSlot(ctx, newSlot("many", 10000, 1, at, time.Hour, ""), at, nil)
			return err
		},
		"full acquire": func(e *Engine) error {
			_, _, err := e.TryAcquireSlot(ctx, newSlot("many", 10000, 10000, at, time.Hour, ""), at, nil)
			if errors.Is(err, locklock.ErrSemaphoreFull) {
				return nil
			}
			return fmt.Errorf("%v, want ErrSemaphoreFull", err)
		},
		"GetSemaphore": func(e *Engine) error {
			sem, err := e.GetSemaphore(ctx, id, at)
			if err == nil && len(sem.Slots) != 1 {
				return fmt.Errorf("%d slots, want the 1 live", len(sem.Slots))
			}
			return err
		},
		"ListSemaphores": func(e *Engine) error {
			got, err := e.ListSemaphores(ctx, locklock.ListQuery{Namespace: id.Namespace, Kind: id.Kind, Limit: 10}, at)
			if err == nil && (len(got) != 1 || got[0].Slots != 1 || got[0].InUse != 1) {
				return fmt.Errorf("%+v, want the 1 live slot", got)
			}
			return err
		},
	}
	for name, op := range ops {
		t.Run(name, func(t *testing.T) {
			e := open(t, t.TempDir(), WithSyncWrites(false))
			keep := fill(e)
			if err := op(e); err != nil {
				t.Fatal(err)
			}
			checkSlots(t, e)
			if n, err := e.Sweep(ctx, at); err != nil || n != 0 {
				t.Errorf("Sweep after %s = %d, %v; want nothing left to delete", name, n, err)
			}
			if _, err := e.GetSlot(ctx, id, keep.ID, at); err != nil {
				t.Errorf("the live slot after %s: %v", name, err)
			}
		})
	}
	t.Run("Sweep", func(t *testing.T) {
		e := open(t, t.TempDir(), WithSyncWrites(false))
		fill(e)
		if got, err := e.Sweep(ctx, at); err != nil || got != n-1 {
			t.Errorf("Sweep = %d, %v; want %d", got, err, n-1)
		}
		checkSlots(t, e)
	})
}

// plantSlots stores slots of one semaphore straight into e, in steps of up
// to 1,000, as if acquired: faster than acquiring thousands one by one.
func plantSlots(t *testing.T, e *Engine, slots []locklock.Slot) {
	t.Helper()
	for chunk := range slices.Chunk(slots, 1000) {
		err := e.update(t.Context(), func(txn *bdg.Txn, _ *eventLog) error {
			for _, s := range chunk {
				if err := putSlot(txn, s); err != nil {
					return err
				}
			}
			return adjustHead(txn, chunk[0].Semaphore, len(chunk))
		})
		if err != nil {
			t.Fatalf("planting slots: %v", err)
		}
	}
}
