package etcd

import (
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

// TestRemovalOfUnknownLeaseMarksGap: a removal whose previous value etcd
// could no longer read (compacted before the watch got to it) may have been
// on any lease: the leases granted before it are left to etcd's own count,
// and one that has no keys is revoked although the engine counted one.
func TestRemovalOfUnknownLeaseMarksGap(t *testing.T) {
	client := etcdtest.Client(t, etcdtest.Endpoints(t)...)
	prefix := fmt.Sprintf("/locklock-test/gap-%d/", time.Now().UnixNano())
	p := newLeasePool(client, 5*time.Second, prefix+"locks/", func() int64 { return 0 })
	t.Cleanup(func() { p.close(time.Now().Add(closeGrace)) })
	id, err := p.get(t.Context(), 600)
	if err != nil {
		t.Fatal(err)
	}
	p.settle(id, stepApplied) // counted as one key; none was put
	ttl := func() int64 {
		resp, err := client.TimeToLive(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		return resp.TTL
	}
	time.Sleep(leaseWindow + 500*time.Millisecond)
	if ttl() < 0 {
		t.Fatal("a lease counted with a key was revoked")
	}
	later, err := client.Put(t.Context(), prefix+"locks/x", "")
	if err != nil {
		t.Fatal(err)
	}
	p.count([]*clientv3.Event{{
		Type: mvccpb.DELETE,
		Kv:   &mvccpb.KeyValue{Key: []byte(prefix + "locks/x"), ModRevision: later.Header.Revision + 1},
	}})
	waitUntil(t, "the lease is revoked", func() bool { return ttl() < 0 })
}
