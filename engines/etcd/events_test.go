package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/locklock/locklock/engines/etcd"
	"github.com/locklock/locklock/internal/etcdtest"
	"github.com/locklock/locklock/locklock"
)

// The events of API.md §9 across servers: every server's streams show
// every change, wherever it was made, with positions any server resumes
// from.

// eventServer is one locklock server on etcd: an engine with its own
// client, and a Service on it.
func eventServer(t *testing.T, endpoint, prefix string, opts ...locklock.Option) *locklock.Service {
	t.Helper()
	e := etcd.New(etcdtest.Client(t, endpoint), etcd.WithPrefix(prefix))
	t.Cleanup(func() { _ = e.Close() })
	return locklock.NewService(e, opts...)
}

func openWatch(t *testing.T, s *locklock.Service, f locklock.Filter, from string) *locklock.Watch {
	t.Helper()
	w, err := s.Watch(t.Context(), locklock.WatchRequest{Filter: f, From: from, Caller: "test"})
	if err != nil {
		t.Fatalf("watch %+v from %q: %v", f, from, err)
	}
	t.Cleanup(w.Close)
	return w
}

// readEvents reads until n events came, or fails after 20 s.
func readEvents(t *testing.T, w *locklock.Watch, n int) []*locklock.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var got []*locklock.Event
	for len(got) < n {
		evs, err := w.Next(ctx)
		if err != nil {
			t.Fatalf("after %d of %d events (%s): %v", len(got), n, describe(got), err)
		}
		got = append(got, evs...)
	}
	if len(got) > n {
		t.Fatalf("%d events, want %d: %s", len(got), n, describe(got))
	}
	return got
}

// noMoreEvents asserts that nothing comes for a while.
func noMoreEvents(t *testing.T, w *locklock.Watch) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	if evs, err := w.Next(ctx); err == nil {
		t.Fatalf("unexpected events: %s", describe(evs))
	}
}

func describe(evs []*locklock.Event) string {
	s := ""
	for _, ev := range evs {
		s += fmt.Sprintf("%s %s#%d @%s; ", ev.Type, ev.Lock.Name, ev.Lock.Token, ev.Pos)
	}
	return s
}

// checkEvents asserts the events' types and names, and that positions rise.
func checkEvents(t *testing.T, evs []*locklock.Event, want ...string) {
	t.Helper()
	if len(evs) != len(want) {
		t.Fatalf("events %s, want %v", describe(evs), want)
	}
	for i, ev := range evs {
		if got := string(ev.Type) + " " + ev.Lock.Name; got != want[i] {
			t.Fatalf("events %s, want %v", describe(evs), want)
		}
		if i > 0 && !ev.Pos.After(evs[i-1].Pos) {
			t.Fatalf("event %d at %v, not after %v", i, ev.Pos, evs[i-1].Pos)
		}
	}
}

func keyID(name string) locklock.ID {
	return locklock.ID{Namespace: "public", Kind: locklock.KindKey, Name: name}
}

// TestEventsAcrossServers: streams through server B show what is done
// through server A — acquire, refresh, PATCH, release, and an expiry that
// no request made — each with its type (released is not expired), the lock
// as it was when it ended, and its lock-delay.
func TestEventsAcrossServers(t *testing.T) {
	endpoint := etcdtest.Endpoints(t)[0]
	prefix := uniquePrefix("events")
	a, b := eventServer(t, endpoint, prefix), eventServer(t, endpoint, prefix)
	id, short := keyID("across"), keyID("short")
	one := openWatch(t, b, locklock.Filter{ID: &id}, "")
	if one.State != nil || one.Reset {
		t.Fatalf("a free lock's stream: state %+v reset %v", one.State, one.Reset)
	}
	ns := openWatch(t, b, locklock.Filter{Namespace: "public"}, "")

	before := time.Now().Add(-time.Millisecond)
	l := mustAcquire(t, a, locklock.AcquireRequest{ID: id, Secret: "s", TTL: time.Hour, Holder: "h1", LockDelay: 7 * time.Second})
	if _, err := a.Refresh(t.Context(), id, "s", 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	h2 := "h2"
	if _, err := a.Patch(t.Context(), locklock.PatchRequest{ID: id, Secret: "s", Holder: &h2, Metadata: map[string]string{"k": "v"}, SetMetadata: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Release(t.Context(), id, "s"); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	s := mustAcquire(t, a, locklock.AcquireRequest{ID: short, TTL: time.Second, Holder: "brief", LockDelay: 3 * time.Second})

	evs := readEvents(t, one, 4)
	checkEvents(t, evs, "acquired across", "refreshed across", "refreshed across", "released across")
	for i, ev := range evs {
		if ev.Lock.Token != l.Token || !ev.Lock.Protected() || ev.Lock.LockDelay != 7*time.Second {
			t.Errorf("event %d carries %+v, want token %d, protected, lock-delay 7s", i, ev.Lock, l.Token)
		}
		if ev.At.Before(before) || ev.At.After(after) {
			t.Errorf("event %d (%s) at %v, not between %v and %v", i, ev.Type, ev.At, before, after)
		}
	}
	if !evs[0].At.Equal(l.AcquiredAt) || evs[0].Lock.Holder != "h1" {
		t.Errorf("acquired: %+v at %v, want holder h1 at %v", evs[0].Lock, evs[0].At, l.AcquiredAt)
	}
	if got := evs[1].Lock.ExpiresAt.Sub(l.ExpiresAt); got < 50*time.Minute {
		t.Errorf("refresh moved the expiry by %v, want about an hour", got)
	}
	if evs[2].Lock.Holder != "h2" || evs[2].Lock.Metadata["k"] != "v" || !evs[2].Lock.ExpiresAt.Equal(evs[1].Lock.ExpiresAt) {
		t.Errorf("PATCH's refreshed: %+v", evs[2].Lock)
	}
	if rel := evs[3].Lock; rel.Holder != "h2" || rel.Metadata["k"] != "v" || !rel.ExpiresAt.Equal(evs[2].Lock.ExpiresAt) {
		t.Errorf("released carries %+v, want the lock as it was", rel)
	}
	noMoreEvents(t, one)

	evs = readEvents(t, ns, 6) // the four, then the short lock's grant and expiry
	checkEvents(t, evs, "acquired across", "refreshed across", "refreshed across", "released across", "acquired short", "expired short")
	exp := evs[5]
	if exp.Lock.Token != s.Token || exp.Lock.Holder != "brief" || !exp.At.Equal(s.ExpiresAt) ||
		!exp.Lock.DelayedUntil().Equal(s.ExpiresAt.Add(3*time.Second)) {
		t.Errorf("expired: %+v at %v; want token %d, holder brief, at %v, delayed until +3s", exp.Lock, exp.At, s.Token, s.ExpiresAt)
	}
	noMoreEvents(t, ns)
}

// TestResumeAcrossServers: a client read some events through server A;
// more happened, some before server B started and some after; resumed on
// B from A's last position, it gets exactly the events it missed — those
// from before B started out of etcd's history — and then the live ones. A
// position etcd has not reached is reset.
func TestResumeAcrossServers(t *testing.T) {
	endpoint := etcdtest.Endpoints(t)[0]
	prefix := uniquePrefix("resume")
	a := eventServer(t, endpoint, prefix)
	f := locklock.Filter{Namespace: "public"}
	wa := openWatch(t, a, f, "")
	acquire := func(s *locklock.Service, names ...string) {
		for _, n := range names {
			mustAcquire(t, s, locklock.AcquireRequest{ID: keyID(n), TTL: time.Hour})
		}
	}
	acquire(a, "e1", "e2", "e3")
	read := readEvents(t, wa, 3)
	wa.Close() // the client goes; server A may go too
	acquire(a, "e4", "e5")
	// B retains only two events: the rest must come from etcd.
	b := eventServer(t, endpoint, prefix, locklock.WithEventRetention(2))
	acquire(a, "e6", "e7", "e8")

	rb := openWatch(t, b, f, read[2].Pos.String())
	if !rb.Resumed || rb.Reset {
		t.Fatalf("resume on B from A's position %s: resumed %v reset %v", read[2].Pos, rb.Resumed, rb.Reset)
	}
	got := readEvents(t, rb, 5)
	checkEvents(t, got, "acquired e4", "acquired e5", "acquired e6", "acquired e7", "acquired e8")
	if !got[0].Pos.After(read[2].Pos) {
		t.Errorf("resumed at %v, not after %v", got[0].Pos, read[2].Pos)
	}
	acquire(a, "e9")
	checkEvents(t, readEvents(t, rb, 1), "acquired e9")
	noMoreEvents(t, rb)

	// A's position and B's are one stream: B's events resume on A too.
	ra := openWatch(t, a, f, got[2].Pos.String())
	checkEvents(t, readEvents(t, ra, 3), "acquired e7", "acquired e8", "acquired e9")

	// A one-lock stream resumes across servers as well.
	id := keyID("e5")
	if _, err := a.Release(t.Context(), id, ""); err != nil {
		t.Fatal(err)
	}
	one := openWatch(t, b, locklock.Filter{ID: &id}, read[2].Pos.String())
	checkEvents(t, readEvents(t, one, 2), "acquired e5", "released e5")

	ahead := read[2].Pos
	ahead.Seq += 1 << 40
	if x := openWatch(t, b, f, ahead.String()); !x.Reset || x.Resumed {
		t.Errorf("resume from %v, beyond etcd's revision: reset %v resumed %v, want a reset", ahead, x.Reset, x.Resumed)
	}
}

// TestResumeFromCompactedIsReset: a position whose events etcd compacted
// cannot be resumed on a server that does not retain them: reset.
func TestResumeFromCompactedIsReset(t *testing.T) {
	if os.Getenv(etcdtest.EnvEndpoints) != "" {
		t.Skip("compacts etcd's history; LOCKLOCK_ETCD_ENDPOINTS points at an external etcd others may use")
	}
	endpoint := etcdtest.Endpoints(t)[0]
	prefix := uniquePrefix("compacted")
	a := eventServer(t, endpoint, prefix)
	f := locklock.Filter{Namespace: "public"}
	wa := openWatch(t, a, f, "")
	mustAcquire(t, a, locklock.AcquireRequest{ID: keyID("c1"), TTL: time.Hour})
	first := readEvents(t, wa, 1)[0]
	mustAcquire(t, a, locklock.AcquireRequest{ID: keyID("c2"), TTL: time.Hour})
	observer := etcdtest.Client(t, endpoint)
	resp, err := observer.Get(t.Context(), "compact-here")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := observer.Compact(t.Context(), resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	b := eventServer(t, endpoint, prefix)
	x := openWatch(t, b, f, first.Pos.String())
	if !x.Reset || x.Resumed {
		t.Fatalf("resume from a compacted position: reset %v resumed %v, want a reset", x.Reset, x.Resumed)
	}
	mustAcquire(t, a, locklock.AcquireRequest{ID: keyID("c3"), TTL: time.Hour})
	checkEvents(t, readEvents(t, x, 1), "acquired c3") // and then it streams afresh
}

// TestLocksEndingInOneRevision: locks on one shared lease end together, in
// one etcd revision; their expired events have distinct positions, in
// order, within it.
func TestLocksEndingInOneRevision(t *testing.T) {
	endpoint := etcdtest.Endpoints(t)[0]
	prefix := uniquePrefix("one-revision")
	a := eventServer(t, endpoint, prefix)
	observer := etcdtest.Client(t, endpoint)
	w := openWatch(t, a, locklock.Filter{Namespace: "public"}, "")
	var names []string
	for attempt := 0; ; attempt++ {
		names = names[:0]
		for i := range 3 {
			names = append(names, fmt.Sprintf("together-%d-%d", attempt, i))
			mustAcquire(t, a, locklock.AcquireRequest{ID: keyID(names[i]), TTL: time.Second})
		}
		readEvents(t, w, 3)
		// They share a lease unless a lease window closed between them.
		leases := map[int64]bool{}
		for _, n := range names {
			resp, err := observer.Get(t.Context(), prefix+"locks/public/key/"+n)
			if err != nil || len(resp.Kvs) != 1 {
				t.Fatalf("read %s: %v", n, err)
			}
			leases[resp.Kvs[0].Lease] = true
		}
		if len(leases) == 1 {
			break
		}
		if attempt == 5 {
			t.Fatal("three locks acquired at once never shared a lease")
		}
		readEvents(t, w, 3) // their expiries, on two leases
	}
	evs := readEvents(t, w, 3)
	checkEvents(t, evs, "expired "+names[0], "expired "+names[1], "expired "+names[2])
	for i, ev := range evs {
		if ev.Pos.Seq != evs[0].Pos.Seq || ev.Pos.Epoch != evs[0].Pos.Epoch {
			t.Errorf("event %d at %v, not in the revision of %v", i, ev.Pos, evs[0].Pos)
		}
	}
	// Resumed from inside the revision, a stream gets the rest of it.
	r := openWatch(t, eventServer(t, endpoint, prefix), locklock.Filter{Namespace: "public"}, evs[0].Pos.String())
	checkEvents(t, readEvents(t, r, 2), "expired "+names[1], "expired "+names[2])
}

// TestEventsWhenEtcdAnswersLate: a server started while etcd does not
// answer starts its streams on a pending position; once etcd answers, its
// streams restart on etcd's, and then carry every change, with the
// positions every other server gives.
func TestEventsWhenEtcdAnswersLate(t *testing.T) {
	endpoint := etcdtest.Endpoints(t)[0]
	prefix := uniquePrefix("late")
	proxy := etcdtest.NewProxy(t, endpoint)
	proxy.Cut()
	late := etcd.New(etcdtest.Client(t, proxy.URL()), etcd.WithPrefix(prefix), etcd.WithRequestTimeout(300*time.Millisecond))
	t.Cleanup(func() { _ = late.Close() })
	start := time.Now()
	svc := locklock.NewService(late)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("NewService waited %v for etcd", d)
	}
	f := locklock.Filter{Namespace: "public"}
	if _, err := svc.Watch(t.Context(), locklock.WatchRequest{Filter: f, Caller: "test"}); !errors.Is(err, locklock.ErrUnavailable) {
		t.Errorf("a stream while etcd does not answer: %v, want ErrUnavailable", err)
	}
	other := eventServer(t, endpoint, prefix)
	wo := openWatch(t, other, f, "")
	mustAcquire(t, other, locklock.AcquireRequest{ID: keyID("early-1"), TTL: time.Hour})
	mustAcquire(t, other, locklock.AcquireRequest{ID: keyID("early-2"), TTL: time.Hour})
	early := readEvents(t, wo, 2)
	proxy.Restore()

	// A stream opened before the restart ends with it: open again until
	// one sees an event.
	deadline := time.Now().Add(20 * time.Second)
	names := []string{"early-2"}
	for i := 0; ; i++ {
		if time.Now().After(deadline) {
			t.Fatal("the late server's streams never carried events")
		}
		w, err := svc.Watch(t.Context(), locklock.WatchRequest{Filter: f, Caller: "test"})
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		name := fmt.Sprint("late-", i)
		names = append(names, name)
		mustAcquire(t, other, locklock.AcquireRequest{ID: keyID(name), TTL: time.Hour})
		want := readEvents(t, wo, 1)[0]
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		evs, err := w.Next(ctx)
		cancel()
		w.Close()
		if err != nil {
			continue // restarted under it, or not yet caught up
		}
		if len(evs) != 1 || evs[0].Lock.Name != name || evs[0].Pos != want.Pos {
			t.Fatalf("late server: %s; the other server: %s", describe(evs), describe([]*locklock.Event{want}))
		}
		break
	}
	// Its stream starts where it learned etcd's position: what came
	// before, it replays from etcd's history, even from before it did.
	r := openWatch(t, svc, f, early[0].Pos.String())
	if !r.Resumed {
		t.Fatalf("resume on the late server from %v: reset %v", early[0].Pos, r.Reset)
	}
	var want []string
	for _, n := range names {
		want = append(want, "acquired "+n)
	}
	checkEvents(t, readEvents(t, r, len(want)), want...)
}

// TestEventsAfterWatchGap: while a server is cut off from etcd, a lock is
// released elsewhere and etcd's history is compacted past the release, so
// the server's watch can never report it. Back in touch, the server ends
// its streams instead of carrying on without the release; a client that
// resumes is reset (the history is gone) and starts afresh, with the lock
// free.
func TestEventsAfterWatchGap(t *testing.T) {
	if os.Getenv(etcdtest.EnvEndpoints) != "" {
		t.Skip("compacts etcd's history; LOCKLOCK_ETCD_ENDPOINTS points at an external etcd others may use")
	}
	endpoint := etcdtest.Endpoints(t)[0]
	prefix := uniquePrefix("gap")
	proxy := etcdtest.NewProxy(t, endpoint)
	cutOff := etcd.New(etcdtest.Client(t, proxy.URL()), etcd.WithPrefix(prefix))
	t.Cleanup(func() { _ = cutOff.Close() })
	sa := locklock.NewService(cutOff)
	sb := eventServer(t, endpoint, prefix)
	id := keyID("released-in-the-gap")
	w := openWatch(t, sa, locklock.Filter{ID: &id}, "")
	mustAcquire(t, sb, locklock.AcquireRequest{ID: id, Secret: "s", TTL: time.Hour})
	last := readEvents(t, w, 1)[0]

	proxy.Cut()
	if _, err := sb.Release(t.Context(), id, "s"); err != nil {
		t.Fatal(err)
	}
	observer := etcdtest.Client(t, endpoint)
	resp, err := observer.Put(t.Context(), uniquePrefix("compact-here"), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := observer.Compact(t.Context(), resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	proxy.Restore()

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if evs, err := w.Next(ctx); err == nil || ctx.Err() != nil {
		t.Fatalf("after the gap the stream goes on: %s, %v", describe(evs), err)
	}
	r := openWatch(t, sa, locklock.Filter{ID: &id}, last.Pos.String())
	if !r.Reset || r.Resumed || r.State != nil {
		t.Fatalf("resume from before the gap: reset %v resumed %v state %+v, want a reset to a free lock", r.Reset, r.Resumed, r.State)
	}
	mustAcquire(t, sb, locklock.AcquireRequest{ID: id, TTL: time.Hour})
	checkEvents(t, readEvents(t, r, 1), "acquired released-in-the-gap")
}

// TestEventsOfLocksFromBeforeStart: a server learns of locks as they are
// put; for locks acquired before it started, it reads from etcd's history
// what their released and expired events carry: the lock as it was.
func TestEventsOfLocksFromBeforeStart(t *testing.T) {
	endpoint := etcdtest.Endpoints(t)[0]
	prefix := uniquePrefix("before-start")
	a := eventServer(t, endpoint, prefix)
	rel := mustAcquire(t, a, locklock.AcquireRequest{ID: keyID("old-released"), Secret: "s", TTL: time.Hour, Holder: "h-rel"})
	exp := mustAcquire(t, a, locklock.AcquireRequest{ID: keyID("old-expired"), TTL: time.Second, Holder: "h-exp", LockDelay: 2 * time.Second})
	b := eventServer(t, endpoint, prefix)
	w := openWatch(t, b, locklock.Filter{Namespace: "public"}, "")
	if _, err := a.Release(t.Context(), rel.ID, "s"); err != nil {
		t.Fatal(err)
	}
	evs := readEvents(t, w, 2)
	checkEvents(t, evs, "released old-released", "expired old-expired")
	if l := evs[0].Lock; l.Token != rel.Token || l.Holder != "h-rel" || !l.ExpiresAt.Equal(rel.ExpiresAt) || !l.Protected() {
		t.Errorf("released carries %+v, want %+v", l, rel)
	}
	if l := evs[1].Lock; l.Token != exp.Token || l.Holder != "h-exp" || !evs[1].At.Equal(exp.ExpiresAt) ||
		!l.DelayedUntil().Equal(exp.ExpiresAt.Add(2*time.Second)) {
		t.Errorf("expired carries %+v at %v, want %+v at its expiry", l, evs[1].At, exp)
	}
}
