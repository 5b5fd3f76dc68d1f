package etcd_test

import (
	"errors"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
)

// TestRevokeAcrossServers: a lock acquired through one server and revoked
// through the other is announced as `revoked` on the first server's
// namespace stream (its watch tells a revoke from a release by the
// marker); the first server sees the lock-delay as revoked, so the lost
// holder's secret cannot pass it; and once it is over no lease is left
// behind — the delay record's new lease included.
func TestRevokeAcrossServers(t *testing.T) {
	t.Parallel() // on an etcd of its own; most of it is waiting
	servers := newTwoServers(t, false)
	sa, sb := locklock.NewService(servers.a), locklock.NewService(servers.b)
	id := locklock.ID{Namespace: "public", Kind: locklock.KindKey, Name: "forced"}
	const delay = 3 * time.Second
	w, err := sa.Watch(t.Context(), locklock.WatchRequest{Filter: locklock.Filter{Namespace: id.Namespace}, Caller: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	held := mustAcquire(t, sa, locklock.AcquireRequest{ID: id, Secret: "holder", TTL: time.Hour, LockDelay: delay, Holder: "a"})

	got, err := sb.Revoke(t.Context(), id)
	if err != nil || got.Token != held.Token {
		t.Fatalf("revoke through B = %+v, %v; want the held lock", got, err)
	}
	at := got.ObservedAt.Truncate(time.Millisecond)

	var evs []*locklock.Event
	for len(evs) < 2 {
		more, err := w.Next(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, more...)
	}
	if evs[0].Type != locklock.EventAcquired || evs[1].Type != locklock.EventRevoked {
		t.Fatalf("A's stream: %s %s, want acquired, revoked", evs[0].Type, evs[1].Type)
	}
	if r := evs[1].Lock; !r.Revoked || r.Token != held.Token || !r.ExpiresAt.Equal(at) || !r.DelayedUntil().Equal(at.Add(delay)) {
		t.Errorf("A's revoked event carries %+v; want revoked at %v, delayed %v from then", r, at, delay)
	}

	_, _, err = sa.Acquire(t.Context(), locklock.AcquireRequest{ID: id, Secret: "holder"})
	var delayed *locklock.DelayedError
	if !errors.As(err, &delayed) || !delayed.Lock.Revoked || !delayed.Lock.DelayedUntil().Equal(at.Add(delay)) {
		t.Fatalf("the lost holder's acquire through A during the delay: %v, want a revoked lock's *DelayedError until %v", err, at.Add(delay))
	}

	time.Sleep(time.Until(at.Add(delay)) + 50*time.Millisecond)
	next := mustAcquire(t, sa, locklock.AcquireRequest{ID: id, Secret: "holder"})
	if next.Token <= held.Token {
		t.Errorf("token after the delay %d, want > %d", next.Token, held.Token)
	}
	if _, err := sa.Release(t.Context(), id, "holder"); err != nil {
		t.Fatal(err)
	}
	servers.census.waitNoLeases(t, 10*time.Second)
}
