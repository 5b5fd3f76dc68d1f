package etcd_test

import (
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/locklock/locklock/conformance"
	"github.com/locklock/locklock/engines/etcd"
	"github.com/locklock/locklock/internal/etcdtest"
	"github.com/locklock/locklock/locklock"
)

// TestLeaderLossMidTraffic: three servers on a three-member etcd cluster
// keep a linearizable history while the etcd leader is stopped in the middle
// of traffic and later restarted. Calls that time out while the cluster
// elects a new leader are recorded as unknown outcomes; every answer given
// as a success must fit the history. After the restart the restarted member
// serves acquisitions again within seconds.
func TestLeaderLossMidTraffic(t *testing.T) {
	if os.Getenv(etcdtest.EnvEndpoints) != "" {
		t.Skip("stops and restarts embedded etcd members; LOCKLOCK_ETCD_ENDPOINTS points at an external etcd")
	}
	members := etcdtest.StartCluster(t, 3)
	var endpoints []string
	for _, m := range members {
		endpoints = append(endpoints, m.ClientURL)
	}
	prefix := fmt.Sprintf("/locklock-test/cluster-%d/", time.Now().UnixNano())
	var svcs []*locklock.Service
	for range 3 {
		engine := etcd.New(etcdtest.Client(t, endpoints...), etcd.WithPrefix(prefix), etcd.WithRequestTimeout(time.Second))
		svcs = append(svcs, locklock.NewService(engine))
	}

	var (
		mu      sync.Mutex
		stopped *etcdtest.Member
		back    = make(chan time.Duration, 1) // restart to first acquire through it
	)
	stopAt, restartAt := conformance.LinearizableRounds/4, conformance.LinearizableRounds/2
	// A new leader restarts every lease's countdown (etcd's lease
	// checkpointing is off by default), so locks may outlive expires_at by
	// up to their whole TTL (at most 3 s in the history).
	conformance.CheckLinearizable(t, svcs, func(round int) {
		mu.Lock()
		defer mu.Unlock()
		switch round {
		case stopAt:
			for _, m := range members {
				if m.IsLeader() {
					stopped = m
				}
			}
			if stopped == nil {
				t.Error("no leader to stop")
				return
			}
			t.Logf("round %d: stopping the leader %s", round, stopped.Name)
			stopped.Stop()
		case restartAt:
			if stopped == nil {
				return
			}
			t.Logf("round %d: restarting %s", round, stopped.Name)
			stopped.Restart(t)
			go probe(t, stopped.ClientURL, prefix, time.Now(), back)
		}
	}, 3*time.Second+2*time.Second)
	select {
	case d := <-back:
		t.Logf("an acquire through the restarted member alone succeeded %v after its restart", d.Round(time.Millisecond))
		if d > 5*time.Second {
			t.Errorf("acquisitions through the restarted member took %v to work again, want a few seconds", d)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no acquire through the restarted member succeeded")
	}
}

// probe acquires through one member alone until it works, and reports how
// long after since that was.
func probe(t *testing.T, endpoint, prefix string, since time.Time, back chan<- time.Duration) {
	svc := locklock.NewService(etcd.New(etcdtest.Client(t, endpoint), etcd.WithPrefix(prefix), etcd.WithRequestTimeout(time.Second)))
	id := locklock.ID{Namespace: "public", Kind: locklock.KindKey, Name: "after-restart"}
	for time.Since(since) < 30*time.Second {
		if _, created, err := svc.Acquire(t.Context(), locklock.AcquireRequest{ID: id, TTL: time.Minute}); err == nil && created {
			back <- time.Since(since)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
