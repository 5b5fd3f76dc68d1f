package etcd_test

import (
	"errors"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/locklock/locklock/locklock"
)

// TestLockDelayAcrossServers: a lock acquired with a lock-delay through one
// server expires (etcd ends its lease); another server sees the delay, as
// GET's delayed_until and as a *DelayedError for any other secret, straight
// from its engine too; the lost holder's secret reclaims the lock through
// it, with a higher token, and the first server sees the new lock. The
// reclaim replaced the delay record.
func TestLockDelayAcrossServers(t *testing.T) {
	t.Parallel() // on an etcd of its own; most of it is waiting
	servers := newTwoServers(t, false)
	sa, sb := locklock.NewService(servers.a), locklock.NewService(servers.b)
	id := locklock.ID{Namespace: "public", Kind: locklock.KindKey, Name: "delayed"}
	const delay = 6 * time.Second
	lost := mustAcquire(t, sa, locklock.AcquireRequest{ID: id, Secret: "lost", TTL: 2 * time.Second, LockDelay: delay, Holder: "a"})
	until := lost.ExpiresAt.Add(delay)

	waitGone(t, sb, id)
	var nf *locklock.NotFoundError
	if _, err := sb.Get(t.Context(), id); !errors.As(err, &nf) || !nf.DelayedUntil.Equal(until) {
		t.Fatalf("get through B during the delay: %v, want not found with delayed_until %v", err, until)
	}
	for _, secret := range []string{"other", ""} {
		_, _, err := sb.Acquire(t.Context(), locklock.AcquireRequest{ID: id, Secret: secret})
		var delayed *locklock.DelayedError
		if !errors.As(err, &delayed) {
			t.Fatalf("acquire through B with secret %q during the delay: %v, want *DelayedError", secret, err)
		}
		if d := delayed.Lock; !d.DelayedUntil().Equal(until) || d.Token != lost.Token || !d.Ended || d.Revoked || d.Guard != lost.Guard {
			t.Errorf("the delay seen through B %+v does not describe the lost lock %+v", d, lost)
		}
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	_, err := servers.b.TryAcquire(t.Context(), locklock.Lock{ID: id, AcquiredAt: now, ExpiresAt: now.Add(time.Minute)}, now)
	if !errors.Is(err, locklock.ErrDelayed) {
		t.Errorf("B's engine, asked directly during the delay: %v, want ErrDelayed", err)
	}

	back, created, err := sb.Acquire(t.Context(), locklock.AcquireRequest{ID: id, Secret: "lost", TTL: time.Hour, Holder: "back"})
	if err != nil || !created || back.Token <= lost.Token || back.Holder != "back" || back.LockDelay != 0 {
		t.Fatalf("the lost holder's reclaim through B = %+v, created %v, %v; want a new grant with a higher token", back, created, err)
	}
	if time.Now().After(until) {
		t.Fatal("the delay ran out before the reclaim: the test proves nothing (machine too slow?)")
	}
	if got, err := sa.Get(t.Context(), id); err != nil || got.Token != back.Token || got.Holder != "back" {
		t.Errorf("A after the reclaim through B: %+v, %v; want %+v", got, err, back)
	}
	if kvs := get(t, servers.observer, servers.a.Prefix()+"delays/public/key/delayed"); len(kvs) != 0 {
		t.Errorf("the delay record outlived the reclaim of a lock without a lock-delay: %s", kvs[0].Value)
	}
	if _, err := sb.Release(t.Context(), id, "lost"); err != nil {
		t.Fatal(err)
	}
	servers.census.waitNoLeases(t, 10*time.Second)
}

// TestLockDelayFollowsTheLock: through another server, a refresh moves the
// delay with the expiry; a PATCH of the holder leaves lease and expiry
// alone; a release leaves no delay (both records go). At the end every
// lease the locks and their delay records were on is gone from etcd: the
// servers revoke the emptied ones, whoever emptied them.
func TestLockDelayFollowsTheLock(t *testing.T) {
	t.Parallel() // on an etcd of its own; most of it is waiting
	servers := newTwoServers(t, false)
	sa, sb := locklock.NewService(servers.a), locklock.NewService(servers.b)
	moved := locklock.ID{Namespace: "public", Kind: locklock.KindKey, Name: "moved"}
	const delay = 4 * time.Second
	first := mustAcquire(t, sa, locklock.AcquireRequest{ID: moved, Secret: "s", TTL: 2 * time.Second, LockDelay: delay})
	refreshed, err := sb.Refresh(t.Context(), moved, "s", 5*time.Second)
	if err != nil || refreshed.Token != first.Token || !refreshed.ExpiresAt.After(first.ExpiresAt) {
		t.Fatalf("refresh through B = %+v, %v", refreshed, err)
	}
	// Past the window of the lease the refresh joined: a put on a lease
	// from the pool would land on another one.
	time.Sleep(1100 * time.Millisecond)
	lockKey := servers.a.Prefix() + "locks/public/key/moved"
	before := get(t, servers.observer, lockKey)
	holder := "b"
	patched, err := sb.Patch(t.Context(), locklock.PatchRequest{ID: moved, Secret: "s", Holder: &holder})
	if err != nil || patched.Holder != "b" || !patched.ExpiresAt.Equal(refreshed.ExpiresAt) || patched.Token != first.Token {
		t.Fatalf("patch through B = %+v, %v; want holder b, expiry and token kept", patched, err)
	}
	after := get(t, servers.observer, lockKey)
	if len(before) != 1 || len(after) != 1 || after[0].Lease != before[0].Lease || after[0].ModRevision == before[0].ModRevision {
		t.Fatalf("a holder patch moved the lock from lease %x to %x (or did not write it)", before[0].Lease, after[0].Lease)
	}

	waitGone(t, sa, moved)
	_, _, err = sa.Acquire(t.Context(), locklock.AcquireRequest{ID: moved, Secret: "x"})
	var delayed *locklock.DelayedError
	if !errors.As(err, &delayed) || !delayed.Lock.DelayedUntil().Equal(refreshed.ExpiresAt.Add(delay)) {
		t.Fatalf("acquire through A after the refreshed lock expired: %v, want a delay until %v (the refreshed expiry + lock_delay)",
			err, refreshed.ExpiresAt.Add(delay))
	}

	released := locklock.ID{Namespace: "public", Kind: locklock.KindKey, Name: "released"}
	mustAcquire(t, sa, locklock.AcquireRequest{ID: released, Secret: "s", TTL: time.Hour, LockDelay: 30 * time.Second})
	if _, err := sb.Release(t.Context(), released, "s"); err != nil {
		t.Fatal(err)
	}
	if kvs := get(t, servers.observer, servers.a.Prefix()+"delays/public/key/released"); len(kvs) != 0 {
		t.Errorf("a release left the delay record: %s", kvs[0].Value)
	}
	mustAcquire(t, sa, locklock.AcquireRequest{ID: released, Secret: "other", TTL: time.Hour, LockDelay: 30 * time.Second})
	if _, err := sa.Release(t.Context(), released, "other"); err != nil {
		t.Fatal(err)
	}
	// The hour-long locks' leases, and their delay records' leases, were
	// emptied by releases (one through the other server); the moved lock's
	// delay record ends with its lease.
	servers.census.waitNoLeases(t, 15*time.Second)
}

// waitGone waits until etcd has ended the lock's lease: its key is gone.
func waitGone(t *testing.T, s *locklock.Service, id locklock.ID) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := s.Get(t.Context(), id)
		if errors.Is(err, locklock.ErrNotFound) {
			return
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("waiting for %s to expire: %v", id, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func get(t *testing.T, c *clientv3.Client, key string) []*mvccpb.KeyValue {
	t.Helper()
	resp, err := c.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Kvs
}
