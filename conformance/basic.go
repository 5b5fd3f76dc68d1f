package conformance

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
)

func testAcquireFree(t *testing.T, h Harness) {
	e := newEnv(t, h)
	id := e.id("free")
	l := e.acquire(locklock.AcquireRequest{ID: id, Secret: "s3cret", TTL: time.Minute})
	if l.ID != id || l.Token == 0 || !l.Protected() {
		t.Fatalf("acquired %+v: want id %s, a token, protected", l, id)
	}
	if got := l.ExpiresAt.Sub(l.AcquiredAt); got != time.Minute {
		t.Errorf("expires_at - acquired_at = %v, want 1m", got)
	}
	if l.Remaining() != time.Minute {
		t.Errorf("remaining at grant = %v, want 1m", l.Remaining())
	}
	got, err := e.svc.Get(e.ctx(), id)
	if err != nil {
		t.Fatalf("get after acquire: %v", err)
	}
	if !sameGrant(got, l) {
		t.Errorf("get = %+v, want %+v", got, l)
	}

	// Without TTL the default applies.
	d := e.acquire(locklock.AcquireRequest{ID: e.id("default-ttl")})
	if got := d.ExpiresAt.Sub(d.AcquiredAt); got != locklock.DefaultTTL {
		t.Errorf("default ttl = %v, want %v", got, locklock.DefaultTTL)
	}
	if d.Protected() {
		t.Error("a lock acquired without a secret is protected")
	}
}

func testAcquireHeld(t *testing.T, h Harness) {
	e := newEnv(t, h)
	id := e.id("held")
	first := e.acquire(locklock.AcquireRequest{ID: id, Secret: "a", TTL: time.Hour})
	for _, secret := range []string{"", "b"} {
		_, created, err := e.svc.Acquire(e.ctx(), locklock.AcquireRequest{ID: id, Secret: secret, TTL: time.Minute})
		var held *locklock.HeldError
		if created || !errors.As(err, &held) || !errors.Is(err, locklock.ErrHeld) {
			t.Fatalf("second acquire (secret %q): created=%v err=%v, want *HeldError", secret, created, err)
		}
		if held.Lock.Token != first.Token || !held.Lock.ExpiresAt.Equal(first.ExpiresAt) {
			t.Errorf("held error names %+v, want the holder %+v", held.Lock, first)
		}
	}
	got, err := e.svc.Get(e.ctx(), id)
	if err != nil || !sameGrant(got, first) {
		t.Errorf("after refused acquires get = %+v, %v; want the first grant unchanged", got, err)
	}
}

func testReleaseFrees(t *testing.T, h Harness) {
	e := newEnv(t, h)
	id := e.id("release")
	first := e.acquire(locklock.AcquireRequest{ID: id, Secret: "a"})
	rel, err := e.svc.Release(e.ctx(), id, "a")
	if err != nil {
		t.Fatalf("release: %v", err)
	}
	if !sameGrant(rel, first) {
		t.Errorf("release returned %+v, want the released lock %+v", rel, first)
	}
	if _, err := e.svc.Get(e.ctx(), id); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("get after release: %v, want ErrNotFound", err)
	}
	if _, err := e.svc.Release(e.ctx(), id, "a"); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("second release: %v, want ErrNotFound", err)
	}
	if _, err := e.svc.Release(e.ctx(), e.id("never"), ""); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("release of a never-acquired lock: %v, want ErrNotFound", err)
	}
	second := e.acquire(locklock.AcquireRequest{ID: id})
	if second.Token <= first.Token {
		t.Errorf("token after release %d, want > %d", second.Token, first.Token)
	}
}

func testExpiredIsFree(t *testing.T, h Harness) {
	e := newEnv(t, h)
	id := e.id("expiring")
	ttl := e.shortTTL()
	first := e.acquire(locklock.AcquireRequest{ID: id, Secret: "a", TTL: ttl})
	if !h.RealTime {
		// One millisecond before expiry the lock is still held.
		e.pass(ttl - time.Millisecond)
		if _, err := e.svc.Get(e.ctx(), id); err != nil {
			t.Fatalf("get just before expiry: %v", err)
		}
		e.pass(time.Millisecond) // exactly at expires_at the lock is free
	} else {
		e.pass(ttl + e.graceForRealTime())
	}
	if _, err := e.svc.Get(e.ctx(), id); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("get of expired lock: %v, want ErrNotFound", err)
	}
	if _, err := e.svc.Release(e.ctx(), id, "wrong"); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("release of expired lock: %v, want ErrNotFound (no secret needed)", err)
	}
	if _, err := e.svc.Refresh(e.ctx(), id, "a", time.Minute); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("refresh of expired lock: %v, want ErrNotFound", err)
	}
	second := e.acquire(locklock.AcquireRequest{ID: id, Secret: "b", TTL: ttl})
	if second.Token <= first.Token {
		t.Errorf("token after expiry %d, want > %d", second.Token, first.Token)
	}
}

// testNoRevival: the Service reads its clock just before it calls the
// engine, so two operations can reach the engine out of clock order. Once one
// has judged a lock expired, one carrying an earlier reading must not find it
// alive (a refresh would otherwise revive a lock someone saw expire).
func testNoRevival(t *testing.T, h Harness) {
	if h.RealTime {
		t.Skip("the engine judges expiry by its own storage's time, not the given now")
	}
	allow := func(locklock.Lock) error { return nil }
	// A gone lock is ErrNotFound; one kept for its lock-delay a
	// *DelayedError. Neither may come back to life.
	gone := func(err error) bool {
		return errors.Is(err, locklock.ErrNotFound) || errors.Is(err, locklock.ErrDelayed)
	}
	for _, delay := range []time.Duration{0, 30 * time.Second} {
		observers := []string{"Get", "Release", "Refresh", "List", "Sweep"}
		if delay > 0 {
			// Without a lock-delay an acquire takes the lock over:
			// nothing is left to revive.
			observers = append(observers, "TryAcquire")
		}
		for _, observe := range observers {
			t.Run(fmt.Sprintf("after%s/delay%v", observe, delay), func(t *testing.T) {
				e := newEnv(t, h)
				l := e.acquire(locklock.AcquireRequest{ID: e.id("revive"), TTL: 10 * time.Second, LockDelay: delay})
				stale, late := l.AcquiredAt.Add(5*time.Second), l.ExpiresAt.Add(time.Second)
				var err error
				switch observe {
				case "Get":
					_, err = e.engine.Get(e.ctx(), l.ID, late)
				case "Release":
					_, err = e.engine.Release(e.ctx(), l.ID, late, allow)
				case "Refresh":
					_, err = e.engine.Refresh(e.ctx(), l.ID, late, locklock.Change{ExpiresAt: late.Add(time.Hour)}, allow)
				case "List":
					var listed []locklock.Lock
					listed, err = e.engine.List(e.ctx(), locklock.ListQuery{Namespace: l.Namespace, Kind: l.Kind, Limit: 10}, late)
					if err == nil && len(listed) == 0 {
						err = locklock.ErrNotFound
					}
				case "Sweep":
					_, err = e.engine.Sweep(e.ctx(), late)
					if err == nil {
						_, err = e.engine.Get(e.ctx(), l.ID, late)
					}
				case "TryAcquire":
					_, err = e.engine.TryAcquire(e.ctx(), locklock.Lock{ID: l.ID, AcquiredAt: late, ExpiresAt: late.Add(time.Hour)}, late)
				}
				if !gone(err) {
					t.Fatalf("%s after expiry: %v, want ErrNotFound or ErrDelayed", observe, err)
				}
				if got, err := e.engine.Refresh(e.ctx(), l.ID, stale, locklock.Change{ExpiresAt: stale.Add(time.Hour)}, allow); !gone(err) {
					t.Errorf("a refresh judged at an earlier instant revived the lock: %+v, %v", got, err)
				}
				if _, err := e.engine.Release(e.ctx(), l.ID, stale, allow); !gone(err) {
					t.Errorf("a release judged at an earlier instant found the lock: %v", err)
				}
				if got, err := e.engine.Get(e.ctx(), l.ID, stale); !gone(err) {
					t.Errorf("a get judged at an earlier instant found the lock: %+v, %v", got, err)
				}
			})
		}
	}
}

func testSecretRules(t *testing.T, h Harness) {
	cases := []struct {
		name       string
		lockSecret string
		relSecret  string
		want       error
	}{
		{"protected, right secret", "right", "right", nil},
		{"protected, no secret", "right", "", locklock.ErrSecretMismatch},
		{"protected, wrong secret", "right", "wrong", locklock.ErrSecretMismatch},
		{"protected, prefix of secret", "right", "righ", locklock.ErrSecretMismatch},
		{"unprotected, no secret", "", "", nil},
		{"unprotected, any secret", "", "anything", nil},
	}
	e := newEnv(t, h)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := e.id(fmt.Sprintf("secret-%d", i))
			l := e.acquire(locklock.AcquireRequest{ID: id, Secret: c.lockSecret})
			if _, err := e.svc.Refresh(e.ctx(), id, c.relSecret, time.Hour); !errors.Is(err, c.want) {
				t.Errorf("refresh: %v, want %v", err, c.want)
			}
			_, err := e.svc.Release(e.ctx(), id, c.relSecret)
			if !errors.Is(err, c.want) {
				t.Fatalf("release: %v, want %v", err, c.want)
			}
			got, getErr := e.svc.Get(e.ctx(), id)
			if c.want != nil && (getErr != nil || got.Token != l.Token) {
				t.Errorf("a refused release changed the lock: %+v, %v", got, getErr)
			}
			if c.want == nil && !errors.Is(getErr, locklock.ErrNotFound) {
				t.Errorf("after release get = %v, want ErrNotFound", getErr)
			}
		})
	}
}

func testIdempotentReacquire(t *testing.T, h Harness) {
	e := newEnv(t, h)
	id := e.id("retry")
	first := e.acquire(locklock.AcquireRequest{ID: id, Secret: "mine", TTL: time.Hour})
	e.pass(time.Second)
	again, created, err := e.svc.Acquire(e.ctx(), locklock.AcquireRequest{ID: id, Secret: "mine", TTL: 2 * time.Hour})
	if err != nil || created {
		t.Fatalf("re-acquire with the same secret: created=%v err=%v, want an unchanged lock", created, err)
	}
	if !sameGrant(again, first) {
		t.Errorf("re-acquire returned %+v, want the first grant %+v unchanged", again, first)
	}
	// An unprotected lock cannot be "re-acquired": without a secret there is
	// no telling the holder from anyone else.
	free := e.id("retry-unprotected")
	e.acquire(locklock.AcquireRequest{ID: free})
	if _, _, err := e.svc.Acquire(e.ctx(), locklock.AcquireRequest{ID: free}); !errors.Is(err, locklock.ErrHeld) {
		t.Errorf("second acquire of an unprotected lock: %v, want ErrHeld", err)
	}
	if _, _, err := e.svc.Acquire(e.ctx(), locklock.AcquireRequest{ID: free, Secret: "x"}); !errors.Is(err, locklock.ErrHeld) {
		t.Errorf("acquire with a secret of an unprotected lock: %v, want ErrHeld", err)
	}
}

func testRefreshKeepsToken(t *testing.T, h Harness) {
	e := newEnv(t, h)
	id := e.id("refresh")
	ttl := e.shortTTL()
	first := e.acquire(locklock.AcquireRequest{ID: id, Secret: "a", TTL: ttl})
	e.pass(ttl / 2)
	ref, err := e.svc.Refresh(e.ctx(), id, "a", ttl)
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if ref.Token != first.Token || !ref.AcquiredAt.Equal(first.AcquiredAt) {
		t.Errorf("refresh changed token or acquired_at: %+v, first %+v", ref, first)
	}
	if !ref.ExpiresAt.After(first.ExpiresAt) || ref.ExpiresAt.Sub(ref.ObservedAt) != ttl {
		t.Errorf("refreshed expires_at %v (observed %v), want %v after the refresh", ref.ExpiresAt, ref.ObservedAt, ttl)
	}
	// The refreshed lock outlives the first expiry.
	e.pass(ttl/2 + ttl/4)
	got, err := e.svc.Get(e.ctx(), id)
	if err != nil || got.Token != first.Token {
		t.Fatalf("after the original expiry get = %+v, %v; want the refreshed lock", got, err)
	}
	if _, err := e.svc.Refresh(e.ctx(), e.id("none"), "", time.Minute); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("refresh of a missing lock: %v, want ErrNotFound", err)
	}
}

func testGet(t *testing.T, h Harness) {
	e := newEnv(t, h)
	if _, err := e.svc.Get(e.ctx(), e.id("missing")); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("get missing: %v, want ErrNotFound", err)
	}
	uuid := locklock.ID{Namespace: locklock.DefaultNamespace, Kind: locklock.KindUUID, Name: "180da65c-cf80-4997-8574-0c0801817d6f"}
	l := e.acquire(locklock.AcquireRequest{ID: uuid})
	got, err := e.svc.Get(e.ctx(), uuid)
	if err != nil || !sameGrant(got, l) {
		t.Errorf("get uuid lock = %+v, %v; want %+v", got, err, l)
	}
	// A key lock with the same text as a uuid lock is a different lock.
	if _, err := e.svc.Get(e.ctx(), e.id(uuid.Name)); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("key lock named like the uuid lock: %v, want ErrNotFound", err)
	}
}

func testList(t *testing.T, h Harness) {
	e := newEnv(t, h)
	names := []string{"b", "a", "job:2", "job:1", "job:10", "x"}
	for _, n := range names {
		e.acquire(locklock.AcquireRequest{ID: e.id(n)})
	}
	short := e.acquire(locklock.AcquireRequest{ID: e.id("job:3"), TTL: e.shortTTL()})
	other := locklock.ID{Namespace: "other", Kind: locklock.KindKey, Name: "job:0"}
	e.acquire(locklock.AcquireRequest{ID: other})
	uuid := locklock.ID{Namespace: locklock.DefaultNamespace, Kind: locklock.KindUUID, Name: "00000000-0000-4000-8000-000000000000"}
	e.acquire(locklock.AcquireRequest{ID: uuid})

	list := func(prefix, after string, limit int) ([]string, string) {
		t.Helper()
		page, err := e.svc.List(e.ctx(), locklock.ListRequest{
			Namespace: locklock.DefaultNamespace, Kind: locklock.KindKey, Prefix: prefix, After: after, Limit: limit,
		})
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		var got []string
		for _, l := range page.Locks {
			got = append(got, l.Name)
		}
		return got, page.Next
	}
	if got, next := list("", "", 0); !slices.Equal(got, []string{"a", "b", "job:1", "job:10", "job:2", "job:3", "x"}) || next != "" {
		t.Errorf("list all = %v next %q", got, next)
	}
	if got, next := list("job:", "", 2); !slices.Equal(got, []string{"job:1", "job:10"}) || next != "job:10" {
		t.Errorf("first page = %v next %q, want [job:1 job:10] next job:10", got, next)
	}
	if got, next := list("job:", "job:10", 2); !slices.Equal(got, []string{"job:2", "job:3"}) || next != "" {
		t.Errorf("second page = %v next %q, want [job:2 job:3] and no next", got, next)
	}
	e.pass(short.Remaining() + e.graceForRealTime())
	if got, _ := list("job:", "", 0); !slices.Equal(got, []string{"job:1", "job:10", "job:2"}) {
		t.Errorf("after expiry list = %v, want the expired lock gone", got)
	}
	page, err := e.svc.List(e.ctx(), locklock.ListRequest{Namespace: locklock.DefaultNamespace, Kind: locklock.KindUUID})
	if err != nil || len(page.Locks) != 1 || page.Locks[0].ID != uuid {
		t.Errorf("uuid listing = %+v, %v; want just %s", page.Locks, err, uuid)
	}
}

func testNamespaceIsolation(t *testing.T, h Harness) {
	e := newEnv(t, h)
	a := locklock.ID{Namespace: "team-a", Kind: locklock.KindKey, Name: "deploy"}
	b := locklock.ID{Namespace: "team-b", Kind: locklock.KindKey, Name: "deploy"}
	la := e.acquire(locklock.AcquireRequest{ID: a, Secret: "a"})
	lb := e.acquire(locklock.AcquireRequest{ID: b, Secret: "b"}) // same name, other namespace: free
	if la.Token == 0 || lb.Token == 0 {
		t.Fatal("missing tokens")
	}
	if _, err := e.svc.Release(e.ctx(), a, "a"); err != nil {
		t.Fatalf("release in team-a: %v", err)
	}
	if got, err := e.svc.Get(e.ctx(), b); err != nil || got.Token != lb.Token {
		t.Errorf("releasing team-a's lock touched team-b's: %+v, %v", got, err)
	}
	page, err := e.svc.List(e.ctx(), locklock.ListRequest{Namespace: "team-a", Kind: locklock.KindKey})
	if err != nil || len(page.Locks) != 0 {
		t.Errorf("team-a listing = %+v, %v; want empty (team-b's lock is not theirs)", page.Locks, err)
	}
	// Everything team-a can do by name finds nothing of team-b's: not
	// even with team-b's secret.
	if _, err := e.svc.Get(e.ctx(), a); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("team-a get: %v, want ErrNotFound", err)
	}
	if _, err := e.svc.Refresh(e.ctx(), a, "b", time.Hour); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("team-a refresh: %v, want ErrNotFound", err)
	}
	if _, err := e.svc.Release(e.ctx(), a, "b"); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("team-a release: %v, want ErrNotFound", err)
	}
	if got, err := e.svc.Get(e.ctx(), b); err != nil || !sameGrant(got, lb) {
		t.Errorf("team-b's lock after team-a's attempts: %+v, %v", got, err)
	}
	// Same name, same kind, prefix of another namespace's name: a
	// namespace that is a prefix of another must not see its locks.
	c := locklock.ID{Namespace: "team", Kind: locklock.KindKey, Name: "deploy"}
	page, err = e.svc.List(e.ctx(), locklock.ListRequest{Namespace: c.Namespace, Kind: locklock.KindKey})
	if err != nil || len(page.Locks) != 0 {
		t.Errorf("namespace %q lists %+v, %v; want nothing of team-b's", c.Namespace, page.Locks, err)
	}
	if _, err := e.svc.Get(e.ctx(), c); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("namespace %q get: %v, want ErrNotFound", c.Namespace, err)
	}
}

func testSweepCounts(t *testing.T, h Harness) {
	e := newEnv(t, h)
	ttl := e.shortTTL()
	for i := range 5 {
		e.acquire(locklock.AcquireRequest{ID: e.id(fmt.Sprintf("short-%d", i)), TTL: ttl})
	}
	for i := range 3 {
		e.acquire(locklock.AcquireRequest{ID: e.id(fmt.Sprintf("long-%d", i)), TTL: time.Hour})
	}
	refreshed := e.id("short-0")
	if _, err := e.svc.Refresh(e.ctx(), refreshed, "", time.Hour); err != nil {
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
	if !h.RealTime && n != 4 {
		t.Errorf("sweep removed %d, want 4 (5 short minus the refreshed one)", n)
	}
	if n, err := e.svc.Sweep(e.ctx()); err != nil || n != 0 {
		t.Errorf("second sweep = %d, %v; want 0", n, err)
	}
	page, err := e.svc.List(e.ctx(), locklock.ListRequest{Namespace: locklock.DefaultNamespace, Kind: locklock.KindKey})
	if err != nil || len(page.Locks) != 4 {
		t.Errorf("after sweep %d locks (%v), want 4 (3 long + refreshed)", len(page.Locks), err)
	}
	if _, err := e.svc.Get(e.ctx(), refreshed); err != nil {
		t.Errorf("sweep removed the refreshed lock: %v", err)
	}
}

func testTokensIncrease(t *testing.T, h Harness) {
	e := newEnv(t, h)
	id := e.id("tokens")
	other := e.id("tokens-other")
	var last uint64
	for i := range 20 {
		l := e.acquire(locklock.AcquireRequest{ID: id, TTL: e.shortTTL()})
		if l.Token <= last {
			t.Fatalf("round %d: token %d, want > %d", i, l.Token, last)
		}
		last = l.Token
		e.acquire(locklock.AcquireRequest{ID: other}) // interleave another name
		_, _ = e.svc.Release(e.ctx(), other, "")
		if i%5 == 4 && !h.RealTime {
			e.pass(e.shortTTL()) // let it expire instead of releasing it
			continue
		}
		if _, err := e.svc.Release(e.ctx(), id, ""); err != nil {
			t.Fatalf("release: %v", err)
		}
	}
}

// graceForRealTime covers the coarse expiry of engines that keep their own time.
func (e *env) graceForRealTime() time.Duration {
	if e.h.RealTime {
		return realTimeGrace
	}
	return 0
}

// sameGrant compares what an engine stored, ignoring when it was observed.
func sameGrant(a, b locklock.Lock) bool {
	return a.ID == b.ID && a.Token == b.Token && a.Guard == b.Guard &&
		a.AcquiredAt.Equal(b.AcquiredAt) && a.ExpiresAt.Equal(b.ExpiresAt) &&
		a.Holder == b.Holder && maps.Equal(a.Metadata, b.Metadata) && a.LockDelay == b.LockDelay &&
		a.Ended == b.Ended && a.Revoked == b.Revoked
}

// testCountHeld: CountHeld (for the locks-held metric) counts live locks in
// every namespace, and neither released nor expired ones, swept or not.
func testCountHeld(t *testing.T, h Harness) {
	e := newEnv(t, h)
	count := func() int {
		t.Helper()
		n, err := e.engine.CountHeld(e.ctx(), e.now())
		if err != nil {
			t.Fatalf("CountHeld: %v", err)
		}
		return n
	}
	if n := count(); n != 0 {
		t.Fatalf("empty engine counts %d", n)
	}
	ttl := e.shortTTL()
	e.acquire(locklock.AcquireRequest{ID: e.id("short"), TTL: ttl})
	e.acquire(locklock.AcquireRequest{ID: e.id("long-1"), TTL: time.Hour})
	e.acquire(locklock.AcquireRequest{ID: e.id("long-2"), TTL: time.Hour})
	other := locklock.ID{Namespace: "other", Kind: locklock.KindUUID, Name: "180da65c-cf80-4997-8574-0c0801817d6f"}
	e.acquire(locklock.AcquireRequest{ID: other, TTL: time.Hour})
	if n := count(); n != 4 {
		t.Errorf("4 held locks in two namespaces counted as %d", n)
	}
	if _, err := e.svc.Release(e.ctx(), e.id("long-2"), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Refresh(e.ctx(), e.id("long-1"), "", 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 3 {
		t.Errorf("after a release and a refresh: counted %d, want 3", n)
	}
	e.pass(ttl + e.graceForRealTime())
	if n := count(); n != 2 {
		t.Errorf("after the short lock expired (not swept): counted %d, want 2", n)
	}
}
