package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/locklock/locklock/conformance"
	"github.com/locklock/locklock/engines/etcd"
	"github.com/locklock/locklock/internal/etcdtest"
	"github.com/locklock/locklock/locklock"
)

// threeServers is three Services, each with its own etcd client and engine
// on one etcd and one prefix: what three locklock servers are. The engines
// count the release watches their waiters set up.
func threeServers(t *testing.T, opts ...locklock.Option) ([]*locklock.Service, []*watchCounter) {
	t.Helper()
	endpoints := etcdtest.Endpoints(t)
	prefix := fmt.Sprintf("/locklock-test/servers-%d/", time.Now().UnixNano())
	var (
		svcs    []*locklock.Service
		engines []*watchCounter
	)
	for range 3 {
		engine := &watchCounter{Engine: etcd.New(etcdtest.Client(t, endpoints...), etcd.WithPrefix(prefix))}
		t.Cleanup(func() { _ = engine.Close() })
		svcs = append(svcs, locklock.NewService(engine, opts...))
		engines = append(engines, engine)
	}
	return svcs, engines
}

// watchCounter is the etcd engine, counting WatchRelease and
// WatchSlotRelease calls, so that a test knows a waiter has seen the lock
// held (or the semaphore full) and is watching it.
type watchCounter struct {
	*etcd.Engine
	watches atomic.Int32
}

func (w *watchCounter) WatchRelease(ctx context.Context, held locklock.Lock) <-chan struct{} {
	w.watches.Add(1)
	return w.Engine.WatchRelease(ctx, held)
}

func (w *watchCounter) WatchSlotRelease(ctx context.Context, full *locklock.FullError) <-chan struct{} {
	w.watches.Add(1)
	return w.Engine.WatchSlotRelease(ctx, full)
}

func (w *watchCounter) waitWatching(t *testing.T, before int32) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for w.watches.Load() <= before {
		if time.Now().After(deadline) {
			t.Fatal("the waiter never watched the lock")
		}
		time.Sleep(time.Millisecond)
	}
}

var deployLock = locklock.ID{Namespace: "public", Kind: locklock.KindKey, Name: "deploy"}

// TestThreeServersOneWinner: 64 racers spread over three servers, round
// after round: one winner each round, and tokens rise across servers.
func TestThreeServersOneWinner(t *testing.T) {
	svcs, _ := threeServers(t)
	conformance.CheckOneWinner(t, svcs, deployLock, 15)
}

// TestThreeServersLinearizable: porcupine over a history recorded through
// all three servers.
func TestThreeServersLinearizable(t *testing.T) {
	svcs, _ := threeServers(t)
	conformance.CheckLinearizable(t, svcs, nil, 0)
}

// TestWaiterWakesAcrossServers: a waiter on one server wakes when the lock
// is released on another, or its lease ends, long before its own poll would
// have looked again — and of several waiters on different servers exactly
// one wins.
func TestWaiterWakesAcrossServers(t *testing.T) {
	const poll = time.Minute // so that only the etcd watch can wake a waiter in time
	svcs, engines := threeServers(t, locklock.WithWaitPoll(poll))
	a, b, c := svcs[0], svcs[1], svcs[2]

	t.Run("release", func(t *testing.T) {
		id := locklock.ID{Namespace: "public", Kind: locklock.KindKey, Name: "wake-on-release"}
		mustAcquire(t, a, locklock.AcquireRequest{ID: id, Secret: "a", TTL: time.Hour})
		watching := engines[1].watches.Load()
		w := startWaiter(t, t.Context(), b, locklock.AcquireRequest{ID: id, Secret: "b", Wait: 30 * time.Second})
		engines[1].waitWatching(t, watching) // it has seen the lock held
		if _, err := a.Release(t.Context(), id, "a"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if r := <-w; r.err != nil || !r.created {
			t.Fatalf("waiter on B: %+v", r)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("waiter on B woke %v after the release on A", d)
		}
	})

	t.Run("expiry", func(t *testing.T) {
		id := locklock.ID{Namespace: "public", Kind: locklock.KindKey, Name: "wake-on-expiry"}
		held := mustAcquire(t, a, locklock.AcquireRequest{ID: id, Secret: "a", TTL: 2 * time.Second})
		w := startWaiter(t, t.Context(), b, locklock.AcquireRequest{ID: id, Secret: "b", Wait: 30 * time.Second})
		r := <-w
		if r.err != nil || !r.created || r.lock.Token <= held.Token {
			t.Fatalf("waiter on B after A's lease ended: %+v", r)
		}
		if d := time.Since(held.AcquiredAt); d > 8*time.Second {
			t.Errorf("waiter on B got the lock %v after a 2s lock was granted", d)
		}
	})

	t.Run("one of several waiters wins", func(t *testing.T) {
		id := locklock.ID{Namespace: "public", Kind: locklock.KindKey, Name: "one-waiter-wins"}
		mustAcquire(t, a, locklock.AcquireRequest{ID: id, Secret: "a", TTL: time.Hour})
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var waiters []<-chan result
		for i, s := range []*locklock.Service{b, c, b, c} {
			waiters = append(waiters, startWaiter(t, ctx, s, locklock.AcquireRequest{ID: id, Secret: fmt.Sprint("w", i), Wait: 30 * time.Second, TTL: time.Hour}))
		}
		if _, err := a.Release(t.Context(), id, "a"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second) // every waiter has had its chance to wake
		cancel()
		winners := 0
		for _, w := range waiters {
			if r := <-w; r.err == nil && r.created {
				winners++
			} else if !errors.Is(r.err, context.Canceled) {
				t.Errorf("waiter: %+v", r)
			}
		}
		if winners != 1 {
			t.Errorf("%d waiters got the lock, want exactly 1", winners)
		}
	})
}

type result struct {
	lock    locklock.Lock
	created bool
	err     error
}

func mustAcquire(t *testing.T, s *locklock.Service, req locklock.AcquireRequest) locklock.Lock {
	t.Helper()
	l, created, err := s.Acquire(t.Context(), req)
	if err != nil || !created {
		t.Fatalf("acquire %s: created=%v err=%v", req.ID, created, err)
	}
	return l
}

// startWaiter starts a waiting acquire and returns once it is queued.
func startWaiter(t *testing.T, ctx context.Context, s *locklock.Service, req locklock.AcquireRequest) <-chan result {
	t.Helper()
	before := s.Waiters()
	out := make(chan result, 1)
	go func() {
		l, created, err := s.Acquire(ctx, req)
		out <- result{l, created, err}
	}()
	for s.Waiters() <= before {
		time.Sleep(time.Millisecond)
	}
	return out
}
