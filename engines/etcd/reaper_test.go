package etcd

import (
	"fmt"
	"testing"
	"time"

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
