package locklock_test

import (
	"context"
	"testing"
	"time"

	"github.com/locklock/locklock/engines/memory"
	"github.com/locklock/locklock/locklock"
)

// next reads the stream's next events, failing after a second.
func next(t *testing.T, w *locklock.Watch) []*locklock.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	evs, err := w.Next(ctx)
	if err != nil {
		t.Fatalf("no event: %v", err)
	}
	return evs
}

// nothing checks that the stream has nothing queued.
func nothing(t *testing.T, w *locklock.Watch) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if evs, err := w.Next(ctx); err == nil {
		t.Fatalf("unexpected events: %+v", evs[0])
	}
}

// TestSemaphoreEvents: a semaphore's stream sees its slots' changes — and
// not those of a lock of the same name, whose stream does not see them
// either; a namespace stream sees both; a stream opened on a semaphore with
// slots starts with them as its state and does not repeat their events.
func TestSemaphoreEvents(t *testing.T) {
	clock := locklock.NewManualClock(time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC))
	svc := locklock.NewService(memory.New(), locklock.WithClock(clock))
	ctx := t.Context()
	id := locklock.ID{Namespace: "acme", Kind: locklock.KindKey, Name: "farm"}

	first, _, err := svc.AcquireSlot(ctx, locklock.SlotRequest{ID: id, Limit: 3, TTL: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	sem, err := svc.Watch(ctx, locklock.WatchRequest{Filter: locklock.Filter{ID: &id, Semaphore: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer sem.Close()
	if sem.SemaphoreState == nil || len(sem.SemaphoreState.Slots) != 1 || sem.SemaphoreState.Slots[0].ID != first.ID {
		t.Fatalf("state %+v, want the one slot %s", sem.SemaphoreState, first.ID)
	}
	nothing(t, sem) // the acquire is in the state
	lock, err := svc.Watch(ctx, locklock.WatchRequest{Filter: locklock.Filter{ID: &id}})
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if lock.State != nil {
		t.Fatalf("the lock's state is the semaphore's slot: %+v", lock.State)
	}
	ns, err := svc.Watch(ctx, locklock.WatchRequest{Filter: locklock.Filter{Namespace: "acme"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()

	second, _, err := svc.AcquireSlot(ctx, locklock.SlotRequest{ID: id, Limit: 3, Weight: 2, TTL: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	holder := "w-2"
	if _, err := svc.PatchSlot(ctx, second.ID, locklock.PatchRequest{ID: id, Holder: &holder}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.ReleaseSlot(ctx, id, second.ID, ""); err != nil {
		t.Fatal(err)
	}
	clock.Advance(11 * time.Second) // the first slot expires
	if _, err := svc.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		typ  locklock.EventType
		slot string
	}{
		{locklock.EventAcquired, second.ID},
		{locklock.EventRefreshed, second.ID},
		{locklock.EventReleased, second.ID},
		{locklock.EventExpired, first.ID},
	}
	var got []*locklock.Event
	for len(got) < len(want) {
		got = append(got, next(t, sem)...)
	}
	for i, w := range want {
		ev := got[i]
		if ev.Type != w.typ || ev.Slot == nil || ev.Slot.ID != w.slot || ev.Slot.Semaphore != id {
			t.Errorf("event %d: %s of %+v, want %s of slot %s", i, ev.Type, ev.Slot, w.typ, w.slot)
		}
	}
	if got[1].Slot.Holder != holder || got[0].Slot.Weight != 2 {
		t.Errorf("events carry the slot: acquired weight %d, refreshed holder %q", got[0].Slot.Weight, got[1].Slot.Holder)
	}
	if !got[3].At.Equal(first.ExpiresAt) {
		t.Errorf("expired at %v, want the slot's expiry %v", got[3].At, first.ExpiresAt)
	}

	// A lock of the same name: only the lock's and the namespace's
	// streams see it.
	if _, _, err := svc.Acquire(ctx, locklock.AcquireRequest{ID: id}); err != nil {
		t.Fatal(err)
	}
	if evs := next(t, lock); len(evs) != 1 || evs[0].Slot != nil || evs[0].Type != locklock.EventAcquired {
		t.Fatalf("the lock's stream: %+v", evs)
	}
	nothing(t, sem)
	var all []*locklock.Event
	for len(all) < len(want)+1 {
		all = append(all, next(t, ns)...)
	}
	for i, ev := range all[:len(want)] {
		if ev.Slot == nil || ev.Type != want[i].typ {
			t.Errorf("namespace event %d: %s %+v, want the slot's %s", i, ev.Type, ev.Slot, want[i].typ)
		}
	}
	if last := all[len(want)]; last.Slot != nil || last.Lock.ID != id {
		t.Errorf("namespace stream's last event: %+v, want the lock's acquire", last)
	}
}
