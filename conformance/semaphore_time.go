package conformance

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
)

// testSlotTokensRise: tokens rise per semaphore across all its slots —
// live together, after releases and after expiries — with another
// semaphore and a lock of the same name taking tokens in between.
func testSlotTokensRise(t *testing.T, h Harness) {
	e := newEnv(t, h)
	id, other := e.id("tokens"), e.id("tokens-other")
	ttl := e.shortTTL()
	if h.RealTime {
		ttl = time.Hour // released below, never let run out on a slow machine
	}
	var last uint64
	for i := range 20 {
		first := e.take(locklock.SlotRequest{ID: id, Limit: 2, TTL: ttl})
		second := e.take(locklock.SlotRequest{ID: id, Limit: 2, TTL: time.Hour})
		if first.Token <= last || second.Token <= first.Token {
			t.Fatalf("round %d: tokens %d then %d, want rising above %d", i, first.Token, second.Token, last)
		}
		last = second.Token
		o := e.take(locklock.SlotRequest{ID: other, Limit: 1})
		if _, err := e.svc.ReleaseSlot(e.ctx(), other, o.ID, ""); err != nil {
			t.Fatal(err)
		}
		e.acquire(locklock.AcquireRequest{ID: id})
		if _, err := e.svc.Release(e.ctx(), id, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.ReleaseSlot(e.ctx(), id, second.ID, ""); err != nil {
			t.Fatalf("release: %v", err)
		}
		if i%5 == 4 && !h.RealTime {
			e.pass(e.shortTTL()) // let it expire instead of releasing it
			continue
		}
		if _, err := e.svc.ReleaseSlot(e.ctx(), id, first.ID, ""); err != nil {
			t.Fatalf("release: %v", err)
		}
	}
}

// testSlotExpiry: a slot is live until its expires_at and gone from that
// instant, without a sweep: it needs no secret then, frees its weight, and
// when it was the last one the next acquire sets the limit afresh.
func testSlotExpiry(t *testing.T, h Harness) {
	e := newEnv(t, h)
	ttl := e.shortTTL()
	lone, shared := e.id("expiring"), e.id("expiring-shared")
	a := e.take(locklock.SlotRequest{ID: lone, Limit: 2, Secret: "a", TTL: ttl})
	s := e.take(locklock.SlotRequest{ID: shared, Limit: 2, Secret: "s", TTL: ttl})
	long := e.take(locklock.SlotRequest{ID: shared, Limit: 2, TTL: time.Hour})
	if !h.RealTime {
		// One millisecond before expiry the slots are still held.
		e.pass(ttl - time.Millisecond)
		if _, err := e.svc.GetSlot(e.ctx(), lone, a.ID); err != nil {
			t.Fatalf("get just before expiry: %v", err)
		}
		_, _, err := e.svc.AcquireSlot(e.ctx(), locklock.SlotRequest{ID: shared, Limit: 2})
		assertFull(t, "just before expiry", err, 2, 2)
		e.pass(time.Millisecond) // exactly at expires_at they are gone
	} else {
		e.pass(ttl + e.graceForRealTime())
	}
	if _, err := e.svc.GetSlot(e.ctx(), lone, a.ID); !errors.Is(err, locklock.ErrSlotNotFound) {
		t.Errorf("get of an expired slot: %v, want ErrSlotNotFound", err)
	}
	if _, err := e.svc.ReleaseSlot(e.ctx(), lone, a.ID, "wrong"); !errors.Is(err, locklock.ErrSlotNotFound) {
		t.Errorf("release of an expired slot: %v, want ErrSlotNotFound (no secret needed)", err)
	}
	if _, err := e.svc.PatchSlot(e.ctx(), a.ID, locklock.PatchRequest{ID: lone, Secret: "a", TTL: time.Hour}); !errors.Is(err, locklock.ErrSlotNotFound) {
		t.Errorf("refresh of an expired slot: %v, want ErrSlotNotFound", err)
	}
	if _, err := e.svc.GetSemaphore(e.ctx(), locklock.SemaphoreRequest{ID: lone}); !errors.Is(err, locklock.ErrSemaphoreNotFound) {
		t.Errorf("semaphore whose only slot expired: %v, want ErrSemaphoreNotFound", err)
	}
	if sem := e.semaphore(shared); sem.InUse != 1 || !hasSlots(sem, long) {
		t.Errorf("semaphore after one of two slots expired: %+v; want just %+v", sem, long)
	}
	if _, err := e.svc.GetSlot(e.ctx(), shared, s.ID); !errors.Is(err, locklock.ErrSlotNotFound) {
		t.Errorf("get of an expired slot beside a live one: %v", err)
	}
	fresh := e.take(locklock.SlotRequest{ID: lone, Limit: 5, Secret: "a"})
	if fresh.Limit != 5 || fresh.Token <= a.Token || fresh.ID == a.ID {
		t.Errorf("after expiry: %+v; want a new slot under limit 5 with a token above %d", fresh, a.Token)
	}
	if next := e.take(locklock.SlotRequest{ID: shared, Limit: 2}); next.Token <= long.Token {
		t.Errorf("token %d after expiry, want > %d", next.Token, long.Token)
	}
}

// testSlotNoRevival: the Service reads its clock just before it calls the
// engine, so two operations can reach the engine out of clock order. Once
// one has judged a slot expired, one carrying an earlier reading must not
// find it alive — not to refresh it, release it, read it, nor count its
// weight (as testNoRevival checks for locks).
func testSlotNoRevival(t *testing.T, h Harness) {
	if h.RealTime {
		t.Skip("the engine judges expiry by its own storage's time, not the given now")
	}
	allow := func(locklock.Slot) error { return nil }
	observers := []string{"GetSlot", "GetSemaphore", "ReleaseSlot", "RefreshSlot", "ListSemaphores", "Sweep", "TryAcquireSlot"}
	for _, beside := range []bool{false, true} {
		for _, observe := range observers {
			t.Run(fmt.Sprintf("after%s/beside%v", observe, beside), func(t *testing.T) {
				e := newEnv(t, h)
				id := e.id("revive")
				// limit 3: x alone fills it, or x and y together.
				xw := 3
				if beside {
					e.take(locklock.SlotRequest{ID: id, Limit: 3, TTL: time.Hour})
					xw = 2
				}
				x := e.take(locklock.SlotRequest{ID: id, Limit: 3, Weight: xw, TTL: 10 * time.Second})
				stale, late := x.AcquiredAt.Add(5*time.Second), x.ExpiresAt.Add(time.Second)
				eng := e.slots()
				var err error
				switch observe {
				case "GetSlot":
					_, err = eng.GetSlot(e.ctx(), id, x.ID, late)
				case "GetSemaphore":
					var sem locklock.Semaphore
					if sem, err = eng.GetSemaphore(e.ctx(), id, late); err == nil && containsSlot(sem.Slots, x.ID) {
						err = fmt.Errorf("still lists the expired slot: %+v", sem)
					}
				case "ReleaseSlot":
					_, err = eng.ReleaseSlot(e.ctx(), id, x.ID, late, allow)
				case "RefreshSlot":
					_, err = eng.RefreshSlot(e.ctx(), id, x.ID, late, locklock.Change{ExpiresAt: late.Add(time.Hour)}, allow)
				case "ListSemaphores":
					var sums []locklock.SemaphoreSummary
					sums, err = eng.ListSemaphores(e.ctx(), locklock.ListQuery{Namespace: id.Namespace, Kind: id.Kind, Limit: 10}, late)
					if err == nil && len(sums) > 0 && sums[0].InUse != 3-xw {
						err = fmt.Errorf("listed %+v, counting the expired slot", sums)
					}
				case "Sweep":
					_, err = e.engine.Sweep(e.ctx(), late)
				case "TryAcquireSlot":
					_, _, err = eng.TryAcquireSlot(e.ctx(), locklock.Slot{Semaphore: id, ID: locklock.NewSlotID(), Limit: 3, Weight: 1,
						AcquiredAt: late, ExpiresAt: late.Add(time.Hour)}, late, nil)
				}
				if err != nil && !errors.Is(err, locklock.ErrSlotNotFound) && !errors.Is(err, locklock.ErrSemaphoreNotFound) {
					t.Fatalf("%s after expiry: %v", observe, err)
				}
				if got, err := eng.RefreshSlot(e.ctx(), id, x.ID, stale, locklock.Change{ExpiresAt: stale.Add(time.Hour)}, allow); !errors.Is(err, locklock.ErrSlotNotFound) {
					t.Errorf("a refresh judged at an earlier instant revived the slot: %+v, %v", got, err)
				}
				if _, err := eng.ReleaseSlot(e.ctx(), id, x.ID, stale, allow); !errors.Is(err, locklock.ErrSlotNotFound) {
					t.Errorf("a release judged at an earlier instant found the slot: %v", err)
				}
				if got, err := eng.GetSlot(e.ctx(), id, x.ID, stale); !errors.Is(err, locklock.ErrSlotNotFound) {
					t.Errorf("a get judged at an earlier instant found the slot: %+v, %v", got, err)
				}
				if sem, err := eng.GetSemaphore(e.ctx(), id, stale); err == nil && containsSlot(sem.Slots, x.ID) {
					t.Errorf("a semaphore read at an earlier instant lists the slot: %+v", sem)
				}
				// The expired weight is free at the earlier instant too.
				cand := locklock.Slot{Semaphore: id, ID: locklock.NewSlotID(), Limit: 3, Weight: 1, AcquiredAt: stale, ExpiresAt: stale.Add(time.Hour)}
				if _, created, err := eng.TryAcquireSlot(e.ctx(), cand, stale, nil); err != nil || !created {
					t.Errorf("an acquire judged at an earlier instant: created %v, %v; want room where the expired slot was", created, err)
				}
			})
		}
	}
}

func containsSlot(slots []locklock.Slot, id string) bool {
	for _, sl := range slots {
		if sl.ID == id {
			return true
		}
	}
	return false
}

// testSlotSweep: Sweep removes expired slots, counts them, and keeps live
// and refreshed ones.
func testSlotSweep(t *testing.T, h Harness) {
	e := newEnv(t, h)
	ttl := e.shortTTL()
	a, b, c := e.id("sweep-a"), e.id("sweep-b"), e.id("sweep-c")
	var short []locklock.Slot
	for range 3 {
		short = append(short, e.take(locklock.SlotRequest{ID: a, Limit: 3, TTL: ttl}))
	}
	short = append(short, e.take(locklock.SlotRequest{ID: b, Limit: 2, TTL: ttl}))
	longB := e.take(locklock.SlotRequest{ID: b, Limit: 2, TTL: time.Hour})
	longC := e.take(locklock.SlotRequest{ID: c, Limit: 1, TTL: time.Hour})
	refreshed, err := e.svc.PatchSlot(e.ctx(), short[0].ID, locklock.PatchRequest{ID: a, TTL: time.Hour})
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if n, err := e.svc.Sweep(e.ctx()); err != nil || n != 0 {
		t.Errorf("sweep before anything expired = %d, %v; want 0", n, err)
	}
	e.pass(ttl + e.graceForRealTime())
	n, err := e.svc.Sweep(e.ctx())
	if err != nil {
		t.Fatalf("sweep: %v", err)
	}
	if !h.RealTime && n != 3 {
		t.Errorf("sweep removed %d, want 3 (4 short slots minus the refreshed one)", n)
	}
	if n, err := e.svc.Sweep(e.ctx()); err != nil || n != 0 {
		t.Errorf("second sweep = %d, %v; want 0", n, err)
	}
	if sem := e.semaphore(a); !hasSlots(sem, refreshed) || sem.InUse != 1 {
		t.Errorf("after sweep %s = %+v; want just the refreshed slot", a.Name, sem)
	}
	if sem := e.semaphore(b); !hasSlots(sem, longB) {
		t.Errorf("after sweep %s = %+v; want just the long slot", b.Name, sem)
	}
	if sem := e.semaphore(c); !hasSlots(sem, longC) {
		t.Errorf("after sweep %s = %+v", c.Name, sem)
	}
}

// testSlotContextCancelled: an engine given a done context applies nothing.
func testSlotContextCancelled(t *testing.T, h Harness) {
	e := newEnv(t, h)
	held := e.take(locklock.SlotRequest{ID: e.id("held"), Limit: 2, Secret: "s"})
	ctx, cancel := context.WithCancel(e.ctx())
	cancel()
	now := e.now()
	fresh := locklock.Slot{Semaphore: e.id("fresh"), ID: locklock.NewSlotID(), Limit: 1, Weight: 1, AcquiredAt: now, ExpiresAt: now.Add(time.Hour)}
	beside := fresh
	beside.Semaphore = held.Semaphore
	beside.Limit = 2
	allow := func(locklock.Slot) error { return nil }
	eng := e.slots()
	steps := map[string]func() error{
		"TryAcquireSlot":        func() error { _, _, err := eng.TryAcquireSlot(ctx, fresh, now, nil); return err },
		"TryAcquireSlot beside": func() error { _, _, err := eng.TryAcquireSlot(ctx, beside, now, nil); return err },
		"GetSemaphore":          func() error { _, err := eng.GetSemaphore(ctx, held.Semaphore, now); return err },
		"GetSlot":               func() error { _, err := eng.GetSlot(ctx, held.Semaphore, held.ID, now); return err },
		"ReleaseSlot":           func() error { _, err := eng.ReleaseSlot(ctx, held.Semaphore, held.ID, now, allow); return err },
		"RefreshSlot": func() error {
			_, err := eng.RefreshSlot(ctx, held.Semaphore, held.ID, now, locklock.Change{ExpiresAt: now.Add(48 * time.Hour)}, allow)
			return err
		},
		"ListSemaphores": func() error {
			_, err := eng.ListSemaphores(ctx, locklock.ListQuery{Namespace: locklock.DefaultNamespace, Kind: locklock.KindKey, Limit: 10}, now)
			return err
		},
	}
	for name, step := range steps {
		if err := step(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: %v, want context.Canceled", name, err)
		}
	}
	if _, err := e.svc.GetSemaphore(e.ctx(), locklock.SemaphoreRequest{ID: fresh.Semaphore}); !errors.Is(err, locklock.ErrSemaphoreNotFound) {
		t.Errorf("a cancelled TryAcquireSlot left a slot: %v", err)
	}
	if sem := e.semaphore(held.Semaphore); !hasSlots(sem, held) {
		t.Errorf("cancelled steps changed the semaphore: %+v; want just %+v", sem, held)
	}
}

// testSemaphoreClose: after Close every semaphore operation is ErrClosed.
func testSemaphoreClose(t *testing.T, h Harness) {
	e := newEnv(t, h)
	sl := e.take(locklock.SlotRequest{ID: e.id("closing"), Limit: 1})
	if err := e.engine.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	_, _, err := e.svc.AcquireSlot(e.ctx(), locklock.SlotRequest{ID: e.id("after"), Limit: 1})
	results := map[string]error{"AcquireSlot": err}
	_, results["GetSlot"] = e.svc.GetSlot(e.ctx(), sl.Semaphore, sl.ID)
	_, results["GetSemaphore"] = e.svc.GetSemaphore(e.ctx(), locklock.SemaphoreRequest{ID: sl.Semaphore})
	_, results["ReleaseSlot"] = e.svc.ReleaseSlot(e.ctx(), sl.Semaphore, sl.ID, "")
	_, results["PatchSlot"] = e.svc.PatchSlot(e.ctx(), sl.ID, locklock.PatchRequest{ID: sl.Semaphore})
	_, results["ListSemaphores"] = e.svc.ListSemaphores(e.ctx(), locklock.ListRequest{Namespace: locklock.DefaultNamespace, Kind: locklock.KindKey})
	for name, err := range results {
		if !errors.Is(err, locklock.ErrClosed) || !errors.Is(err, locklock.ErrUnavailable) {
			t.Errorf("%s after close: %v, want ErrClosed (ErrUnavailable)", name, err)
		}
	}
}

// testSemaphoreReopen: slots, with their limit, weights, labels and
// guards, survive a restart; released ones do not; tokens keep rising.
func testSemaphoreReopen(t *testing.T, h Harness) {
	if h.Reopen == nil {
		t.Skip("engine keeps nothing across restarts (Harness.Reopen is nil)")
	}
	e := newEnv(t, h)
	id, gone := e.id("kept"), e.id("gone")
	kept := e.take(locklock.SlotRequest{ID: id, Limit: 3, Weight: 2, Secret: "k", TTL: time.Hour, Holder: "h", Metadata: someMetadata})
	open := e.take(locklock.SlotRequest{ID: id, Limit: 3, TTL: time.Hour})
	g := e.take(locklock.SlotRequest{ID: gone, Limit: 1, TTL: time.Hour})
	if _, err := e.svc.ReleaseSlot(e.ctx(), gone, g.ID, ""); err != nil {
		t.Fatal(err)
	}
	e.engine = h.Reopen(t, e.engine)
	t.Cleanup(func() { _ = e.engine.Close() })
	e.svc = e.newService()

	got, err := e.svc.GetSlot(e.ctx(), id, kept.ID)
	if err != nil || !sameSlot(got, kept) {
		t.Fatalf("after reopen kept = %+v, %v; want %+v", got, err, kept)
	}
	if !got.Guard.Admits("k") || got.Guard.Admits("other") {
		t.Error("the slot's guard did not survive reopening")
	}
	if sem := e.semaphore(id); sem.Limit != 3 || sem.InUse != 3 || !hasSlots(sem, kept, open) {
		t.Errorf("semaphore after reopen: %+v", sem)
	}
	_, _, err = e.svc.AcquireSlot(e.ctx(), locklock.SlotRequest{ID: id, Limit: 3})
	assertFull(t, "acquire after reopen", err, 3, 3)
	if _, _, err := e.svc.AcquireSlot(e.ctx(), locklock.SlotRequest{ID: id, Limit: 4}); !errors.Is(err, locklock.ErrLimitMismatch) {
		t.Errorf("another limit after reopen: %v, want ErrLimitMismatch", err)
	}
	if again, created, err := e.svc.AcquireSlot(e.ctx(), locklock.SlotRequest{ID: id, Limit: 3, Secret: "k"}); err != nil || created || !sameSlot(again, kept) {
		t.Errorf("retry after reopen: %+v, created %v, %v; want the kept slot", again, created, err)
	}
	if _, err := e.svc.GetSemaphore(e.ctx(), locklock.SemaphoreRequest{ID: gone}); !errors.Is(err, locklock.ErrSemaphoreNotFound) {
		t.Errorf("released semaphore after reopen: %v, want ErrSemaphoreNotFound", err)
	}
	if again := e.take(locklock.SlotRequest{ID: gone, Limit: 1}); again.Token <= g.Token {
		t.Errorf("token after reopen %d, want > %d", again.Token, g.Token)
	}
	if _, err := e.svc.ReleaseSlot(e.ctx(), id, open.ID, ""); err != nil {
		t.Fatal(err)
	}
	if next := e.take(locklock.SlotRequest{ID: id, Limit: 3}); next.Token <= max(kept.Token, open.Token) {
		t.Errorf("token after reopen %d, want > %d", next.Token, max(kept.Token, open.Token))
	}
}
