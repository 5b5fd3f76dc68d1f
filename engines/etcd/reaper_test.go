package etcd

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/locklock/locklock/internal/etcdtest"
)

// TestTaintedLeaseIsNeverRevoked: a lease under a step whose outcome is
// unknown (the put may still be applied) stays, even with no key on it yet
// — otherwise the put could land just after the check and its lock end with
// the revocation, long before its expires_at. A lease whose step was
// refused is revoked once its window closes, as the control.
func TestTaintedLeaseIsNeverRevoked(t *testing.T) {
	client := etcdtest.Client(t, etcdtest.Endpoints(t)...)
	prefix := fmt.Sprintf("/locklock-test/taint-%d/", time.Now().UnixNano())
	p := newLeasePool(client, 5*time.Second, prefix+"locks/", func() int64 { return 0 })
	tainted, err := p.get(t.Context(), 600)
	if err != nil {
		t.Fatal(err)
	}
	p.settle(tainted, stepUnknown)
	refused, err := p.get(t.Context(), 601)
	if err != nil {
		t.Fatal(err)
	}
	p.settle(refused, stepNotApplied)

	ttl := func(id clientv3.LeaseID) int64 {
		resp, err := client.TimeToLive(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		return resp.TTL
	}
	waitUntil(t, "the lease whose step was refused is revoked", func() bool { return ttl(refused) < 0 })
	time.Sleep(500 * time.Millisecond) // the reaper has had its chance at the other one too
	if ttl(tainted) < 0 {
		t.Fatal("the lease under a step with an unknown outcome was revoked")
	}
	p.close(time.Now().Add(closeGrace))
	if ttl(tainted) < 0 {
		t.Fatal("the lease under a step with an unknown outcome was revoked at close")
	}
	_, _ = client.Revoke(t.Context(), tainted)
}

// TestCountFollowsKeysFromEvents: the watch asks etcd for no previous
// values; it learns which lease a key was on from the puts it saw. A key's
// delete, or a put that moves it to another lease (a refresh), counts as a
// removal from the lease of its last put if that lease is one of the
// engine's; a put that leaves it on that lease (a PATCH, through any
// server) counts for nothing; keys on other leases count nowhere.
func TestCountFollowsKeysFromEvents(t *testing.T) {
	p, client, key := poolForCounting(t)
	// Each lease keeps a step pending throughout, so that the reaper
	// leaves it alone whatever its count.
	a, b := mustGet(t, p, 600), mustGet(t, p, 601)
	foreign, err := client.Grant(t.Context(), 600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = client.Revoke(context.Background(), foreign.ID) })
	ack(p, a, 3) // keys 1, 2, 3 put on a, acknowledged
	ack(p, b, 1) // key 4 on b

	events := eventStream(key)
	p.count([]*clientv3.Event{events.put("1", a), events.put("2", a), events.put("3", a), events.put("4", b), events.put("f", foreign.ID)})
	wantKeys(t, p, "after the puts", map[clientv3.LeaseID]int{a: 3, b: 1})

	p.count([]*clientv3.Event{events.del("f"), events.put("f", foreign.ID), events.del("never-put")})
	wantKeys(t, p, "after events on keys not on the engine's leases", map[clientv3.LeaseID]int{a: 3, b: 1})

	p.count([]*clientv3.Event{events.del("1")})
	wantKeys(t, p, "after a delete", map[clientv3.LeaseID]int{a: 2, b: 1})

	// A refresh of key 2 onto b: a loses it; b's new key comes with the
	// put's acknowledgement, not from the watch.
	p.count([]*clientv3.Event{events.put("2", b)})
	ack(p, b, 1)
	wantKeys(t, p, "after a refresh onto another lease", map[clientv3.LeaseID]int{a: 1, b: 2})

	// A put of key 3 onto the lease it is on — a PATCH through another
	// server, which has no step on a to settle: no change.
	p.count([]*clientv3.Event{events.put("3", a)})
	wantKeys(t, p, "after a put onto the same lease through another server", map[clientv3.LeaseID]int{a: 1, b: 2})
	// The same through this engine (a refresh that lands on the lease it
	// was on): its step settles as kept, before or after the watch sees it.
	keep(p, a)
	p.count([]*clientv3.Event{events.put("3", a)})
	wantKeys(t, p, "after a put onto the same lease through this engine", map[clientv3.LeaseID]int{a: 1, b: 2})

	// Key 2 moved to a foreign lease, then deleted: one removal from b.
	p.count([]*clientv3.Event{events.put("2", foreign.ID), events.del("2"), events.del("3"), events.del("4")})
	wantKeys(t, p, "after the last removals", map[clientv3.LeaseID]int{a: 0, b: 0})
	p.mu.Lock()
	remembered := len(p.onLease)
	p.mu.Unlock()
	if remembered != 0 {
		t.Errorf("%d keys still remembered after all were removed", remembered)
	}
	p.settle(a, stepNotApplied)
	p.settle(b, stepNotApplied)
}

// TestWatchGapForgetsKeys: when the watch misses events, the keys it
// remembers may have gone in the gap; it forgets them (they would stay
// forever otherwise), and their leases are left to etcd's count.
func TestWatchGapForgetsKeys(t *testing.T) {
	p, _, key := poolForCounting(t)
	a := mustGet(t, p, 600)
	events := eventStream(key)
	p.count([]*clientv3.Event{events.put("1", a)})
	p.mu.Lock()
	p.gapLocked(events.rev + 10)
	remembered, unverified := len(p.onLease), p.all[a].unverified
	p.mu.Unlock()
	if remembered != 0 || !unverified {
		t.Errorf("after a gap: %d keys remembered, lease unverified %v; want none, true", remembered, unverified)
	}
	p.settle(a, stepApplied)
}

// TestOnLeaseBound: beyond maxKeys remembered keys, a lease whose key
// cannot be remembered is left to etcd's count (unverified), since that
// key's removal will not be counted.
func TestOnLeaseBound(t *testing.T) {
	p, _, key := poolForCounting(t)
	p.mu.Lock()
	p.maxKeys = 1
	p.mu.Unlock()
	a, b := mustGet(t, p, 600), mustGet(t, p, 601)
	events := eventStream(key)
	p.count([]*clientv3.Event{events.put("1", a), events.put("2", b)})
	p.mu.Lock()
	remembered, ua, ub := len(p.onLease), p.all[a].unverified, p.all[b].unverified
	p.mu.Unlock()
	if remembered != 1 || ua || !ub {
		t.Errorf("%d keys remembered, unverified a=%v b=%v; want key 1 only, b unverified", remembered, ua, ub)
	}
	p.settle(a, stepApplied)
	p.settle(b, stepApplied)
}

// poolForCounting is a lease pool on a fresh prefix, for counting events
// fed to it by hand (its own watch sees none: nothing is put there).
func poolForCounting(t *testing.T) (*leasePool, *clientv3.Client, func(string) string) {
	client := etcdtest.Client(t, etcdtest.Endpoints(t)...)
	prefix := fmt.Sprintf("/locklock-test/count-%d/", time.Now().UnixNano())
	p := newLeasePool(client, 5*time.Second, prefix+"locks/", func() int64 { return 0 })
	t.Cleanup(func() {
		p.mu.Lock()
		var ids []clientv3.LeaseID
		for id := range p.all {
			ids = append(ids, id)
		}
		p.mu.Unlock()
		p.close(time.Now().Add(closeGrace))
		for _, id := range ids {
			_, _ = client.Revoke(context.Background(), id)
		}
	})
	return p, client, func(name string) string { return prefix + "locks/" + name }
}

// ack counts n steps on lease id that put a key and were acknowledged.
func ack(p *leasePool, id clientv3.LeaseID, n int) {
	for range n {
		p.mu.Lock()
		p.all[id].pending++ // as get does
		p.mu.Unlock()
		p.settle(id, stepApplied)
	}
}

// keep counts a step on lease id that put a key back on it.
func keep(p *leasePool, id clientv3.LeaseID) {
	p.mu.Lock()
	p.all[id].pending++ // as get does
	p.mu.Unlock()
	p.settle(id, stepKept)
}

func mustGet(t *testing.T, p *leasePool, ttl int64) clientv3.LeaseID {
	t.Helper()
	id, err := p.get(t.Context(), ttl)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// events makes watch events at rising revisions.
type events struct {
	key func(string) string
	rev int64
}

func eventStream(key func(string) string) *events { return &events{key: key, rev: 1 << 40} }

func (e *events) put(name string, lease clientv3.LeaseID) *clientv3.Event {
	e.rev++
	return &clientv3.Event{Type: mvccpb.PUT, Kv: &mvccpb.KeyValue{Key: []byte(e.key(name)), ModRevision: e.rev, Lease: int64(lease)}}
}

func (e *events) del(name string) *clientv3.Event {
	e.rev++
	return &clientv3.Event{Type: mvccpb.DELETE, Kv: &mvccpb.KeyValue{Key: []byte(e.key(name)), ModRevision: e.rev}}
}

func wantKeys(t *testing.T, p *leasePool, when string, want map[clientv3.LeaseID]int) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, n := range want {
		switch l := p.all[id]; {
		case l == nil:
			t.Errorf("%s: lease %x is gone", when, id)
		case l.keys != n:
			t.Errorf("%s: lease %x counts %d keys, want %d", when, id, l.keys, n)
		}
	}
}
