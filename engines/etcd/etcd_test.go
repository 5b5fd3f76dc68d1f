package etcd_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/locklock/locklock/conformance"
	"github.com/locklock/locklock/engines/etcd"
	"github.com/locklock/locklock/internal/etcdtest"
	"github.com/locklock/locklock/locklock"
)

// TestConformance runs the shared suite on one etcd; each sub-test gets its
// own key prefix, so they never see each other's locks.
func TestConformance(t *testing.T) {
	conformance.Run(t, harness(t))
}

// TestSemaphoreConformance runs the shared semaphore suite the same way.
func TestSemaphoreConformance(t *testing.T) {
	conformance.RunSemaphores(t, harness(t))
}

// TestSemaphoreEventsConformance runs the shared suite of slot events the
// same way: the engine reports them from its watch.
func TestSemaphoreEventsConformance(t *testing.T) {
	conformance.RunSemaphoreEvents(t, harness(t))
}

// harness is the etcd engine on one etcd, a new prefix for every engine.
func harness(t *testing.T) conformance.Harness {
	endpoints := etcdtest.Endpoints(t)
	client := etcdtest.Client(t, endpoints...)
	var n atomic.Int64
	return conformance.Harness{
		NewEngine: func(t *testing.T) locklock.Engine {
			return etcd.New(client, etcd.WithPrefix(fmt.Sprintf("/locklock-test/%d-%d/", time.Now().UnixNano(), n.Add(1))))
		},
		Reopen: func(t *testing.T, e locklock.Engine) locklock.Engine {
			_ = e.Close()
			// A new client, as a restarted server would have, on the
			// same prefix.
			return etcd.New(etcdtest.Client(t, endpoints...), etcd.WithPrefix(e.(*etcd.Engine).Prefix()))
		},
		RealTime: true,
		// The sub-tests mostly wait for leases to end: together they
		// take a fraction of the minutes they take one after another.
		Parallel: true,
	}
}

// TestTokensStartFromTheClock: a new cluster or prefix starts its tokens from
// the wall clock (ms × 1024), like the other engines, so that tokens keep
// rising for a deployment that moves to etcd; and they stay exact in float64.
func TestTokensStartFromTheClock(t *testing.T) {
	endpoints := etcdtest.Endpoints(t)
	client := etcdtest.Client(t, endpoints...)
	prefix := fmt.Sprintf("/locklock-test/base-%d/", time.Now().UnixNano())
	floor := uint64(time.Now().UnixMilli()) << 10
	a := locklock.NewService(etcd.New(client, etcd.WithPrefix(prefix)))
	id := locklock.ID{Namespace: "public", Kind: locklock.KindKey, Name: "base"}
	first, _, err := a.Acquire(t.Context(), locklock.AcquireRequest{ID: id})
	if err != nil {
		t.Fatal(err)
	}
	if first.Token < floor || first.Token >= 1<<53 {
		t.Errorf("first token %d, want at least %d (the clock) and below 2^53", first.Token, floor)
	}
	if _, err := a.Release(t.Context(), id, ""); err != nil {
		t.Fatal(err)
	}
	// Another server (engine) on the same prefix uses the same base.
	b := locklock.NewService(etcd.New(etcdtest.Client(t, endpoints...), etcd.WithPrefix(prefix)))
	second, _, err := b.Acquire(t.Context(), locklock.AcquireRequest{ID: id})
	if err != nil || second.Token <= first.Token || second.Token-first.Token > 1000 {
		t.Errorf("second token %d (%v), want just above %d", second.Token, err, first.Token)
	}
	// A replaced cluster (here: a new prefix, a while later) continues above.
	time.Sleep(5 * time.Millisecond)
	c := locklock.NewService(etcd.New(client, etcd.WithPrefix(prefix+"replaced/")))
	third, _, err := c.Acquire(t.Context(), locklock.AcquireRequest{ID: id})
	if err != nil || third.Token <= second.Token {
		t.Errorf("token on a replaced cluster %d (%v), want above %d", third.Token, err, second.Token)
	}
}
