package conformance

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

// RunSemaphoreEvents runs the sub-tests of semaphores' slot events (API.md
// §9 and §10) against engines from h, which must store semaphores
// (locklock.SemaphoreEngine) and report their slots' changes as events
// (locklock.EventSource, Event.Slot). It is an entry point of its own,
// beside Run and RunSemaphores, so that an engine opts in once it reports
// slot events:
//
//	func TestSemaphoreEventsConformance(t *testing.T) {
//		conformance.RunSemaphoreEvents(t, conformance.Harness{NewEngine: ...})
//	}
func RunSemaphoreEvents(t *testing.T, h Harness) {
	t.Helper()
	probe := h.NewEngine(t)
	_, sems := probe.(locklock.SemaphoreEngine)
	_, events := probe.(locklock.EventSource)
	_ = probe.Close()
	if !sems || !events {
		t.Fatalf("%T must implement locklock.SemaphoreEngine (%v) and locklock.EventSource (%v)", probe, sems, events)
	}
	for _, tc := range semaphoreEventsSuite() {
		t.Run(tc.name, func(t *testing.T) {
			if h.Parallel {
				t.Parallel()
			}
			tc.run(t, h)
		})
	}
}

func semaphoreEventsSuite() []testCase {
	return []testCase{
		{"OneSemaphore", testSlotEventsOneSemaphore},
		{"LockOfTheSameName", testSlotEventsBesideLock},
		{"Expired", testSlotEventsExpired},
		{"StateUnderRace", testSlotEventsStateUnderRace},
	}
}

// semaphoreFilter is the filter of id's one-semaphore stream.
func semaphoreFilter(id locklock.ID) locklock.Filter {
	return locklock.Filter{ID: &id, Semaphore: true}
}

// wantSlotEvents checks that evs are these slots' events, in this order,
// each carrying the slot as it was stored (after an acquire or a refresh,
// before a release or an expiry) and no lock, at rising positions.
func wantSlotEvents(t *testing.T, evs []*locklock.Event, want ...slotChange) {
	t.Helper()
	ok := len(evs) == len(want)
	for i := 0; ok && i < len(evs); i++ {
		ev := evs[i]
		ok = ev.Type == want[i].typ && ev.Slot != nil && sameSlot(*ev.Slot, want[i].slot) && ev.Lock.ID == (locklock.ID{}) &&
			(i == 0 || ev.Pos.After(evs[i-1].Pos))
	}
	if !ok {
		var w []*locklock.Event
		for _, c := range want {
			w = append(w, &locklock.Event{Type: c.typ, Slot: &c.slot})
		}
		t.Fatalf("events %s\nwant %s", describeEvents(evs), describeEvents(w))
	}
}

type slotChange struct {
	typ  locklock.EventType
	slot locklock.Slot
}

// testSlotEventsOneSemaphore: a one-semaphore stream opened on a semaphore
// with a slot starts with it as its state, without its acquisition again;
// then it has every change of the semaphore's slots in order — acquired,
// refreshed (expiry, holder), released, expired (at the slot's expiry,
// through a sweep) — each with the slot, and nothing of another semaphore.
func testSlotEventsOneSemaphore(t *testing.T, h Harness) {
	e := newEnv(t, h)
	id := e.id("farm")
	first := e.take(locklock.SlotRequest{ID: id, Limit: 3, TTL: e.shortTTL(), Holder: "w-1"})
	w := e.watch(e.svc, semaphoreFilter(id), "")
	if w.SemaphoreState == nil || !hasSlots(*w.SemaphoreState, first) || w.State != nil {
		t.Fatalf("state %+v (lock state %+v), want the one slot %s", w.SemaphoreState, w.State, first.ID)
	}
	second := e.take(locklock.SlotRequest{ID: id, Limit: 3, Weight: 2, Secret: "s", TTL: time.Hour, Metadata: map[string]string{"k": "v"}})
	e.take(locklock.SlotRequest{ID: e.id("farm-2"), Limit: 3, TTL: time.Hour})
	refreshed, err := e.svc.PatchSlot(e.ctx(), second.ID, locklock.PatchRequest{ID: id, Secret: "s", TTL: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	holder := "w-2"
	renamed, err := e.svc.PatchSlot(e.ctx(), second.ID, locklock.PatchRequest{ID: id, Secret: "s", Holder: &holder})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.ReleaseSlot(e.ctx(), id, second.ID, "s"); err != nil {
		t.Fatal(err)
	}
	e.pass(e.shortTTL()) // first expires
	if _, err := e.svc.Sweep(e.ctx()); err != nil {
		t.Fatal(err)
	}
	if h.RealTime {
		// Sweep need not delete anything; the engine reports the expiry
		// on its own time.
		time.Sleep(realTimeGrace)
	}
	evs := e.events(w, 5)
	wantSlotEvents(t, evs,
		slotChange{locklock.EventAcquired, second},
		slotChange{locklock.EventRefreshed, refreshed},
		slotChange{locklock.EventRefreshed, renamed},
		slotChange{locklock.EventReleased, renamed},
		slotChange{locklock.EventExpired, first},
	)
	if !evs[4].At.Equal(first.ExpiresAt) {
		t.Errorf("expired at %v, want the slot's expiry %v", evs[4].At, first.ExpiresAt)
	}
	if evs[0].Slot.Metadata["k"] != "v" || evs[0].Slot.Weight != 2 || evs[2].Slot.Holder != holder {
		t.Errorf("events carry the slot: acquired %+v, refreshed %+v", evs[0].Slot, evs[2].Slot)
	}
	e.quiet(w)
}

// testSlotEventsBesideLock: a lock and a semaphore of one name are
// subjects of their own: the lock's stream gets none of the slots' events
// and the semaphore's none of the lock's, while a namespace stream gets
// both, in order.
func testSlotEventsBesideLock(t *testing.T, h Harness) {
	e := newEnv(t, h)
	id := e.id("shared")
	lockW := e.watch(e.svc, locklock.Filter{ID: &id}, "")
	semW := e.watch(e.svc, semaphoreFilter(id), "")
	nsW := e.watch(e.svc, locklock.Filter{Namespace: id.Namespace, Kind: id.Kind, Prefix: "shared"}, "")
	if lockW.State != nil || semW.SemaphoreState != nil {
		t.Fatalf("states of an unused name: %+v, %+v", lockW.State, semW.SemaphoreState)
	}

	sl := e.take(locklock.SlotRequest{ID: id, Limit: 2, TTL: time.Hour})
	l := e.acquire(locklock.AcquireRequest{ID: id, TTL: time.Hour})
	if _, err := e.svc.ReleaseSlot(e.ctx(), id, sl.ID, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Release(e.ctx(), id, ""); err != nil {
		t.Fatal(err)
	}

	wantSlotEvents(t, e.events(semW, 2), slotChange{locklock.EventAcquired, sl}, slotChange{locklock.EventReleased, sl})
	lockEvs := e.events(lockW, 2)
	wantTypes(t, lockEvs, locklock.EventAcquired, locklock.EventReleased)
	for _, ev := range lockEvs {
		if ev.Slot != nil || ev.Lock.Token != l.Token {
			t.Fatalf("the lock's stream: %s", describeEvents(lockEvs))
		}
	}
	all := e.events(nsW, 4)
	wantTypes(t, all, locklock.EventAcquired, locklock.EventAcquired, locklock.EventReleased, locklock.EventReleased)
	if all[0].Slot == nil || all[0].Slot.ID != sl.ID || all[1].Slot != nil || all[1].Lock.Token != l.Token ||
		all[2].Slot == nil || all[3].Slot != nil {
		t.Fatalf("namespace stream: %s; want the slot's acquire, the lock's, the slot's release, the lock's", describeEvents(all))
	}
	e.quiet(semW)
	e.quiet(lockW)
}

// testSlotEventsExpired: `expired` comes without any request touching the
// semaphore, through the Service's sweeper, at the slot's expiry, with the
// slot as it was.
func testSlotEventsExpired(t *testing.T, h Harness) {
	e := newEnv(t, h)
	e.startSweeper(e.svc)
	id := e.id("expiring")
	w := e.watch(e.svc, semaphoreFilter(id), "")
	s := e.take(locklock.SlotRequest{ID: id, Limit: 2, TTL: e.shortTTL(), Holder: "h"})
	keep := e.take(locklock.SlotRequest{ID: id, Limit: 2, TTL: time.Hour})
	wantSlotEvents(t, e.events(w, 2), slotChange{locklock.EventAcquired, s}, slotChange{locklock.EventAcquired, keep})
	start := time.Now()
	if e.clock != nil {
		e.clock.Advance(s.ExpiresAt.Sub(e.now()))
		// The sweeper's next scan is due within its interval: move the
		// clock on in small steps, as time would.
		go func() {
			for i := 0; i < 20 && e.ctx().Err() == nil; i++ {
				time.Sleep(20 * time.Millisecond)
				e.clock.Advance(100 * time.Millisecond)
			}
		}()
	}
	evs := e.events(w, 1)
	wantSlotEvents(t, evs, slotChange{locklock.EventExpired, s})
	if !evs[0].At.Equal(s.ExpiresAt) {
		t.Errorf("expired at %v, want the slot's expiry %v", evs[0].At, s.ExpiresAt)
	}
	if h.RealTime {
		if late := time.Since(start) - e.shortTTL(); late > realTimeGrace {
			t.Errorf("expired came %v after the expiry", late)
		}
	}
	if _, err := e.svc.GetSlot(e.ctx(), id, keep.ID); err != nil {
		t.Errorf("the live slot after the sweep: %v", err)
	}
}

// testSlotEventsStateUnderRace: clients race for a small semaphore
// (acquire, rename, release) while one-semaphore streams open; each
// stream's state and the events after it tell the semaphore's story with
// nothing told twice or left out: an acquire only of a slot the stream
// does not hold yet, a refresh or release only of one it holds, never more
// held than the limit — and once the clients are done and every slot was
// released, every stream holds none.
func testSlotEventsStateUnderRace(t *testing.T, h Harness) {
	e := newEnv(t, h)
	id := e.id("contended")
	// At most maxGrants grants (three events each) in all: a stream's
	// reader, racing the clients, stays below MaxEventBacklog.
	const limit, clients, streams, maxGrants = 3, 8, 16, 300
	var (
		wg      sync.WaitGroup
		granted atomic.Int64
	)
	stop := make(chan struct{})
	for c := range clients {
		wg.Go(func() {
			for i := 0; granted.Load() < maxGrants; i++ {
				select {
				case <-stop:
					return
				default:
				}
				secret := fmt.Sprintf("c%d-%d", c, i)
				sl, created, err := e.svc.AcquireSlot(e.ctx(), locklock.SlotRequest{ID: id, Limit: limit, Secret: secret, TTL: time.Hour})
				if errors.Is(err, locklock.ErrSemaphoreFull) {
					time.Sleep(100 * time.Microsecond)
					continue
				}
				if err != nil || !created {
					t.Errorf("acquire: created %v, %v", created, err)
					return
				}
				// Held a while, so that streams open on held slots even on
				// a fast engine, whose clients still race when the last
				// streams open.
				time.Sleep(200 * time.Microsecond)
				holder := "h-" + secret // a refresh that changes the slot
				if _, err := e.svc.PatchSlot(e.ctx(), sl.ID, locklock.PatchRequest{ID: id, Secret: secret, Holder: &holder}); err != nil {
					t.Errorf("patch: %v", err)
					return
				}
				if _, err := e.svc.ReleaseSlot(e.ctx(), id, sl.ID, secret); err != nil {
					t.Errorf("release: %v", err)
					return
				}
				granted.Add(1)
			}
		})
	}
	// Streams open while the clients race, each after a few grants, and
	// are read as they go.
	var (
		readers sync.WaitGroup
		states  atomic.Int64
		watches []*locklock.Watch
	)
	for i := range streams {
		for n := granted.Load(); granted.Load() < min(n+2, maxGrants) && !t.Failed(); {
			time.Sleep(100 * time.Microsecond)
		}
		w := e.watch(e.svc, semaphoreFilter(id), "")
		watches = append(watches, w)
		if w.SemaphoreState != nil {
			states.Add(1)
		}
		readers.Go(func() {
			if err := followSemaphore(e.ctx(), w, id, limit); err != nil {
				t.Errorf("stream %d (a state of %d slots, at %v): %v", i, slotCount(w.SemaphoreState), w.At, err)
			}
		})
	}
	close(stop)
	wg.Wait()
	// A last slot, taken and released once the clients are done: every
	// stream reads up to its release.
	last := e.take(locklock.SlotRequest{ID: id, Limit: limit, TTL: time.Hour, Holder: lastHolder})
	if _, err := e.svc.ReleaseSlot(e.ctx(), id, last.ID, ""); err != nil {
		t.Fatal(err)
	}
	readers.Wait()
	if t.Failed() {
		return
	}
	time.Sleep(50 * time.Millisecond)
	for i, w := range watches {
		if evs, err := w.Take(); len(evs) > 0 || err != nil {
			t.Fatalf("stream %d after the last release: %s, %v", i, describeEvents(evs), err)
		}
	}
	t.Logf("%d grants; %d streams, %d of them opened on held slots", granted.Load(), len(watches), states.Load())
}

// lastHolder marks the slot whose release ends followSemaphore.
const lastHolder = "last"

// followSemaphore reads w, a stream of semaphore id, from its state up to
// the release of the slot held by lastHolder, and says where the story it
// tells goes wrong: an acquire of a slot already held (told twice), a
// refresh or an end of one not held (its acquire left out, or its end told
// twice), more held than limit, events not of id or not in position order,
// or slots still held at the end (a release left out).
func followSemaphore(ctx context.Context, w *locklock.Watch, id locklock.ID, limit int) error {
	held := map[string]locklock.Slot{}
	if w.SemaphoreState != nil {
		for _, sl := range w.SemaphoreState.Slots {
			held[sl.ID] = sl
		}
	}
	var seen []*locklock.Event
	fail := func(why string) error {
		return fmt.Errorf("%s, after %d events: … %s", why, len(seen), describeEvents(seen[max(0, len(seen)-30):]))
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	prev := w.At
	for {
		evs, err := w.Next(ctx)
		if err != nil {
			return fail(fmt.Sprintf("no release of the last slot: %v", err))
		}
		for _, ev := range evs {
			seen = append(seen, ev)
			if ev.Slot == nil || ev.Slot.Semaphore != id {
				return fail("not an event of this semaphore")
			}
			if !ev.Pos.After(prev) {
				return fail("positions not rising")
			}
			prev = ev.Pos
			_, holds := held[ev.Slot.ID]
			switch ev.Type {
			case locklock.EventAcquired:
				if holds {
					return fail("acquired twice (in the state, or told again)")
				}
				held[ev.Slot.ID] = *ev.Slot
				inUse := 0
				for _, sl := range held {
					inUse += sl.Weight
				}
				if inUse > limit {
					return fail("more held than the limit")
				}
			case locklock.EventRefreshed:
				if !holds {
					return fail("refreshed a slot not held (its acquire left out)")
				}
				held[ev.Slot.ID] = *ev.Slot
			case locklock.EventReleased, locklock.EventExpired:
				if !holds {
					return fail("ended a slot not held (its acquire left out, or its end told twice)")
				}
				delete(held, ev.Slot.ID)
				if ev.Slot.Holder == lastHolder {
					if len(held) > 0 {
						return fail(fmt.Sprintf("%d slots still held after every slot was released (a release left out)", len(held)))
					}
					if len(seen) < len(evs) && ev != evs[len(evs)-1] {
						return fail("events after the last release")
					}
					return nil
				}
			default:
				return fail("unexpected type")
			}
		}
	}
}

func slotCount(sem *locklock.Semaphore) int {
	if sem == nil {
		return 0
	}
	return len(sem.Slots)
}
