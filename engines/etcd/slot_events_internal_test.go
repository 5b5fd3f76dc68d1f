package etcd

import (
	"context"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/locklock/locklock/internal/etcdtest"
	"github.com/locklock/locklock/locklock"
)

// TestSemaphoreStreamStateAheadOfTheWatch: a one-semaphore stream reads
// its state from etcd, which may be ahead of what the server's watch has
// shown: changes made through another server just before. Their events,
// when the watch gets to them, are in the state already and never reach
// the stream — whether the state holds slots or the semaphore was found
// empty. Later changes do.
func TestSemaphoreStreamStateAheadOfTheWatch(t *testing.T) {
	endpoint := etcdtest.Endpoints(t)[0]
	prefix := uniqueTestPrefix("sem-state-ahead")
	b := New(etcdtest.Client(t, endpoint), WithPrefix(prefix))
	t.Cleanup(func() { _ = b.Close() })
	// held, while locked, stops b's watch before its events are built.
	var held sync.Mutex
	observe := b.leases.observe
	b.leases.observe = func(resp *clientv3.WatchResponse) {
		held.Lock()
		//lint:ignore SA2001 waiting here while the test holds the mutex is the point
		held.Unlock()
		observe(resp)
	}
	sb := locklock.NewService(b)
	a := New(etcdtest.Client(t, endpoint), WithPrefix(prefix))
	t.Cleanup(func() { _ = a.Close() })
	sa := locklock.NewService(a)
	ctx := t.Context()
	ns, err := sb.Watch(ctx, locklock.WatchRequest{Filter: locklock.Filter{Namespace: "public"}, Caller: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	// seen waits until b's streams have shown sl's acquire.
	seen := func(sl locklock.Slot) {
		t.Helper()
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		for {
			evs, err := ns.Next(rctx)
			if err != nil {
				t.Fatalf("b's watch: %v", err)
			}
			for _, ev := range evs {
				if ev.Type == locklock.EventAcquired && ev.Slot != nil && ev.Slot.ID == sl.ID {
					return
				}
			}
		}
	}
	slot := func(id locklock.ID) locklock.Slot {
		t.Helper()
		sl, created, err := sa.AcquireSlot(ctx, locklock.SlotRequest{ID: id, Limit: 5, TTL: time.Hour})
		if err != nil || !created {
			t.Fatalf("acquire a slot of %s: %v", id.Name, err)
		}
		return sl
	}
	release := func(sl locklock.Slot) {
		t.Helper()
		if _, err := sa.ReleaseSlot(ctx, sl.Semaphore, sl.ID, ""); err != nil {
			t.Fatal(err)
		}
	}
	// stream opens a one-semaphore stream on b while its watch is held,
	// after before has run through a, and checks that what comes after
	// the watch goes on, once after has run, is exactly want.
	stream := func(id locklock.ID, before func(), after func() []string) *locklock.Watch {
		t.Helper()
		held.Lock()
		before()
		w, err := sb.Watch(ctx, locklock.WatchRequest{Filter: locklock.Filter{ID: &id, Semaphore: true}, Caller: "test"})
		held.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Close)
		want := after()
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		var got []string
		for len(got) < len(want) {
			evs, err := w.Next(rctx)
			if err != nil {
				t.Fatalf("stream of %s: %v after %v, want %v", id.Name, err, got, want)
			}
			for _, ev := range evs {
				if ev.Slot == nil {
					t.Fatalf("stream of %s: a lock's event", id.Name)
				}
				got = append(got, string(ev.Type)+" "+ev.Slot.ID)
			}
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("stream of %s: %v, want %v", id.Name, got, want)
			}
		}
		return w
	}

	// A semaphore with slots: a release, a refresh and an acquire just
	// before the stream opens are in its state.
	{
		id := locklock.ID{Namespace: "public", Kind: locklock.KindKey, Name: "held"}
		gone, kept := slot(id), slot(id)
		seen(kept)
		var added locklock.Slot
		w := stream(id, func() {
			release(gone)
			if _, err := sa.PatchSlot(ctx, kept.ID, locklock.PatchRequest{ID: id, TTL: 2 * time.Hour}); err != nil {
				t.Fatal(err)
			}
			added = slot(id)
		}, func() []string {
			release(added)
			return []string{"released " + added.ID}
		})
		if st := w.SemaphoreState; st == nil || len(st.Slots) != 2 || st.Slots[0].ID != kept.ID || st.Slots[1].ID != added.ID {
			t.Fatalf("state %+v, want the kept and the added slot", st)
		}
	}
	// A semaphore found empty: the release that emptied it is in the
	// state too.
	{
		id := locklock.ID{Namespace: "public", Kind: locklock.KindKey, Name: "emptied"}
		gone := slot(id)
		seen(gone)
		w := stream(id, func() { release(gone) }, func() []string {
			next := slot(id)
			return []string{"acquired " + next.ID}
		})
		if w.SemaphoreState != nil {
			t.Fatalf("state %+v, want none", w.SemaphoreState)
		}
	}
}

// TestSlotReleaseMarkerOutsideTheSemaphore: a slot's release marker is
// written with its delete, outside the semaphore's range: the range is
// empty after the release (the acquire's compare and AdmitSlot never see
// the marker), and the marker carries the slot's token.
func TestSlotReleaseMarkerOutsideTheSemaphore(t *testing.T) {
	client := etcdtest.Client(t, etcdtest.Endpoints(t)...)
	e := New(client, WithPrefix(uniqueTestPrefix("slot-marker")))
	t.Cleanup(func() { _ = e.Close() })
	svc := locklock.NewService(e)
	id := locklock.ID{Namespace: "public", Kind: locklock.KindKey, Name: "marked"}
	sl, _, err := svc.AcquireSlot(t.Context(), locklock.SlotRequest{ID: id, Limit: 1, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	wch := client.Watch(wctx, e.prefix, clientv3.WithPrefix(), clientv3.WithRev(sl.Revision+1))
	if _, err := svc.ReleaseSlot(t.Context(), id, sl.ID, ""); err != nil {
		t.Fatal(err)
	}
	// The release's revision: the slot key's delete, with the marker's put.
	var (
		rev    int64
		marked *clientv3.Event
	)
	for rev == 0 {
		resp, ok := <-wch
		if !ok {
			t.Fatal("watch ended before the release")
		}
		for _, ev := range resp.Events {
			if string(ev.Kv.Key) == e.semKey(id)+sl.ID && ev.Type == clientv3.EventTypeDelete {
				rev = ev.Kv.ModRevision
			}
			if string(ev.Kv.Key) == e.slotMarkerKey(id, sl.ID) {
				marked = ev
			}
		}
	}
	if marked == nil || marked.Type != clientv3.EventTypePut || marked.Kv.ModRevision != rev || marked.Kv.Lease == 0 {
		t.Fatalf("marker %+v, want one put on a lease with the delete, at revision %d", marked, rev)
	}
	if m, ok := parseMarker(marked.Kv.Value); !ok || m.Token != sl.Token {
		t.Fatalf("marker %s, want token %d", marked.Kv.Value, sl.Token)
	}
	resp, err := client.Get(t.Context(), e.semKey(id), clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithRev(rev))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 0 {
		t.Fatalf("%d keys in the semaphore's range after its one slot's release", resp.Count)
	}
	// The limit may change: the semaphore is empty.
	if _, created, err := svc.AcquireSlot(t.Context(), locklock.SlotRequest{ID: id, Limit: 2, TTL: time.Hour}); err != nil || !created {
		t.Fatalf("acquire after the release: %v", err)
	}
}
