package etcd

import (
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/locklock/locklock/internal/etcdtest"
	"github.com/locklock/locklock/locklock"
)

// TestRewritesInPlaceKeepCounts: a lock with a lock-delay has two keys on
// two of its acquiring engine's leases. A PATCH through another engine
// rewrites the lock on the lease it is on, and a refresh through the
// acquiring engine that lands on the same two leases puts both keys back
// where they were: each lease still counts one key. A release through the
// other engine then empties both. Before, a put onto the lease a key was
// on counted as a removal, which the other engine could not balance: the
// counts fell to zero under live keys.
func TestRewritesInPlaceKeepCounts(t *testing.T) {
	endpoints := etcdtest.Endpoints(t)
	prefix := uniqueTestPrefix("in-place")
	a := New(etcdtest.Client(t, endpoints...), WithPrefix(prefix))
	b := New(etcdtest.Client(t, endpoints...), WithPrefix(prefix))
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	id := locklock.ID{Namespace: "public", Kind: locklock.KindKey, Name: "in-place"}
	now := time.Now().UTC().Truncate(time.Millisecond)
	l, err := a.TryAcquire(t.Context(), locklock.Lock{ID: id, AcquiredAt: now, ExpiresAt: now.Add(time.Hour), LockDelay: time.Minute}, now)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := a.held.get(id)
	lease, delayLease := s.lease, s.delayLease
	if lease == 0 || delayLease == 0 || lease == delayLease {
		t.Fatalf("leases %x and %x: want two", lease, delayLease)
	}
	counts := func(when string, rev int64, want int) {
		t.Helper()
		waitUntil(t, "A's watch sees revision "+when, func() bool {
			a.leases.mu.Lock()
			defer a.leases.mu.Unlock()
			return a.leases.watched >= rev
		})
		a.leases.mu.Lock()
		defer a.leases.mu.Unlock()
		for _, id := range []clientv3.LeaseID{lease, delayLease} {
			switch got := a.leases.all[id]; {
			case got == nil:
				t.Errorf("%s: lease %x is gone", when, id)
			case got.keys != want:
				t.Errorf("%s: lease %x counts %d keys, want %d", when, id, got.keys, want)
			}
		}
	}
	counts("after the acquire", l.Revision, 1)

	holder := "b"
	p, err := b.Refresh(t.Context(), id, now, locklock.Change{Holder: &holder}, func(locklock.Lock) error { return nil })
	if err != nil || p.Holder != "b" {
		t.Fatalf("patch through B: %+v, %v", p, err)
	}
	counts("after a patch through B", p.Revision, 1)

	// Within the leases' window, the same TTLs join the same leases.
	r, err := a.Refresh(t.Context(), id, now, locklock.Change{ExpiresAt: now.Add(time.Hour)}, func(locklock.Lock) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := a.held.get(id); s.lease != lease || s.delayLease != delayLease {
		t.Skipf("the refresh took other leases (%x, %x; the window closed meanwhile?)", s.lease, s.delayLease)
	}
	counts("after a refresh onto the same leases", r.Revision, 1)

	if _, err := b.Release(t.Context(), id, now, func(locklock.Lock) error { return nil }); err != nil {
		t.Fatal(err)
	}
	counts("after the release through B", b.batch.lastWrite.Load(), 0)
}

func uniqueTestPrefix(what string) string {
	return "/locklock-test/" + what + "-" + time.Now().Format("150405.000000000") + "/"
}
