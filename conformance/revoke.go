package conformance

import (
	"errors"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
)

// Forced releases (API.md §11): an operator ends a lock or a slot whatever
// its secret. Who may is the transport's to decide; the engine's part is
// that the lock ends at once, as `revoked`, with its lock-delay starting
// then — one that the lost holder's secret cannot pass.

// revokedAt is the instant a forced release judged at at leaves as the
// lock's end: engines keep milliseconds.
func revokedAt(at time.Time) time.Time { return at.Truncate(time.Millisecond) }

// testRevokeWithoutDelay: a revoke ends a protected lock without its
// secret, returns it as it was, and leaves it free for anyone at once with
// a higher token; a lock that is not there cannot be revoked.
func testRevokeWithoutDelay(t *testing.T, h Harness) {
	e := newEnv(t, h)
	l := e.acquire(locklock.AcquireRequest{ID: e.id("stuck"), Secret: "holder's", TTL: time.Hour, Holder: "h-1"})
	got, err := e.svc.Revoke(e.ctx(), l.ID)
	if err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if got.Token != l.Token || got.Holder != "h-1" || !got.Live(got.ObservedAt) {
		t.Errorf("revoke returned %+v, want the lock as it was (token %d, holder h-1)", got, l.Token)
	}
	if _, err := e.svc.Get(e.ctx(), l.ID); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("get after the revoke: %v, want ErrNotFound", err)
	}
	if _, err := e.svc.Revoke(e.ctx(), l.ID); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("a second revoke: %v, want ErrNotFound", err)
	}
	if _, err := e.svc.Release(e.ctx(), l.ID, "holder's"); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("the lost holder's release: %v, want ErrNotFound", err)
	}
	next := e.acquire(locklock.AcquireRequest{ID: l.ID, Secret: "someone else's"})
	if next.Token <= l.Token {
		t.Errorf("token after the revoke %d, want > %d", next.Token, l.Token)
	}
	if _, err := e.svc.Revoke(e.ctx(), e.id("never-taken")); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("revoke of a lock nobody took: %v, want ErrNotFound", err)
	}
}

// testRevokeStartsLockDelay: a revoked lock with a lock-delay bars every
// acquire — its own secret's too, unlike after an expiry — until the
// revoke plus the delay; its record says Revoked; it is neither listed
// nor counted; a restart keeps all of that; and afterwards anyone takes it
// with a higher token.
func testRevokeStartsLockDelay(t *testing.T, h Harness) {
	e := newEnv(t, h)
	delay := e.delayFor()
	l := e.acquire(locklock.AcquireRequest{ID: e.id("delayed"), Secret: "a", TTL: time.Hour, LockDelay: delay, Holder: "h"})
	got, err := e.svc.Revoke(e.ctx(), l.ID)
	if err != nil {
		t.Fatalf("revoke: %v", err)
	}
	until := revokedAt(got.ObservedAt).Add(delay)
	check := func(when string) {
		t.Helper()
		for _, secret := range []string{"a", "b", ""} {
			_, _, err := e.svc.Acquire(e.ctx(), locklock.AcquireRequest{ID: l.ID, Secret: secret})
			var delayed *locklock.DelayedError
			if !errors.As(err, &delayed) {
				t.Fatalf("%s: acquire with secret %q: %v, want *DelayedError", when, secret, err)
			}
			d := delayed.Lock
			if !d.Revoked || !d.Ended || d.Token != l.Token || !d.DelayedUntil().Equal(until) {
				t.Fatalf("%s: the delay record %+v; want revoked, ended, token %d, delayed until %v", when, d, l.Token, until)
			}
		}
		var nf *locklock.NotFoundError
		if _, err := e.svc.Get(e.ctx(), l.ID); !errors.As(err, &nf) || !nf.DelayedUntil.Equal(until) {
			t.Errorf("%s: get: %v, want *NotFoundError with delayed_until %v", when, err, until)
		}
		if _, err := e.svc.Revoke(e.ctx(), l.ID); !errors.Is(err, locklock.ErrNotFound) {
			t.Errorf("%s: revoke during the lock-delay: %v, want ErrNotFound", when, err)
		}
		if page, err := e.svc.List(e.ctx(), locklock.ListRequest{Namespace: l.Namespace, Kind: l.Kind}); err != nil || len(page.Locks) != 0 {
			t.Errorf("%s: list = %+v, %v; want nothing", when, page.Locks, err)
		}
		if n, err := e.engine.CountHeld(e.ctx(), e.now()); err != nil || n != 0 {
			t.Errorf("%s: CountHeld = %d, %v; want 0", when, n, err)
		}
	}
	check("after the revoke")
	if _, err := e.engine.Sweep(e.ctx(), e.now()); err != nil {
		t.Fatalf("sweep: %v", err)
	}
	check("after a sweep")
	if h.Reopen != nil {
		e.engine = h.Reopen(t, e.engine)
		t.Cleanup(func() { _ = e.engine.Close() })
		e.svc = e.newService()
		check("after a restart")
	}
	if !e.h.RealTime {
		e.passUntil(until.Add(-time.Millisecond))
		if _, _, err := e.svc.Acquire(e.ctx(), locklock.AcquireRequest{ID: l.ID, Secret: "a"}); !errors.Is(err, locklock.ErrDelayed) {
			t.Fatalf("1 ms before the lock-delay ends: %v, want ErrDelayed", err)
		}
	}
	e.passUntil(until)
	next := e.acquire(locklock.AcquireRequest{ID: l.ID, Secret: "a"})
	if next.Token <= l.Token {
		t.Errorf("token after the lock-delay %d, want > %d", next.Token, l.Token)
	}
}

// testEventsRevoked: a revoke is announced as `revoked` to the lock's
// stream and its namespace's, with the lock as it ended: Revoked, its
// ExpiresAt the revoke's instant, its lock-delay from then.
func testEventsRevoked(t *testing.T, h Harness) {
	e := newEnv(t, h)
	requireEvents(t, e)
	id := e.id("revoked")
	l := e.acquire(locklock.AcquireRequest{ID: id, Secret: "s", TTL: time.Hour, LockDelay: 7 * time.Second, Holder: "h-r"})
	one := e.watch(e.svc, locklock.Filter{ID: &id}, "")
	ns := e.watch(e.svc, locklock.Filter{Namespace: id.Namespace}, "")
	got, err := e.svc.Revoke(e.ctx(), id)
	if err != nil {
		t.Fatalf("revoke: %v", err)
	}
	at := revokedAt(got.ObservedAt)
	for name, w := range map[string]*locklock.Watch{"lock": one, "namespace": ns} {
		evs := e.events(w, 1)
		wantTypes(t, evs, locklock.EventRevoked)
		ev := evs[0]
		if !ev.At.Equal(at) || ev.Lock.Token != l.Token || ev.Lock.Holder != "h-r" || !ev.Lock.Revoked ||
			!ev.Lock.ExpiresAt.Equal(at) || !ev.Lock.DelayedUntil().Equal(at.Add(7*time.Second)) {
			t.Errorf("%s stream: revoked event %+v at %v; want token %d, holder h-r, Revoked, ended and at %v, delayed 7 s from then",
				name, ev.Lock, ev.At, l.Token, at)
		}
	}
}

// testRevokeSlot: a revoke frees a protected slot without its secret,
// making room at once (slots have no lock-delay), and is announced as
// `revoked` with the slot as it was; a slot that is not there cannot be
// revoked.
func testRevokeSlot(t *testing.T, h Harness) {
	e := newEnv(t, h)
	id := e.id("pool")
	a := e.take(locklock.SlotRequest{ID: id, Limit: 2, Weight: 2, Secret: "s", TTL: time.Hour, Holder: "w-1"})
	var w *locklock.Watch
	if _, ok := e.engine.(locklock.EventSource); ok {
		w = e.watch(e.svc, semaphoreFilter(id), "")
	}
	got, err := e.svc.RevokeSlot(e.ctx(), id, a.ID)
	if err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if !sameSlot(got, a) {
		t.Errorf("revoke returned %+v, want the slot as it was %+v", got, a)
	}
	if _, err := e.svc.GetSlot(e.ctx(), id, a.ID); !errors.Is(err, locklock.ErrSlotNotFound) {
		t.Errorf("get after the revoke: %v, want ErrSlotNotFound", err)
	}
	if _, err := e.svc.RevokeSlot(e.ctx(), id, a.ID); !errors.Is(err, locklock.ErrSlotNotFound) {
		t.Errorf("a second revoke: %v, want ErrSlotNotFound", err)
	}
	if _, err := e.svc.ReleaseSlot(e.ctx(), id, a.ID, "s"); !errors.Is(err, locklock.ErrSlotNotFound) {
		t.Errorf("the lost holder's release: %v, want ErrSlotNotFound", err)
	}
	b := e.take(locklock.SlotRequest{ID: id, Limit: 2, Weight: 2})
	if b.Token <= a.Token {
		t.Errorf("token after the revoke %d, want > %d", b.Token, a.Token)
	}
	if w != nil {
		wantSlotEvents(t, e.events(w, 2), slotChange{locklock.EventRevoked, a}, slotChange{locklock.EventAcquired, b})
	}
}
