package etcd_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/locklock/locklock/engines/etcd"
	"github.com/locklock/locklock/internal/etcdtest"
	"github.com/locklock/locklock/locklock"
)

// Slot events (API.md §9, §10) across servers: a semaphore's stream and
// the namespace's carry its slots' changes, wherever they were made, with
// positions any server resumes from.

// label names an event: its type and lock name, or for a slot's its type,
// semaphore name and slot id (name#slot).
func label(ev *locklock.Event) string {
	if ev.Slot != nil {
		return string(ev.Type) + " " + ev.Slot.Semaphore.Name + "#" + ev.Slot.ID
	}
	return string(ev.Type) + " " + ev.Lock.Name
}

func labels(evs []*locklock.Event) string {
	var b strings.Builder
	for _, ev := range evs {
		fmt.Fprintf(&b, "%s @%s; ", label(ev), ev.Pos)
	}
	return b.String()
}

// checkLabels asserts the events' labels, and that positions rise.
func checkLabels(t *testing.T, evs []*locklock.Event, want ...string) {
	t.Helper()
	if len(evs) != len(want) {
		t.Fatalf("events %s, want %v", labels(evs), want)
	}
	for i, ev := range evs {
		if label(ev) != want[i] {
			t.Fatalf("events %s, want %v", labels(evs), want)
		}
		if i > 0 && !ev.Pos.After(evs[i-1].Pos) {
			t.Fatalf("event %d at %v, not after %v", i, ev.Pos, evs[i-1].Pos)
		}
	}
}

// sameEvents asserts that got are want: the same changes at the same
// positions (a replay, or another server's stream, against a live one).
func sameEvents(t *testing.T, got, want []*locklock.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("events %s, want %s", labels(got), labels(want))
	}
	for i := range got {
		if label(got[i]) != label(want[i]) || got[i].Pos != want[i].Pos || !got[i].At.Equal(want[i].At) {
			t.Fatalf("events %s, want %s", labels(got), labels(want))
		}
		if g, w := got[i].Slot, want[i].Slot; g != nil && (g.Token != w.Token || g.Holder != w.Holder || !g.ExpiresAt.Equal(w.ExpiresAt)) {
			t.Fatalf("event %d carries %+v, want %+v", i, g, w)
		}
	}
}

func slotLabel(typ locklock.EventType, sl locklock.Slot) string {
	return string(typ) + " " + sl.Semaphore.Name + "#" + sl.ID
}

// TestSlotEventsAcrossServers: a semaphore's stream on server B shows what
// is done to its slots through server A — acquire, refresh, PATCH,
// release, and an expiry no request made — each with its type and the
// slot (after the change, or as it was), in order. A lock of the same name
// is not in it, and the lock's stream shows no slot; the namespace stream
// shows both, at the same positions.
func TestSlotEventsAcrossServers(t *testing.T) {
	endpoint := etcdtest.Endpoints(t)[0]
	prefix := uniquePrefix("slot-events")
	a, b := eventServer(t, endpoint, prefix), eventServer(t, endpoint, prefix)
	id := semID("pool")
	sem := openWatch(t, b, locklock.Filter{ID: &id, Semaphore: true}, "")
	if sem.SemaphoreState != nil || sem.Reset {
		t.Fatalf("a free semaphore's stream: state %+v reset %v", sem.SemaphoreState, sem.Reset)
	}
	lock := openWatch(t, b, locklock.Filter{ID: &id}, "")
	ns := openWatch(t, b, locklock.Filter{Namespace: "public"}, "")
	ctx := t.Context()

	before := time.Now().Add(-time.Millisecond)
	s1 := mustSlot(t, a, locklock.SlotRequest{ID: id, Limit: 5, Weight: 2, Secret: "s", TTL: time.Hour, Holder: "h1"})
	refreshed, err := a.PatchSlot(ctx, s1.ID, locklock.PatchRequest{ID: id, Secret: "s", TTL: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	h2 := "h2"
	patched, err := a.PatchSlot(ctx, s1.ID, locklock.PatchRequest{ID: id, Secret: "s", Holder: &h2, Metadata: map[string]string{"k": "v"}, SetMetadata: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.ReleaseSlot(ctx, id, s1.ID, "s"); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	l := mustAcquire(t, a, locklock.AcquireRequest{ID: id, TTL: time.Hour})
	s2 := mustSlot(t, a, locklock.SlotRequest{ID: id, Limit: 5, TTL: time.Second, Holder: "brief"})

	evs := readEvents(t, sem, 6)
	checkLabels(t, evs, slotLabel("acquired", s1), slotLabel("refreshed", s1), slotLabel("refreshed", s1),
		slotLabel("released", s1), slotLabel("acquired", s2), slotLabel("expired", s2))
	for i, ev := range evs[:4] {
		sl := ev.Slot
		if sl.Token != s1.Token || sl.Weight != 2 || sl.Limit != 5 || !sl.Protected() || sl.Semaphore != id {
			t.Errorf("event %d carries %+v, want token %d, weight 2 of 5, protected", i, sl, s1.Token)
		}
		if ev.At.Before(before) || ev.At.After(after) {
			t.Errorf("event %d (%s) at %v, not between %v and %v", i, ev.Type, ev.At, before, after)
		}
	}
	if !evs[0].At.Equal(s1.AcquiredAt) || evs[0].Slot.Holder != "h1" || !evs[0].Slot.ExpiresAt.Equal(s1.ExpiresAt) {
		t.Errorf("acquired: %+v at %v, want holder h1 at %v", evs[0].Slot, evs[0].At, s1.AcquiredAt)
	}
	if !evs[1].Slot.ExpiresAt.Equal(refreshed.ExpiresAt) || evs[1].Slot.ExpiresAt.Sub(s1.ExpiresAt) < 50*time.Minute {
		t.Errorf("refresh: expires %v, want %v", evs[1].Slot.ExpiresAt, refreshed.ExpiresAt)
	}
	if p := evs[2].Slot; p.Holder != "h2" || p.Metadata["k"] != "v" || !p.ExpiresAt.Equal(patched.ExpiresAt) {
		t.Errorf("PATCH's refreshed: %+v", p)
	}
	if rel := evs[3].Slot; rel.Holder != "h2" || rel.Metadata["k"] != "v" || !rel.ExpiresAt.Equal(patched.ExpiresAt) {
		t.Errorf("released carries %+v, want the slot as it was", rel)
	}
	if acq := evs[4]; acq.Slot.Token != s2.Token || acq.Slot.Holder != "brief" || !acq.At.Equal(s2.AcquiredAt) || acq.Slot.Protected() {
		t.Errorf("acquired: %+v at %v, want %+v", acq.Slot, acq.At, s2)
	}
	if exp := evs[5]; exp.Slot.Token != s2.Token || exp.Slot.Holder != "brief" || !exp.At.Equal(s2.ExpiresAt) {
		t.Errorf("expired: %+v at %v, want token %d, holder brief, at %v", exp.Slot, exp.At, s2.Token, s2.ExpiresAt)
	}
	noMoreEvents(t, sem)

	lev := readEvents(t, lock, 1)
	checkLabels(t, lev, "acquired pool")
	if lev[0].Slot != nil || lev[0].Lock.Token != l.Token {
		t.Errorf("the lock's stream: %+v, want the lock's acquire", lev[0])
	}
	noMoreEvents(t, lock)

	all := readEvents(t, ns, 7)
	want := append(append(append([]*locklock.Event{}, evs[:4]...), lev[0]), evs[4:]...)
	sameEvents(t, all, want)
	noMoreEvents(t, ns)
}

// TestSlotEventsResumeAcrossServers: a client read some events through
// server A; more happened, some before server B started and some after;
// resumed on B — from A's last position, or from before any of them —
// it gets exactly the events it missed, at the positions A gave, those
// from before B started out of etcd's history; a one-semaphore stream gets
// the slots' alone, a one-lock stream of the same name the lock's alone.
func TestSlotEventsResumeAcrossServers(t *testing.T) {
	endpoint := etcdtest.Endpoints(t)[0]
	prefix := uniquePrefix("slot-resume")
	a := eventServer(t, endpoint, prefix)
	ctx := t.Context()
	id := semID("pool")
	f := locklock.Filter{Namespace: "public"}
	live := openWatch(t, a, f, "") // every event as it happens, for reference
	start := live.At

	s1 := mustSlot(t, a, locklock.SlotRequest{ID: id, Limit: 3, Secret: "s", TTL: time.Hour})
	mustAcquire(t, a, locklock.AcquireRequest{ID: id, TTL: time.Hour})
	all := readEvents(t, live, 2)
	from := all[1].Pos // what the client read
	if _, err := a.PatchSlot(ctx, s1.ID, locklock.PatchRequest{ID: id, Secret: "s", TTL: 2 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.ReleaseSlot(ctx, id, s1.ID, "s"); err != nil {
		t.Fatal(err)
	}
	s2 := mustSlot(t, a, locklock.SlotRequest{ID: id, Limit: 3, TTL: time.Second})
	all = append(all, readEvents(t, live, 4)...) // refreshed, released, acquired, expired
	// B retains two events: the rest must come from etcd.
	b := eventServer(t, endpoint, prefix, locklock.WithEventRetention(2))
	s3 := mustSlot(t, a, locklock.SlotRequest{ID: id, Limit: 3, TTL: time.Hour})
	if _, err := a.Release(ctx, id, ""); err != nil {
		t.Fatal(err)
	}
	all = append(all, readEvents(t, live, 2)...)
	checkLabels(t, all, slotLabel("acquired", s1), "acquired pool", slotLabel("refreshed", s1), slotLabel("released", s1),
		slotLabel("acquired", s2), slotLabel("expired", s2), slotLabel("acquired", s3), "released pool")
	var slotEvs, lockEvs []*locklock.Event
	for _, ev := range all {
		if ev.Slot != nil {
			slotEvs = append(slotEvs, ev)
		} else {
			lockEvs = append(lockEvs, ev)
		}
	}

	r := openWatch(t, b, f, from.String())
	if !r.Resumed || r.Reset {
		t.Fatalf("resume on B from A's position %s: resumed %v reset %v", from, r.Resumed, r.Reset)
	}
	replayed := readEvents(t, r, 6)
	sameEvents(t, replayed, all[2:])
	rs := openWatch(t, b, locklock.Filter{ID: &id, Semaphore: true}, start.String())
	if !rs.Resumed || rs.SemaphoreState != nil {
		t.Fatalf("one-semaphore resume on B: resumed %v state %+v", rs.Resumed, rs.SemaphoreState)
	}
	sameEvents(t, readEvents(t, rs, len(slotEvs)), slotEvs)
	rl := openWatch(t, b, locklock.Filter{ID: &id}, start.String())
	sameEvents(t, readEvents(t, rl, len(lockEvs)), lockEvs)

	// Live events follow the replayed ones.
	if _, err := a.ReleaseSlot(ctx, id, s3.ID, ""); err != nil {
		t.Fatal(err)
	}
	next := readEvents(t, live, 1)
	sameEvents(t, readEvents(t, r, 1), next)
	sameEvents(t, readEvents(t, rs, 1), next)
	noMoreEvents(t, rl)

	// B's positions resume on A, from inside the replayed part.
	ra := openWatch(t, a, locklock.Filter{ID: &id, Semaphore: true}, replayed[0].Pos.String()) // s1's refresh
	sameEvents(t, readEvents(t, ra, len(slotEvs)-2+1), append(slotEvs[2:], next...))
}

// TestSlotsAndLocksEndingInOneRevision: a lock and slots on one shared
// lease end together, in one etcd revision: the lock's expiry comes first
// (lock keys keep the numbers they had before slots had events), then the
// slots', each at a position of its own; a stream resumed from inside the
// revision gets the rest of it.
func TestSlotsAndLocksEndingInOneRevision(t *testing.T) {
	endpoint := etcdtest.Endpoints(t)[0]
	prefix := uniquePrefix("slots-one-revision")
	a := eventServer(t, endpoint, prefix)
	observer := etcdtest.Client(t, endpoint)
	w := openWatch(t, a, locklock.Filter{Namespace: "public"}, "")
	var (
		lock   locklock.ID
		slots  []locklock.Slot
		shared bool
	)
	for attempt := 0; !shared; attempt++ {
		if attempt == 5 {
			t.Fatal("a lock and two slots acquired at once never shared a lease")
		}
		name := fmt.Sprintf("together-%d", attempt)
		lock = semID(name)
		slots = []locklock.Slot{
			mustSlot(t, a, locklock.SlotRequest{ID: lock, Limit: 2, TTL: time.Second}),
			mustSlot(t, a, locklock.SlotRequest{ID: lock, Limit: 2, TTL: time.Second}),
		}
		mustAcquire(t, a, locklock.AcquireRequest{ID: lock, TTL: time.Second})
		readEvents(t, w, 3)
		leases := map[int64]bool{}
		for _, key := range []string{prefix + "locks/public/key/" + name, prefix + "sems/public/key/" + name + "#" + slots[0].ID, prefix + "sems/public/key/" + name + "#" + slots[1].ID} {
			resp, err := observer.Get(t.Context(), key)
			if err != nil || len(resp.Kvs) != 1 {
				t.Fatalf("read %s: %v", key, err)
			}
			leases[resp.Kvs[0].Lease] = true
		}
		shared = len(leases) == 1
		if !shared {
			readEvents(t, w, 3) // their ends, on two leases
		}
	}
	evs := readEvents(t, w, 3)
	first, second := slots[0], slots[1]
	if second.ID < first.ID {
		first, second = second, first // etcd deletes a lease's keys in key order
	}
	checkLabels(t, evs, "expired "+lock.Name, slotLabel("expired", first), slotLabel("expired", second))
	for i, ev := range evs {
		if ev.Pos.Seq != evs[0].Pos.Seq || ev.Pos.Sub != uint32(i+1) {
			t.Errorf("event %d at %v, want sub %d of the revision of %v", i, ev.Pos, i+1, evs[0].Pos)
		}
	}
	b := eventServer(t, endpoint, prefix)
	r := openWatch(t, b, locklock.Filter{Namespace: "public"}, evs[1].Pos.String())
	sameEvents(t, readEvents(t, r, 1), evs[2:])
	rs := openWatch(t, b, locklock.Filter{ID: &lock, Semaphore: true}, evs[0].Pos.String())
	sameEvents(t, readEvents(t, rs, 2), evs[1:])
}

// TestSlotAndLockPutInOneTransaction: one transaction puts a slot key and
// then a lock key, as a batch may: the lock is its revision's first event,
// as it was before slots had events, and the slot the second; a delete of
// the slot key with no release marker is an expiry; a replay from etcd's
// history agrees.
func TestSlotAndLockPutInOneTransaction(t *testing.T) {
	endpoint := etcdtest.Endpoints(t)[0]
	prefix := uniquePrefix("slot-and-lock")
	engine := etcd.New(etcdtest.Client(t, endpoint), etcd.WithPrefix(prefix))
	t.Cleanup(func() { _ = engine.Close() })
	b := locklock.NewService(engine)
	w := openWatch(t, b, locklock.Filter{Namespace: "public"}, "")

	client := etcdtest.Client(t, endpoint)
	now := time.Now().UnixMilli()
	slotID := locklock.NewSlotID()
	slotKey := prefix + "sems/public/key/quiet#" + slotID
	resp, err := client.Txn(t.Context()).Then(
		clientv3.OpPut(slotKey, fmt.Sprintf(`{"limit":3,"weight":2,"acquired_at_ms":%d,"expires_at_ms":%d,"lease":0}`, now, now+60000)),
		clientv3.OpPut(prefix+"locks/public/key/loud", fmt.Sprintf(`{"acquired_at_ms":%d,"expires_at_ms":%d,"lease":0}`, now, now+60000)),
	).Commit()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Delete(t.Context(), slotKey); err != nil {
		t.Fatal(err)
	}
	evs := readEvents(t, w, 3)
	checkLabels(t, evs, "acquired loud", "acquired quiet#"+slotID, "expired quiet#"+slotID)
	rev := uint64(resp.Header.Revision)
	if evs[0].Pos.Seq != rev || evs[0].Pos.Sub != 1 || evs[1].Pos.Seq != rev || evs[1].Pos.Sub != 2 {
		t.Fatalf("events at %v and %v, want subs 1 and 2 of revision %d", evs[0].Pos, evs[1].Pos, rev)
	}
	if sl := evs[2].Slot; sl.Weight != 2 || sl.Limit != 3 || !evs[2].At.Equal(time.UnixMilli(now+60000).UTC()) {
		t.Errorf("expired carries %+v at %v, want the slot as it was, at its expiry", sl, evs[2].At)
	}
	replayed, err := engine.EventsAfter(t.Context(), locklock.Filter{Namespace: "public"}, w.At, evs[2].Pos)
	if err != nil {
		t.Fatal(err)
	}
	sameEvents(t, replayed, evs)
}

// TestSlotEventsOfSlotsFromBeforeStart: a server learns of slots as they
// are put; for slots acquired before it started, it reads from etcd's
// history what their released and expired events carry: the slot as it
// was.
func TestSlotEventsOfSlotsFromBeforeStart(t *testing.T) {
	endpoint := etcdtest.Endpoints(t)[0]
	prefix := uniquePrefix("slots-before-start")
	a := eventServer(t, endpoint, prefix)
	id := semID("old")
	rel := mustSlot(t, a, locklock.SlotRequest{ID: id, Limit: 4, Weight: 3, Secret: "s", TTL: time.Hour, Holder: "h-rel"})
	exp := mustSlot(t, a, locklock.SlotRequest{ID: id, Limit: 4, TTL: time.Second, Holder: "h-exp"})
	b := eventServer(t, endpoint, prefix)
	w := openWatch(t, b, locklock.Filter{ID: &id, Semaphore: true}, "")
	if st := w.SemaphoreState; st == nil || len(st.Slots) != 2 {
		t.Fatalf("state %+v, want the two slots", st)
	}
	if _, err := a.ReleaseSlot(t.Context(), id, rel.ID, "s"); err != nil {
		t.Fatal(err)
	}
	evs := readEvents(t, w, 2)
	checkLabels(t, evs, slotLabel("released", rel), slotLabel("expired", exp))
	if sl := evs[0].Slot; sl.Token != rel.Token || sl.Holder != "h-rel" || sl.Weight != 3 || !sl.ExpiresAt.Equal(rel.ExpiresAt) || !sl.Protected() {
		t.Errorf("released carries %+v, want %+v", sl, rel)
	}
	if sl := evs[1].Slot; sl.Token != exp.Token || sl.Holder != "h-exp" || !evs[1].At.Equal(exp.ExpiresAt) {
		t.Errorf("expired carries %+v at %v, want %+v at its expiry", sl, evs[1].At, exp)
	}
}

// TestEmptySemaphoreStateHasRevision: a semaphore without slots is read at
// a revision too, which a stream's state needs to drop the events it
// already reflects (a release another server made just before).
func TestEmptySemaphoreStateHasRevision(t *testing.T) {
	endpoint := etcdtest.Endpoints(t)[0]
	a := eventServer(t, endpoint, uniquePrefix("empty-sem"))
	id := semID("none")
	sem, err := a.GetSemaphore(t.Context(), locklock.SemaphoreRequest{ID: id})
	if !errors.Is(err, locklock.ErrSemaphoreNotFound) || sem.Revision == 0 {
		t.Fatalf("an empty semaphore: %+v, %v; want ErrSemaphoreNotFound with the revision read at", sem, err)
	}
	w := openWatch(t, a, locklock.Filter{ID: &id, Semaphore: true}, "")
	if w.SemaphoreState != nil || w.At.Seq < uint64(sem.Revision) {
		t.Fatalf("stream of an empty semaphore: state %+v at %v, want none, at or after revision %d", w.SemaphoreState, w.At, sem.Revision)
	}
	sl := mustSlot(t, a, locklock.SlotRequest{ID: id, Limit: 1, TTL: time.Hour})
	checkLabels(t, readEvents(t, w, 1), slotLabel("acquired", sl))
	if _, err := a.ReleaseSlot(t.Context(), id, sl.ID, ""); err != nil {
		t.Fatal(err)
	}
	checkLabels(t, readEvents(t, w, 1), slotLabel("released", sl))
}
