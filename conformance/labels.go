package conformance

import (
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
)

// The holder, metadata and lock-delay of API.md §8.

var (
	someMetadata = map[string]string{"addr": "10.0.0.7:8080", "term.note": "", "Job_ID-2": "ünïcode ✓"}
	otherHolder  = "host-b:42"
)

// testLabelsStored: holder, metadata and lock_delay are stored with the lock
// and come back from every read: the acquire's answer, Get, List, and a
// retried acquire (which changes nothing, whatever labels it carries).
func testLabelsStored(t *testing.T, h Harness) {
	e := newEnv(t, h)
	id := e.id("labelled")
	l := e.acquire(locklock.AcquireRequest{ID: id, Secret: "s", TTL: time.Hour,
		Holder: "host-a:7", Metadata: someMetadata, LockDelay: 5 * time.Second})
	if l.Holder != "host-a:7" || !maps.Equal(l.Metadata, someMetadata) || l.LockDelay != 5*time.Second {
		t.Fatalf("acquired %+v: holder, metadata or lock-delay not as asked", l)
	}
	got, err := e.svc.Get(e.ctx(), id)
	if err != nil || !sameGrant(got, l) {
		t.Fatalf("get = %+v, %v; want %+v", got, err, l)
	}
	page, err := e.svc.List(e.ctx(), locklock.ListRequest{Namespace: id.Namespace, Kind: id.Kind})
	if err != nil || len(page.Locks) != 1 || !sameGrant(page.Locks[0], l) {
		t.Fatalf("list = %+v, %v; want the one lock %+v", page.Locks, err, l)
	}
	again, created, err := e.svc.Acquire(e.ctx(), locklock.AcquireRequest{ID: id, Secret: "s", TTL: time.Minute,
		Holder: otherHolder, Metadata: map[string]string{"x": "y"}, LockDelay: 9 * time.Second})
	if err != nil || created || !sameGrant(again, l) {
		t.Fatalf("retried acquire = %+v, created %v, %v; want the lock unchanged", again, created, err)
	}
	plain := e.acquire(locklock.AcquireRequest{ID: e.id("plain"), TTL: time.Hour})
	if plain.Holder != "" || plain.Metadata != nil || plain.LockDelay != 0 {
		t.Errorf("a lock acquired without labels has %q %v %v", plain.Holder, plain.Metadata, plain.LockDelay)
	}
}

// testPatch: a PATCH replaces holder and metadata, keeps the token, and
// leaves the expiry alone unless it carries expires_in; a PATCH of nothing
// refreshes by the default lifetime; the wrong secret changes nothing.
func testPatch(t *testing.T, h Harness) {
	e := newEnv(t, h)
	id := e.id("patched")
	l := e.acquire(locklock.AcquireRequest{ID: id, Secret: "s", TTL: time.Hour, Holder: "host-a:7", Metadata: someMetadata})
	e.pass(time.Second)

	holder := otherHolder
	p, err := e.svc.Patch(e.ctx(), locklock.PatchRequest{ID: id, Secret: "s", Holder: &holder})
	if err != nil {
		t.Fatalf("patch holder: %v", err)
	}
	if p.Holder != otherHolder || !maps.Equal(p.Metadata, someMetadata) || p.Token != l.Token ||
		!p.ExpiresAt.Equal(l.ExpiresAt) || !p.AcquiredAt.Equal(l.AcquiredAt) {
		t.Fatalf("after a holder patch %+v; want holder %q, the same metadata, token, acquired_at and expiry as %+v", p, otherHolder, l)
	}
	if got, err := e.svc.Get(e.ctx(), id); err != nil || !sameGrant(got, p) {
		t.Fatalf("get after patch = %+v, %v; want %+v", got, err, p)
	}

	p, err = e.svc.Patch(e.ctx(), locklock.PatchRequest{ID: id, Secret: "s", SetMetadata: true, Metadata: map[string]string{}})
	if err != nil || p.Metadata != nil || p.Holder != otherHolder || !p.ExpiresAt.Equal(l.ExpiresAt) {
		t.Fatalf("after clearing metadata %+v, %v; want no metadata, holder kept, expiry kept", p, err)
	}

	md := map[string]string{"leader": "10.0.0.9:8080"}
	p, err = e.svc.Patch(e.ctx(), locklock.PatchRequest{ID: id, Secret: "s", SetMetadata: true, Metadata: md, TTL: 2 * time.Hour})
	wantExpiry := e.now().Truncate(time.Millisecond).Add(2 * time.Hour)
	if err != nil || !maps.Equal(p.Metadata, md) || p.Token != l.Token || !e.expiryNear(p.ExpiresAt, wantExpiry) {
		t.Fatalf("after metadata + expires_in %+v, %v; want metadata %v, token %d, expiry %v", p, err, md, l.Token, wantExpiry)
	}

	before := p
	wrong := "intruder"
	if _, err := e.svc.Patch(e.ctx(), locklock.PatchRequest{ID: id, Secret: "nope", Holder: &wrong}); !errors.Is(err, locklock.ErrSecretMismatch) {
		t.Fatalf("patch with the wrong secret: %v, want ErrSecretMismatch", err)
	}
	if got, err := e.svc.Get(e.ctx(), id); err != nil || !sameGrant(got, before) {
		t.Fatalf("a refused patch changed the lock: %+v, %v; want %+v", got, err, before)
	}

	e.pass(time.Second)
	p, err = e.svc.Patch(e.ctx(), locklock.PatchRequest{ID: id, Secret: "s"})
	wantExpiry = e.now().Truncate(time.Millisecond).Add(locklock.DefaultTTL)
	if err != nil || !e.expiryNear(p.ExpiresAt, wantExpiry) || p.Holder != otherHolder || !maps.Equal(p.Metadata, md) {
		t.Fatalf("an empty patch %+v, %v; want the default lifetime from now (%v) and the labels kept", p, err, wantExpiry)
	}
}

// expiryNear compares expiries: exactly with the manual clock, within the
// time a call takes with a real one.
func (e *env) expiryNear(got, want time.Time) bool {
	if e.clock != nil {
		return got.Equal(want)
	}
	d := got.Sub(want)
	return d > -time.Second && d < 2*time.Second
}

// testLabelValidation: bad holders, metadata and lock-delays are refused
// with ErrInvalidArgument naming the field, and change nothing.
func testLabelValidation(t *testing.T, h Harness) {
	e := newEnv(t, h)
	id := e.id("validated")
	tooMany := map[string]string{}
	for i := range 17 {
		tooMany[strings.Repeat("k", i+1)] = "v"
	}
	big := map[string]string{}
	for i := range 9 {
		big[strings.Repeat("n", i+1)] = strings.Repeat("v", 250)
	}
	cases := []struct {
		name  string
		req   locklock.AcquireRequest
		field string
	}{
		{"long holder", locklock.AcquireRequest{Holder: strings.Repeat("h", 129)}, "holder"},
		{"holder with a newline", locklock.AcquireRequest{Holder: "a\nb"}, "holder"},
		{"holder not UTF-8", locklock.AcquireRequest{Holder: "a\xffb"}, "holder"},
		{"17 members", locklock.AcquireRequest{Metadata: tooMany}, "metadata"},
		{"empty name", locklock.AcquireRequest{Metadata: map[string]string{"": "v"}}, "metadata"},
		{"name with a space", locklock.AcquireRequest{Metadata: map[string]string{"a b": "v"}}, "metadata"},
		{"long name", locklock.AcquireRequest{Metadata: map[string]string{strings.Repeat("n", 65): "v"}}, "metadata"},
		{"long value", locklock.AcquireRequest{Metadata: map[string]string{"n": strings.Repeat("v", 257)}}, "metadata"},
		{"value with a tab", locklock.AcquireRequest{Metadata: map[string]string{"n": "a\tb"}}, "metadata"},
		{"over 2 KiB", locklock.AcquireRequest{Metadata: big}, "metadata"},
		{"negative delay", locklock.AcquireRequest{LockDelay: -time.Second}, "lock_delay"},
		{"delay over the maximum", locklock.AcquireRequest{LockDelay: 61 * time.Second}, "lock_delay"},
		{"delay not in seconds", locklock.AcquireRequest{LockDelay: 1500 * time.Millisecond}, "lock_delay"},
	}
	for _, c := range cases {
		c.req.ID = id
		_, _, err := e.svc.Acquire(e.ctx(), c.req)
		if !errors.Is(err, locklock.ErrInvalidArgument) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: %v, want ErrInvalidArgument naming %s", c.name, err, c.field)
		}
		if _, err := e.svc.Get(e.ctx(), id); !errors.Is(err, locklock.ErrNotFound) {
			t.Errorf("%s: a refused acquire left a lock: %v", c.name, err)
		}
	}
	l := e.acquire(locklock.AcquireRequest{ID: id, Secret: "s", TTL: time.Hour, Holder: "h"})
	bad := "a\x00b"
	if _, err := e.svc.Patch(e.ctx(), locklock.PatchRequest{ID: id, Secret: "s", Holder: &bad}); !errors.Is(err, locklock.ErrInvalidArgument) {
		t.Errorf("patch with a bad holder: %v, want ErrInvalidArgument", err)
	}
	if _, err := e.svc.Patch(e.ctx(), locklock.PatchRequest{ID: id, Secret: "s", SetMetadata: true, Metadata: tooMany}); !errors.Is(err, locklock.ErrInvalidArgument) {
		t.Errorf("patch with bad metadata: %v, want ErrInvalidArgument", err)
	}
	if got, err := e.svc.Get(e.ctx(), id); err != nil || !sameGrant(got, l) {
		t.Errorf("refused patches changed the lock: %+v, %v", got, err)
	}
}

// delayFor is the lock-delay the lock-delay tests use: long enough on a
// RealTime engine for the lock to be seen expired (its storage may end it
// up to realTimeGrace late) well before the delay runs out.
func (e *env) delayFor() time.Duration {
	if e.h.RealTime {
		return 3*realTimeGrace + time.Second
	}
	return 20 * time.Second
}

// passExpiry lets l expire (and, on a RealTime engine, its storage notice).
func (e *env) passExpiry(l locklock.Lock) {
	e.pass(l.ExpiresAt.Sub(e.now()) + e.graceForRealTime())
}

// passUntil lets time run to at (at least).
func (e *env) passUntil(at time.Time) {
	if d := at.Sub(e.now()); d > 0 {
		e.pass(d)
	}
	if e.clock == nil {
		time.Sleep(50 * time.Millisecond) // the storage's clock and ours differ a little
	}
}

// testLockDelayAfterExpiry: after a lock with a lock-delay expires, nobody
// may take it until the delay has run — except the lost holder's own secret
// — GET answers not found with delayed_until, it is neither listed nor
// counted, a sweep keeps it barred, and once the delay is over anyone may
// take it with a higher token.
func testLockDelayAfterExpiry(t *testing.T, h Harness) {
	e := newEnv(t, h)
	delay := e.delayFor()
	x := e.acquire(locklock.AcquireRequest{ID: e.id("x"), Secret: "a", TTL: e.shortTTL(), LockDelay: delay, Holder: "h1"})
	y := e.acquire(locklock.AcquireRequest{ID: e.id("y"), Secret: "b", TTL: e.shortTTL(), LockDelay: delay})
	z := e.acquire(locklock.AcquireRequest{ID: e.id("z"), TTL: e.shortTTL(), LockDelay: delay}) // no secret: nobody reclaims
	if !e.h.RealTime {
		e.pass(x.ExpiresAt.Sub(e.now()) - time.Millisecond)
		if _, _, err := e.svc.Acquire(e.ctx(), locklock.AcquireRequest{ID: x.ID}); !errors.Is(err, locklock.ErrHeld) {
			t.Fatalf("1 ms before expiry: %v, want ErrHeld", err)
		}
	}
	e.passExpiry(x)
	if _, err := e.engine.Sweep(e.ctx(), e.now()); err != nil {
		t.Fatalf("sweep: %v", err)
	}

	for _, l := range []locklock.Lock{x, z} {
		_, _, err := e.svc.Acquire(e.ctx(), locklock.AcquireRequest{ID: l.ID, Secret: "someone-else"})
		var delayed *locklock.DelayedError
		if !errors.As(err, &delayed) {
			t.Fatalf("acquire of %s during its lock-delay: %v, want *DelayedError", l.Name, err)
		}
		if want := l.ExpiresAt.Add(delay); !delayed.Lock.DelayedUntil().Equal(want) {
			t.Errorf("delayed until %v, want expires_at + lock_delay = %v", delayed.Lock.DelayedUntil(), want)
		}
		if delayed.Lock.Token != l.Token || !delayed.Lock.Ended || delayed.Lock.Revoked {
			t.Errorf("the delay record %+v does not describe the lost lock %+v (ended, not revoked)", delayed.Lock, l)
		}
		_, err = e.svc.Get(e.ctx(), l.ID)
		var nf *locklock.NotFoundError
		if !errors.As(err, &nf) || !nf.DelayedUntil.Equal(l.ExpiresAt.Add(delay)) {
			t.Errorf("get of %s during its lock-delay: %v, want *NotFoundError with delayed_until", l.Name, err)
		}
		if _, err := e.svc.Release(e.ctx(), l.ID, ""); !errors.Is(err, locklock.ErrNotFound) {
			t.Errorf("release during the lock-delay: %v, want ErrNotFound", err)
		}
		if _, err := e.svc.Refresh(e.ctx(), l.ID, "a", time.Hour); !errors.Is(err, locklock.ErrNotFound) {
			t.Errorf("refresh during the lock-delay: %v, want ErrNotFound", err)
		}
	}
	if _, _, err := e.svc.Acquire(e.ctx(), locklock.AcquireRequest{ID: z.ID}); !errors.Is(err, locklock.ErrDelayed) {
		t.Errorf("acquire without a secret of a lock that had none: %v, want ErrDelayed", err)
	}
	if page, err := e.svc.List(e.ctx(), locklock.ListRequest{Namespace: x.Namespace, Kind: x.Kind}); err != nil || len(page.Locks) != 0 {
		t.Errorf("list during lock-delays = %+v, %v; want nothing", page.Locks, err)
	}
	if n, err := e.engine.CountHeld(e.ctx(), e.now()); err != nil || n != 0 {
		t.Errorf("CountHeld during lock-delays = %d, %v; want 0", n, err)
	}

	// The lost holder's secret takes its lock back at once: a new grant.
	back, created, err := e.svc.Acquire(e.ctx(), locklock.AcquireRequest{ID: y.ID, Secret: "b", TTL: time.Hour, Holder: "back"})
	if err != nil || !created || back.Token <= y.Token || back.Holder != "back" || back.LockDelay != 0 {
		t.Fatalf("the lost holder's reclaim = %+v, created %v, %v; want a new grant with a higher token and the new labels", back, created, err)
	}

	if !e.h.RealTime {
		e.passUntil(x.ExpiresAt.Add(delay - time.Millisecond))
		if _, _, err := e.svc.Acquire(e.ctx(), locklock.AcquireRequest{ID: x.ID}); !errors.Is(err, locklock.ErrDelayed) {
			t.Fatalf("1 ms before the lock-delay ends: %v, want ErrDelayed", err)
		}
	}
	e.passUntil(x.ExpiresAt.Add(delay))
	next := e.acquire(locklock.AcquireRequest{ID: x.ID, Secret: "c"})
	if next.Token <= x.Token {
		t.Errorf("token after the lock-delay %d, want > %d", next.Token, x.Token)
	}
	if _, err := e.engine.Sweep(e.ctx(), e.now()); err != nil {
		t.Fatalf("sweep: %v", err)
	}
	after := e.acquire(locklock.AcquireRequest{ID: z.ID})
	if after.Token <= z.Token {
		t.Errorf("token after a swept lock-delay %d, want > %d", after.Token, z.Token)
	}
}

// testNoDelayAfterRelease: a release by the holder ends the lock at once,
// lock-delay or not.
func testNoDelayAfterRelease(t *testing.T, h Harness) {
	e := newEnv(t, h)
	l := e.acquire(locklock.AcquireRequest{ID: e.id("released"), Secret: "a", TTL: time.Hour, LockDelay: 30 * time.Second})
	if _, err := e.svc.Release(e.ctx(), l.ID, "a"); err != nil {
		t.Fatalf("release: %v", err)
	}
	next := e.acquire(locklock.AcquireRequest{ID: l.ID, Secret: "b"})
	if next.Token <= l.Token {
		t.Errorf("token %d, want > %d", next.Token, l.Token)
	}
}

// testWaitOutLockDelay: a waiter keeps waiting through a lock-delay and gets
// the lock once it ends, not before; a wait that ends inside the delay
// fails with ErrDelayed.
func testWaitOutLockDelay(t *testing.T, h Harness) {
	e := newEnv(t, h)
	delay := e.delayFor()
	l := e.acquire(locklock.AcquireRequest{ID: e.id("waited"), Secret: "a", TTL: e.shortTTL(), LockDelay: delay})
	e.passExpiry(l)
	short := e.startWaiter(e.ctx(), locklock.AcquireRequest{ID: l.ID, Wait: time.Second})
	if !e.h.RealTime {
		e.pass(time.Second)
	}
	if r := e.result(short); !errors.Is(r.err, locklock.ErrDelayed) {
		t.Fatalf("a wait that ended inside the lock-delay: %+v, want ErrDelayed", r)
	}
	waiter := e.startWaiter(e.ctx(), locklock.AcquireRequest{ID: l.ID, Wait: delay + 30*time.Second})
	e.assertStillWaiting(waiter)
	until := l.ExpiresAt.Add(delay)
	if !e.h.RealTime {
		e.pass(until.Sub(e.now()) - time.Millisecond)
		e.assertStillWaiting(waiter)
		e.pass(time.Millisecond)
	}
	r := e.result(waiter)
	if r.err != nil || !r.created || r.lock.Token <= l.Token {
		t.Fatalf("waiter after the lock-delay: %+v, want a new grant", r)
	}
	if r.lock.AcquiredAt.Before(until) {
		t.Errorf("waiter granted at %v, before the lock-delay ended at %v", r.lock.AcquiredAt, until)
	}
}

// testLockDelaySurvivesReopen: a lock-delay in force, and one that has not
// yet begun, hold across a restart.
func testLockDelaySurvivesReopen(t *testing.T, h Harness) {
	if h.Reopen == nil {
		t.Skip("engine keeps nothing across restarts (Harness.Reopen is nil)")
	}
	e := newEnv(t, h)
	delay := e.delayFor()
	l := e.acquire(locklock.AcquireRequest{ID: e.id("durable"), Secret: "a", TTL: e.shortTTL(), LockDelay: delay, Holder: "h", Metadata: someMetadata})
	e.engine = h.Reopen(t, e.engine)
	t.Cleanup(func() { _ = e.engine.Close() })
	e.svc = e.newService()
	if got, err := e.svc.Get(e.ctx(), l.ID); err != nil || !sameGrant(got, l) {
		t.Fatalf("after reopen = %+v, %v; want %+v", got, err, l)
	}
	e.passExpiry(l)
	if _, err := e.engine.Sweep(e.ctx(), e.now()); err != nil {
		t.Fatalf("sweep: %v", err)
	}
	e.engine = h.Reopen(t, e.engine)
	e.svc = e.newService()
	if _, _, err := e.svc.Acquire(e.ctx(), locklock.AcquireRequest{ID: l.ID}); !errors.Is(err, locklock.ErrDelayed) {
		t.Fatalf("acquire during a lock-delay, after reopen: %v, want ErrDelayed", err)
	}
	back, created, err := e.svc.Acquire(e.ctx(), locklock.AcquireRequest{ID: l.ID, Secret: "a"})
	if err != nil || !created || back.Token <= l.Token {
		t.Fatalf("reclaim after reopen = %+v, %v, %v; want a new grant", back, created, err)
	}
}
