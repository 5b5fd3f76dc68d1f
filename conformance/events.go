package conformance

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
)

// The event streams of API.md §9, through the Service as the transport
// uses them.

// watch opens a stream or fails the test.
func (e *env) watch(svc *locklock.Service, f locklock.Filter, from string) *locklock.Watch {
	e.t.Helper()
	w, err := svc.Watch(e.ctx(), locklock.WatchRequest{Filter: f, From: from, Caller: "test"})
	if err != nil {
		e.t.Fatalf("watch %+v from %q: %v", f, from, err)
	}
	e.t.Cleanup(w.Close)
	return w
}

// events reads until n events came, or fails after the timeout.
func (e *env) events(w *locklock.Watch, n int) []*locklock.Event {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx(), 20*time.Second)
	defer cancel()
	var got []*locklock.Event
	for len(got) < n {
		evs, err := w.Next(ctx)
		if err != nil {
			e.t.Fatalf("after %d of %d events (%s): %v", len(got), n, describeEvents(got), err)
		}
		got = append(got, evs...)
	}
	return got
}

// quiet asserts that no event comes for a while.
func (e *env) quiet(w *locklock.Watch) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx(), 300*time.Millisecond)
	defer cancel()
	if evs, err := w.Next(ctx); err == nil {
		e.t.Fatalf("unexpected events: %s", describeEvents(evs))
	}
}

// describeEvents names each event: a lock's by name and token, a slot's
// by semaphore, slot id and token.
func describeEvents(evs []*locklock.Event) string {
	s := ""
	for _, ev := range evs {
		if ev.Slot != nil {
			s += fmt.Sprintf("%s %s/%.6s#%d; ", ev.Type, ev.Slot.Semaphore.Name, ev.Slot.ID, ev.Slot.Token)
			continue
		}
		s += fmt.Sprintf("%s %s#%d; ", ev.Type, ev.Lock.Name, ev.Lock.Token)
	}
	return s
}

func wantTypes(t *testing.T, evs []*locklock.Event, types ...locklock.EventType) {
	t.Helper()
	if len(evs) != len(types) {
		t.Fatalf("events %s, want %v", describeEvents(evs), types)
	}
	for i, ev := range evs {
		if ev.Type != types[i] {
			t.Fatalf("events %s, want %v", describeEvents(evs), types)
		}
		if i > 0 && !ev.Pos.After(evs[i-1].Pos) {
			t.Fatalf("event %d at %v, not after %v", i, ev.Pos, evs[i-1].Pos)
		}
	}
}

// requireEvents skips engines that report no events: every engine of this
// module reports them; an engine from elsewhere may not.
func requireEvents(t *testing.T, e *env) {
	if _, ok := e.engine.(locklock.EventSource); !ok {
		t.Skip("the engine reports no events (it does not implement locklock.EventSource)")
	}
}

// startSweeper runs the Service's sweeper, which announces expiries.
func (e *env) startSweeper(svc *locklock.Service) {
	ctx, cancel := context.WithCancel(e.ctx())
	done := make(chan struct{})
	go func() { defer close(done); svc.RunSweeper(ctx, 0) }()
	e.t.Cleanup(func() { cancel(); <-done })
}

// testEventsOneLock: a stream of one lock starts with its state and then
// has every change in order: acquired, refreshed (expiry, holder,
// metadata), released — and nothing of other locks.
func testEventsOneLock(t *testing.T, h Harness) {
	e := newEnv(t, h)
	requireEvents(t, e)
	id := e.id("watched")
	w := e.watch(e.svc, locklock.Filter{ID: &id}, "")
	if w.State != nil || w.Reset || w.Resumed {
		t.Fatalf("new stream of a free lock: state %+v reset %v resumed %v", w.State, w.Reset, w.Resumed)
	}
	l := e.acquire(locklock.AcquireRequest{ID: id, Secret: "s", TTL: time.Hour, Holder: "h1"})
	e.acquire(locklock.AcquireRequest{ID: e.id("other"), TTL: time.Hour})
	if _, err := e.svc.Refresh(e.ctx(), id, "s", 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	h2 := "h2"
	if _, err := e.svc.Patch(e.ctx(), locklock.PatchRequest{ID: id, Secret: "s", Holder: &h2}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Release(e.ctx(), id, "s"); err != nil {
		t.Fatal(err)
	}
	evs := e.events(w, 4)
	wantTypes(t, evs, locklock.EventAcquired, locklock.EventRefreshed, locklock.EventRefreshed, locklock.EventReleased)
	if got := evs[0].Lock; got.Token != l.Token || got.Holder != "h1" || !got.Protected() {
		t.Errorf("acquired carries %+v, want the lock %+v", got, l)
	}
	if evs[2].Lock.Holder != "h2" || evs[3].Lock.Holder != "h2" || evs[3].Lock.Token != l.Token {
		t.Errorf("refreshed/released carry %+v / %+v, want holder h2 and token %d", evs[2].Lock, evs[3].Lock, l.Token)
	}
	for _, ev := range evs {
		if ev.Lock.ID != id {
			t.Errorf("a stream of %s got an event of %s", id, ev.Lock.ID)
		}
	}
	e.quiet(w)
}

// testEventsState: a stream opened on a held lock starts with that lock,
// and does not send its acquisition again.
func testEventsState(t *testing.T, h Harness) {
	e := newEnv(t, h)
	requireEvents(t, e)
	id := e.id("held")
	l := e.acquire(locklock.AcquireRequest{ID: id, TTL: time.Hour, Metadata: map[string]string{"k": "v"}})
	w := e.watch(e.svc, locklock.Filter{ID: &id}, "")
	if w.State == nil || !sameGrant(*w.State, l) {
		t.Fatalf("state %+v, want %+v", w.State, l)
	}
	if _, err := e.svc.Release(e.ctx(), id, ""); err != nil {
		t.Fatal(err)
	}
	wantTypes(t, e.events(w, 1), locklock.EventReleased)
	e.quiet(w)
}

// testEventsExpired: `expired` comes without any request touching the lock,
// at the lock's expiry, with the lock as it was and its lock-delay.
func testEventsExpired(t *testing.T, h Harness) {
	e := newEnv(t, h)
	requireEvents(t, e)
	e.startSweeper(e.svc)
	id := e.id("expiring")
	w := e.watch(e.svc, locklock.Filter{Namespace: id.Namespace}, "")
	l := e.acquire(locklock.AcquireRequest{ID: id, TTL: e.shortTTL(), LockDelay: 5 * time.Second})
	wantTypes(t, e.events(w, 1), locklock.EventAcquired)
	start := time.Now()
	if e.clock != nil {
		e.clock.Advance(l.ExpiresAt.Sub(e.now()))
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
	wantTypes(t, evs, locklock.EventExpired)
	ev := evs[0]
	if ev.Lock.Token != l.Token || !ev.At.Equal(l.ExpiresAt) || !ev.Lock.DelayedUntil().Equal(l.ExpiresAt.Add(5*time.Second)) {
		t.Errorf("expired event %+v at %v; want token %d at %v, delayed until +5s", ev.Lock, ev.At, l.Token, l.ExpiresAt)
	}
	if h.RealTime {
		if late := time.Since(start) - e.shortTTL(); late > realTimeGrace {
			t.Errorf("expired came %v after the expiry", late)
		}
	}
}

// testEventsNamespace: a namespace stream has the events of its namespace,
// kind and prefix, and never another namespace's.
func testEventsNamespace(t *testing.T, h Harness) {
	e := newEnv(t, h)
	requireEvents(t, e)
	acme := e.watch(e.svc, locklock.Filter{Namespace: "acme", Kind: locklock.KindKey, Prefix: "jobs."}, "")
	all := e.watch(e.svc, locklock.Filter{Namespace: "acme"}, "")
	if acme.State != nil || all.State != nil {
		t.Fatal("a namespace stream has no state")
	}
	for _, id := range []locklock.ID{
		{Namespace: "globex", Kind: locklock.KindKey, Name: "jobs.1"},
		{Namespace: "acme", Kind: locklock.KindKey, Name: "other"},
		{Namespace: "acme", Kind: locklock.KindUUID, Name: "0b9f5a5e-8b5e-4c2e-9a51-3c0d7b1b2a11"},
		{Namespace: "acme", Kind: locklock.KindKey, Name: "jobs.1"},
	} {
		e.acquire(locklock.AcquireRequest{ID: id, TTL: time.Hour})
	}
	got := e.events(acme, 1)
	if len(got) != 1 || got[0].Lock.Namespace != "acme" || got[0].Lock.Name != "jobs.1" {
		t.Fatalf("acme jobs. stream: %s", describeEvents(got))
	}
	e.quiet(acme)
	got = e.events(all, 3)
	for _, ev := range got {
		if ev.Lock.Namespace != "acme" {
			t.Errorf("acme's stream got %s", ev.Lock.ID)
		}
	}
	e.quiet(all)
}

// testEventsResume: a stream resumed from a position gets exactly the
// events after it; one resumed from a position the server does not have is
// reset — unless storage keeps the history (locklock.EventHistory), which
// then replays it.
func testEventsResume(t *testing.T, h Harness) {
	e := newEnv(t, h)
	requireEvents(t, e)
	svc := e.newService(locklock.WithEventRetention(4))
	f := locklock.Filter{Namespace: locklock.DefaultNamespace}
	w := e.watch(svc, f, "")
	for i := range 3 {
		if _, _, err := svc.Acquire(e.ctx(), locklock.AcquireRequest{ID: e.id(fmt.Sprint("r", i)), TTL: time.Hour}); err != nil {
			t.Fatal(err)
		}
	}
	first := e.events(w, 3)
	w.Close()
	for i := 3; i < 5; i++ {
		if _, _, err := svc.Acquire(e.ctx(), locklock.AcquireRequest{ID: e.id(fmt.Sprint("r", i)), TTL: time.Hour}); err != nil {
			t.Fatal(err)
		}
	}
	r := e.watch(svc, f, first[0].Pos.String())
	if !r.Resumed || r.Reset {
		t.Fatalf("resume from a retained position: resumed %v reset %v", r.Resumed, r.Reset)
	}
	got := e.events(r, 4)
	for i, ev := range got {
		if want := fmt.Sprint("r", i+1); ev.Lock.Name != want {
			t.Fatalf("resumed stream: %s, want r1..r4", describeEvents(got))
		}
	}
	e.quiet(r)

	// Two more events push r0's acquisition out of a retention of four.
	for i := 5; i < 7; i++ {
		if _, _, err := svc.Acquire(e.ctx(), locklock.AcquireRequest{ID: e.id(fmt.Sprint("r", i)), TTL: time.Hour}); err != nil {
			t.Fatal(err)
		}
	}
	stale := []string{"not-a-position", "m000.0000000000000001.00000000"}
	if _, ok := e.engine.(locklock.EventHistory); ok {
		// Storage keeps the history (etcd): the position still resumes,
		// from it, with exactly the events after it.
		old := e.watch(svc, f, first[0].Pos.String())
		if !old.Resumed || old.Reset {
			t.Fatalf("resume from a position storage still has: resumed %v reset %v", old.Resumed, old.Reset)
		}
		got := e.events(old, 6)
		for i, ev := range got {
			if want := fmt.Sprint("r", i+1); ev.Lock.Name != want || i > 0 && !ev.Pos.After(got[i-1].Pos) {
				t.Fatalf("stream resumed from storage's history: %s, want r1..r6 in order", describeEvents(got))
			}
		}
		e.quiet(old)
	} else {
		stale = append(stale, first[0].Pos.String())
	}
	for _, from := range stale {
		x := e.watch(svc, f, from)
		if !x.Reset || x.Resumed {
			t.Errorf("resume from %q: reset %v resumed %v, want a reset", from, x.Reset, x.Resumed)
		}
	}
	id := e.id("r6")
	x := e.watch(svc, locklock.Filter{ID: &id}, "bogus")
	if !x.Reset || x.State == nil || x.State.Name != "r6" {
		t.Errorf("a reset one-lock stream starts afresh with its state: reset %v state %+v", x.Reset, x.State)
	}
}

// testEventsSlowReader: a stream that is not read is cut once more than
// MaxEventBacklog events wait for it, and lock operations never wait for it.
func testEventsSlowReader(t *testing.T, h Harness) {
	e := newEnv(t, h)
	requireEvents(t, e)
	slow := e.watch(e.svc, locklock.Filter{Namespace: locklock.DefaultNamespace}, "")
	id := e.id("busy")
	start := time.Now()
	for i := 0; i <= locklock.MaxEventBacklog/2; i++ {
		e.acquire(locklock.AcquireRequest{ID: id, TTL: time.Hour})
		if _, err := e.svc.Release(e.ctx(), id, ""); err != nil {
			t.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	ctx, cancel := context.WithTimeout(e.ctx(), 20*time.Second)
	defer cancel()
	var err error
	for err == nil {
		_, err = slow.Next(ctx)
		if err == nil {
			t.Fatal("a stream more than MaxEventBacklog behind still delivered events")
		}
	}
	if !errors.Is(err, locklock.ErrSlowReader) {
		t.Fatalf("slow reader: %v, want ErrSlowReader", err)
	}
	t.Logf("%d lock cycles with an unread stream took %v", locklock.MaxEventBacklog/2+1, elapsed)
}

// testWatcherCaps: the caps on open streams, in total and per caller.
func testWatcherCaps(t *testing.T, h Harness) {
	e := newEnv(t, h)
	requireEvents(t, e)
	svc := e.newService(locklock.WithMaxWatchers(3), locklock.WithMaxWatchersPerCaller(2))
	open := func(caller string) (*locklock.Watch, error) {
		w, err := svc.Watch(e.ctx(), locklock.WatchRequest{Filter: locklock.Filter{Namespace: "public"}, Caller: caller})
		if err == nil {
			t.Cleanup(w.Close)
		}
		return w, err
	}
	a1, err1 := open("a")
	_, err2 := open("a")
	if err1 != nil || err2 != nil {
		t.Fatalf("two streams for one caller: %v, %v", err1, err2)
	}
	if _, err := open("a"); !errors.Is(err, locklock.ErrTooManyWatchers) || !errors.Is(err, locklock.ErrUnavailable) {
		t.Fatalf("a third stream for one caller: %v, want ErrTooManyWatchers", err)
	}
	if _, err := open("b"); err != nil {
		t.Fatalf("another caller's first stream: %v", err)
	}
	if _, err := open("c"); !errors.Is(err, locklock.ErrTooManyWatchers) {
		t.Fatalf("a fourth stream on a server allowing three: %v, want ErrTooManyWatchers", err)
	}
	a1.Close()
	if _, err := open("c"); err != nil {
		t.Fatalf("a stream after one closed: %v", err)
	}
	if n := svc.Watchers(); n != 3 {
		t.Errorf("Watchers() = %d, want 3", n)
	}
}

// testEventsOrderUnderRace: many clients racing for a few locks; the
// namespace stream shows each lock's history as it happened: grants with
// rising tokens, each ended (released) before the next grant.
func testEventsOrderUnderRace(t *testing.T, h Harness) {
	e := newEnv(t, h)
	requireEvents(t, e)
	w := e.watch(e.svc, locklock.Filter{Namespace: locklock.DefaultNamespace}, "")
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		released int
	)
	for c := range 16 {
		wg.Go(func() {
			for i := range 20 {
				id := e.id(fmt.Sprint("hot", (c+i)%3))
				l, created, err := e.svc.Acquire(e.ctx(), locklock.AcquireRequest{ID: id, TTL: time.Hour})
				if err != nil || !created {
					continue
				}
				if _, err := e.svc.Release(e.ctx(), id, ""); err == nil {
					mu.Lock()
					released++
					mu.Unlock()
				} else {
					t.Errorf("release of %s#%d: %v", id.Name, l.Token, err)
				}
			}
		})
	}
	wg.Wait()
	evs := e.events(w, 2*released)
	held := map[string]uint64{}
	last := map[string]uint64{}
	for i, ev := range evs {
		if i > 0 && !ev.Pos.After(evs[i-1].Pos) {
			t.Fatalf("positions not rising at %d", i)
		}
		name := ev.Lock.Name
		switch ev.Type {
		case locklock.EventAcquired:
			if held[name] != 0 {
				t.Fatalf("%s acquired (#%d) while #%d held it", name, ev.Lock.Token, held[name])
			}
			if ev.Lock.Token <= last[name] {
				t.Fatalf("%s token %d after %d", name, ev.Lock.Token, last[name])
			}
			held[name], last[name] = ev.Lock.Token, ev.Lock.Token
		case locklock.EventReleased:
			if held[name] != ev.Lock.Token {
				t.Fatalf("%s released #%d while #%d held it", name, ev.Lock.Token, held[name])
			}
			held[name] = 0
		default:
			t.Fatalf("unexpected %s", ev.Type)
		}
	}
	e.quiet(w)
}
