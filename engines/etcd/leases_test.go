package etcd_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/locklock/locklock/engines/etcd"
	"github.com/locklock/locklock/internal/etcdtest"
	"github.com/locklock/locklock/locklock"
)

// TestNoLeaseLeakAcrossServers is what every deployment behind a load
// balancer does: locks with the default TTL (30 days) acquired through one
// server and released, or refreshed and then released, through another —
// ≥ 1,000 cycles over ≥ 20 s, both directions. Ten seconds after the last
// release etcd itself (its lease API, not the engines' bookkeeping) holds
// at most 5 leases, none without keys: a server learns of releases that
// happened elsewhere and revokes the leases they emptied. Meanwhile no lease
// under a live lock was revoked: every release finds its lock, and locks
// still held at the end are there, each on a lease with keys.
//
// It runs in parallel with the package's other tests, since most of its
// time is spent pacing and waiting, on its own etcd member (or the one
// LOCKLOCK_ETCD_ENDPOINTS names, which then must serve no other test at
// the same time: it counts the leases granted while it runs).
func TestNoLeaseLeakAcrossServers(t *testing.T) {
	t.Parallel()
	const (
		minCycles   = 1000
		minDuration = 20 * time.Second
		workers     = 4
		pace        = 70 * time.Millisecond // per worker: ~57 cycles/s in all
		settle      = 10 * time.Second
		maxLeases   = 5
	)
	servers := newTwoServers(t, false)
	svcs := [2]*locklock.Service{locklock.NewService(servers.a), locklock.NewService(servers.b)}

	// Locks held to the end: one stays on the lease it was acquired on,
	// one is moved by a refresh through the other server.
	kept := []locklock.ID{
		{Namespace: "public", Kind: locklock.KindKey, Name: "kept-a"},
		{Namespace: "public", Kind: locklock.KindKey, Name: "kept-b"},
	}
	mustAcquire(t, svcs[0], locklock.AcquireRequest{ID: kept[0], Secret: "k"})
	mustAcquire(t, svcs[0], locklock.AcquireRequest{ID: kept[1], Secret: "k"})
	if _, err := svcs[1].Refresh(t.Context(), kept[1], "k", 0); err != nil {
		t.Fatal(err)
	}

	var (
		cycles    atomic.Int64
		refreshes atomic.Int64
		wg        sync.WaitGroup
		start     = time.Now()
	)
	for w := range workers {
		wg.Go(func() {
			tick := time.NewTicker(pace)
			defer tick.Stop()
			for i := 0; ; i++ {
				if cycles.Load() >= minCycles && time.Since(start) >= minDuration {
					return
				}
				<-tick.C
				id := locklock.ID{Namespace: "public", Kind: locklock.KindKey, Name: fmt.Sprintf("w%d-%d", w, i)}
				if err := crossCycle(t.Context(), svcs, id, w+i, &refreshes); err != nil {
					t.Error(err)
					return
				}
				cycles.Add(1)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("%d cycles (%d with a refresh through the other server) in %v",
		cycles.Load(), refreshes.Load(), time.Since(start).Round(time.Millisecond))
	if refreshes.Load() == 0 || cycles.Load() < minCycles {
		t.Fatal("the run did not exercise both kinds of cycle")
	}

	time.Sleep(settle)
	leases := servers.census.leases(t)
	empty := 0
	for _, l := range leases {
		if l.keys == 0 {
			empty++
		}
	}
	t.Logf("%v after the last release: %d leases in etcd, %d without keys", settle, len(leases), empty)
	if len(leases) > maxLeases || empty > 0 {
		t.Errorf("etcd holds %d leases (%d without keys), want at most %d, none without keys: %+v",
			len(leases), empty, maxLeases, leases[:min(len(leases), 10)])
	}
	for _, id := range kept {
		for _, s := range svcs {
			if _, err := s.Get(t.Context(), id); err != nil {
				t.Errorf("kept lock %s through a server: %v", id, err)
			}
		}
	}
}

// crossCycle acquires id through one server and releases it through the
// other; every other cycle (by n) refreshes it through the other server
// first and releases it through the first. n also picks the direction.
func crossCycle(ctx context.Context, svcs [2]*locklock.Service, id locklock.ID, n int, refreshes *atomic.Int64) error {
	a, b := svcs[n%2], svcs[1-n%2]
	const secret = "s"
	if _, created, err := a.Acquire(ctx, locklock.AcquireRequest{ID: id, Secret: secret}); err != nil || !created {
		return fmt.Errorf("acquire %s: created=%v err=%v", id, created, err)
	}
	releaser := b
	if n/2%2 == 1 {
		if _, err := b.Refresh(ctx, id, secret, 0); err != nil {
			return fmt.Errorf("refresh %s through the other server: %w", id, err)
		}
		refreshes.Add(1)
		releaser = a
	}
	// A lease revoked under the lock would have deleted it: the release
	// would not find it.
	if _, err := releaser.Release(ctx, id, secret); err != nil {
		return fmt.Errorf("release %s: %w", id, err)
	}
	return nil
}

type leaseInfo struct {
	id      clientv3.LeaseID
	ttl     int64
	keys    int
	markers bool // every key on it is a release marker (see events.go)
}

// leaseCensus counts, with etcd's lease API, the leases granted since it
// was taken (those of earlier tests on the same etcd do not count).
type leaseCensus struct {
	client *clientv3.Client
	before map[clientv3.LeaseID]bool
}

func newLeaseCensus(t *testing.T, client *clientv3.Client) *leaseCensus {
	t.Helper()
	resp, err := client.Leases(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	c := &leaseCensus{client: client, before: make(map[clientv3.LeaseID]bool)}
	for _, l := range resp.Leases {
		c.before[l.ID] = true
	}
	return c
}

// leases lists the leases etcd holds that were granted since the census
// was taken, with their remaining TTL and the number of keys attached.
func (c *leaseCensus) leases(t *testing.T) []leaseInfo {
	t.Helper()
	resp, err := c.client.Leases(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []leaseInfo
	for _, l := range resp.Leases {
		if c.before[l.ID] {
			continue
		}
		ttl, err := c.client.TimeToLive(t.Context(), l.ID, clientv3.WithAttachedKeys())
		if err != nil {
			t.Fatalf("time to live of lease %x: %v", l.ID, err)
		}
		if ttl.TTL < 0 {
			continue // ended meanwhile
		}
		markers := len(ttl.Keys) > 0
		for _, k := range ttl.Keys {
			markers = markers && strings.Contains(string(k), "/released/")
		}
		out = append(out, leaseInfo{id: l.ID, ttl: ttl.TTL, keys: len(ttl.Keys), markers: markers})
	}
	return out
}

// waitNoLeases waits up to within for etcd to hold no lease granted since
// the census.
func (c *leaseCensus) waitNoLeases(t *testing.T, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		leases := c.leases(t)
		if len(leases) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v etcd still holds %d leases: %+v", within, len(leases), leases)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// twoServers is two engines with their own clients on one prefix of an etcd
// of the test's own (etcdtest.Endpoints), a client that talks to that etcd
// directly, and a census of its leases. The first engine's client goes
// through proxy, if asked for.
type twoServers struct {
	a, b     *etcd.Engine
	endpoint string
	observer *clientv3.Client
	census   *leaseCensus
	proxy    *etcdtest.Proxy
}

func newTwoServers(t *testing.T, proxied bool) *twoServers {
	t.Helper()
	s := &twoServers{endpoint: etcdtest.Endpoints(t)[0]}
	s.observer = etcdtest.Client(t, s.endpoint)
	s.census = newLeaseCensus(t, s.observer)
	aURL := s.endpoint
	if proxied {
		s.proxy = etcdtest.NewProxy(t, s.endpoint)
		aURL = s.proxy.URL()
	}
	prefix := uniquePrefix("two")
	s.a = etcd.New(etcdtest.Client(t, aURL), etcd.WithPrefix(prefix))
	s.b = etcd.New(etcdtest.Client(t, s.endpoint), etcd.WithPrefix(prefix))
	t.Cleanup(func() { _ = s.a.Close(); _ = s.b.Close() })
	return s
}

func uniquePrefix(what string) string {
	return fmt.Sprintf("/locklock-test/%s-%d/", what, time.Now().UnixNano())
}

// TestLeaseRevokedWhenReleasedElsewhere: the quick form of the leak test. A
// lock acquired through one server and released through the other, or
// refreshed through the other and released through the first, or refreshed
// through the first onto the same lease and released through the other,
// leaves no lease behind within a few seconds — the last lease of a burst
// included, which no later grant replaces.
func TestLeaseRevokedWhenReleasedElsewhere(t *testing.T) {
	t.Parallel() // on an etcd of its own, like the leak test it overlaps with
	servers := newTwoServers(t, false)
	sa, sb := locklock.NewService(servers.a), locklock.NewService(servers.b)
	id := locklock.ID{Namespace: "public", Kind: locklock.KindKey, Name: "elsewhere"}
	mustAcquire(t, sa, locklock.AcquireRequest{ID: id, Secret: "s"})
	if _, err := sb.Release(t.Context(), id, "s"); err != nil {
		t.Fatal(err)
	}
	servers.census.waitNoLeases(t, 5*time.Second)

	mustAcquire(t, sa, locklock.AcquireRequest{ID: id, Secret: "s"})
	if _, err := sb.Refresh(t.Context(), id, "s", 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // A's lease, left by the refresh, is revoked meanwhile
	leases := servers.census.leases(t)
	if len(leases) != 1 || leases[0].keys != 1 {
		t.Fatalf("after a refresh through the other server: %+v, want one lease with one key", leases)
	}
	if _, err := sa.Release(t.Context(), id, "s"); err != nil {
		t.Fatal(err)
	}
	servers.census.waitNoLeases(t, 5*time.Second)

	// A refresh through the acquiring server within the lease's window puts
	// the lock on the same lease again: still one key on it.
	mustAcquire(t, sa, locklock.AcquireRequest{ID: id, Secret: "s"})
	if _, err := sa.Refresh(t.Context(), id, "s", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Release(t.Context(), id, "s"); err != nil {
		t.Fatal(err)
	}
	servers.census.waitNoLeases(t, 5*time.Second)
}

// TestLeaseRevokedAfterWatchGap: while one server is cut off from etcd, its
// lock is released through another and etcd's history is compacted past
// the release, so the server's lease watch can never see it. Back in touch,
// the server learns of the gap (ErrCompacted), has etcd itself check its
// leases, and revokes the one left empty; a lease that still carries a lock
// stays.
//
// The compaction is one write past the release: a watch resumed at exactly
// a compaction revision that is a delete misses that delete without any
// error on etcd servers with etcd-io/etcd#18089 (Debian's 3.4.23 has it);
// the lease then ends with its TTL.
func TestLeaseRevokedAfterWatchGap(t *testing.T) {
	t.Parallel() // on an etcd of its own
	servers := newTwoServers(t, true)
	sa, sb := locklock.NewService(servers.a), locklock.NewService(servers.b)
	gone := locklock.ID{Namespace: "public", Kind: locklock.KindKey, Name: "released-in-the-gap"}
	kept := locklock.ID{Namespace: "public", Kind: locklock.KindKey, Name: "kept"}
	mustAcquire(t, sa, locklock.AcquireRequest{ID: gone, Secret: "s"})
	time.Sleep(1100 * time.Millisecond) // the next lock gets a lease of its own
	mustAcquire(t, sa, locklock.AcquireRequest{ID: kept, Secret: "s", TTL: 24 * time.Hour})

	servers.proxy.Cut()
	if _, err := sb.Release(t.Context(), gone, "s"); err != nil {
		t.Fatal(err)
	}
	resp, err := servers.observer.Put(t.Context(), uniquePrefix("compact-here"), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := servers.observer.Compact(t.Context(), resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	servers.proxy.Restore()

	deadline := time.Now().Add(20 * time.Second)
	for {
		leases := servers.census.leases(t)
		if len(leases) == 1 && leases[0].keys == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the gap etcd holds %+v, want only the kept lock's lease", leases)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := sb.Release(t.Context(), kept, "s"); err != nil {
		t.Errorf("the lock kept through the gap: %v", err)
	}
}

// TestCloseRevokesEmptiedLease: a lease whose only lock was released
// through its own server within its window is revoked — at Close at the
// latest, which stops the engine's watch and reaper before it returns.
// Before, such a lease stayed for its whole TTL.
func TestCloseRevokesEmptiedLease(t *testing.T) {
	servers := newTwoServers(t, false)
	sa := locklock.NewService(servers.a)
	id := locklock.ID{Namespace: "public", Kind: locklock.KindKey, Name: "before-close"}
	mustAcquire(t, sa, locklock.AcquireRequest{ID: id, Secret: "s"})
	if _, err := sa.Release(t.Context(), id, "s"); err != nil {
		t.Fatal(err)
	}
	if err := servers.a.Close(); err != nil {
		t.Fatal(err)
	}
	if names := engineGoroutines(); len(names) > 0 {
		t.Errorf("after Close: %v", names)
	}
	// The release left its marker on a lease of two seconds, which etcd
	// ends (see events.go); the lock's lease is gone at once.
	deadline := time.Now().Add(time.Second)
	for {
		lockLeases := 0
		for _, l := range servers.census.leases(t) {
			if !l.markers {
				lockLeases++
			}
		}
		if lockLeases == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 1s etcd still holds %d leases of locks: %+v", lockLeases, servers.census.leases(t))
		}
		time.Sleep(50 * time.Millisecond)
	}
	servers.census.waitNoLeases(t, 4*time.Second)
}

// TestCloseStopsBatcher: when Close returns, no batch is still being sent.
// Here etcd stops answering the engine; a second acquire waits behind the
// first, is sent when the first gives up, and gives up itself; then Close.
// Before, that batch was sent with a fresh timeout and outlived Close.
func TestCloseStopsBatcher(t *testing.T) {
	proxy := etcdtest.NewProxy(t, etcdtest.Endpoints(t)[0])
	c := etcd.New(etcdtest.Client(t, proxy.URL()), etcd.WithPrefix(uniquePrefix("close-batcher")), etcd.WithRequestTimeout(time.Second))
	sc := locklock.NewService(c)
	id := locklock.ID{Namespace: "public", Kind: locklock.KindKey, Name: "warm-up"}
	mustAcquire(t, sc, locklock.AcquireRequest{ID: id, Secret: "s", TTL: time.Minute}) // lease granted, connection up
	proxy.Freeze()
	t.Cleanup(proxy.Thaw)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			other := locklock.ID{Namespace: "public", Kind: locklock.KindKey, Name: fmt.Sprint("frozen-", i)}
			_, _, _ = sc.Acquire(t.Context(), locklock.AcquireRequest{ID: other, Secret: "s"})
		})
		time.Sleep(100 * time.Millisecond)
	}
	wg.Wait() // both timed out
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if names := engineGoroutines(); len(names) > 0 {
		t.Errorf("after Close with etcd not answering: %v", names)
	}
}

// engineGoroutines lists the batcher and lease goroutines running now. It
// looks a few times over 300 ms, as those of engines of earlier tests that
// were never closed stop when their clients close, a moment later. (Tests
// that call it must not run in parallel with others.)
func engineGoroutines() []string {
	var found []string
	for range 6 {
		found = found[:0]
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			for _, fn := range []string{"etcd.(*batcher).run", "etcd.(*leasePool).watchKeys", "etcd.(*leasePool).reap"} {
				if strings.Contains(g, "/engines/"+fn) {
					found = append(found, fn)
				}
			}
		}
		if len(found) == 0 {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return found
}
