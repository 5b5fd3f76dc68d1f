package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/locklock/locklock/engines/etcd"
	"github.com/locklock/locklock/engines/memory"
	"github.com/locklock/locklock/internal/etcdtest"
	"github.com/locklock/locklock/internal/metrics"
	"github.com/locklock/locklock/locklock"
)

// TestSemaphoreMetrics: every outcome of a slot acquire is counted, slot
// releases are counted, and slot operations are timed by op and result
// (a slot that does not fit is "refused", not an error).
func TestSemaphoreMetrics(t *testing.T) {
	m := metrics.New()
	raw := memory.New()
	t.Cleanup(func() { _ = raw.Close() })
	clock := locklock.NewManualClock(t0)
	svc := locklock.NewService(m.Engine(raw), locklock.WithClock(clock), locklock.WithSlotObserver(m.SlotDone), locklock.WithMaxWait(time.Minute))
	ctx := t.Context()
	acquire := func(req locklock.SlotRequest) (locklock.Slot, error) {
		t.Helper()
		req.ID = id("pool")
		sl, _, err := svc.AcquireSlot(ctx, req)
		return sl, err
	}
	first, err := acquire(locklock.SlotRequest{Limit: 2, Secret: "s", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := acquire(locklock.SlotRequest{Limit: 2, Secret: "s"}); err != nil {
		t.Fatal(err) // the holder's retry
	}
	if _, err := acquire(locklock.SlotRequest{Limit: 2, Weight: 2}); !errors.Is(err, locklock.ErrSemaphoreFull) {
		t.Fatalf("too heavy: %v", err)
	}
	if _, err := acquire(locklock.SlotRequest{Limit: 3}); !errors.Is(err, locklock.ErrLimitMismatch) {
		t.Fatalf("another limit: %v", err)
	}
	if _, err := acquire(locklock.SlotRequest{Limit: 0}); !errors.Is(err, locklock.ErrInvalidArgument) {
		t.Fatalf("limit 0: %v", err)
	}
	// A waiter gets the room the holder's release makes.
	got := make(chan error, 1)
	go func() {
		_, err := acquire(locklock.SlotRequest{Limit: 2, Weight: 2, Wait: 30 * time.Second})
		got <- err
	}()
	for svc.Waiters() == 0 {
		time.Sleep(time.Millisecond)
	}
	if _, err := svc.ReleaseSlot(ctx, id("pool"), first.ID, "s"); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("waiter: %v", err)
	}
	// One that waits in vain.
	go func() {
		_, err := acquire(locklock.SlotRequest{Limit: 2, Wait: 5 * time.Second})
		got <- err
	}()
	for svc.Waiters() == 0 {
		time.Sleep(time.Millisecond)
	}
	clock.Advance(5 * time.Second)
	if err := <-got; !errors.Is(err, locklock.ErrSemaphoreFull) {
		t.Fatalf("waiter in vain: %v", err)
	}
	if _, err := svc.ReleaseSlot(ctx, id("pool"), "Wq3x9Zt0Rr6uKp1LmN2b4A", ""); !errors.Is(err, locklock.ErrSlotNotFound) {
		t.Fatal(err)
	}
	if _, err := svc.GetSemaphore(ctx, locklock.SemaphoreRequest{ID: id("none")}); !errors.Is(err, locklock.ErrSemaphoreNotFound) {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"locklock_semaphore_acquires_total", map[string]string{"outcome": "granted"}, 1},
		{"locklock_semaphore_acquires_total", map[string]string{"outcome": "reacquired"}, 1},
		{"locklock_semaphore_acquires_total", map[string]string{"outcome": "full"}, 1},
		{"locklock_semaphore_acquires_total", map[string]string{"outcome": "limit_mismatch"}, 1},
		{"locklock_semaphore_acquires_total", map[string]string{"outcome": "invalid"}, 1},
		{"locklock_semaphore_acquires_total", map[string]string{"outcome": "waited"}, 1},
		{"locklock_semaphore_acquires_total", map[string]string{"outcome": "timed_out"}, 1},
		{"locklock_semaphore_acquires_total", map[string]string{"outcome": "failed"}, 0},
		{"locklock_semaphore_releases_total", nil, 1},
		{"locklock_acquires_total", nil, 0}, // locks are counted apart
		{"locklock_engine_operation_duration_seconds", map[string]string{"op": "try_acquire_slot", "result": "ok"}, 3},
		{"locklock_engine_operation_duration_seconds", map[string]string{"op": "release_slot", "result": "ok"}, 1},
		{"locklock_engine_operation_duration_seconds", map[string]string{"op": "release_slot", "result": "refused"}, 1},
		{"locklock_engine_operation_duration_seconds", map[string]string{"op": "get_semaphore", "result": "refused"}, 1},
		{"locklock_engine_operation_duration_seconds", map[string]string{"op": "try_acquire_slot", "result": "error"}, 0},
	} {
		if got := value(t, m, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if v := value(t, m, "locklock_engine_operation_duration_seconds", map[string]string{"op": "try_acquire_slot", "result": "refused"}); v < 2 {
		t.Errorf("refused slot acquires timed %v times, want at least 2", v)
	}
}

// TestEngineWrapperKeepsSemaphores: a Service over the wrapped memory
// engine serves semaphores.
func TestEngineWrapperKeepsSemaphores(t *testing.T) {
	e := metrics.New().Engine(memory.New())
	defer e.Close()
	if _, ok := e.(locklock.SemaphoreEngine); !ok {
		t.Fatal("wrapped memory engine hides locklock.SemaphoreEngine")
	}
	svc := locklock.NewService(e)
	if _, _, err := svc.AcquireSlot(t.Context(), locklock.SlotRequest{ID: id("s"), Limit: 1}); err != nil {
		t.Fatalf("a slot through the wrapper: %v", err)
	}
}

// TestEngineWrapperKeepsEtcdAbilities: the etcd engine watches releases,
// reports events and reads them back from etcd's history; wrapped, it
// still does all three (and stores semaphores once it implements them). A
// server started after an event resumes a stream from before it, which
// only etcd's history can give it.
func TestEngineWrapperKeepsEtcdAbilities(t *testing.T) {
	endpoints := etcdtest.Endpoints(t)
	prefix := fmt.Sprintf("/locklock-metrics-test/%d/", time.Now().UnixNano())
	server := func() (locklock.Engine, locklock.Engine) {
		raw := etcd.New(etcdtest.Client(t, endpoints...), etcd.WithPrefix(prefix))
		e := metrics.New().Engine(raw)
		t.Cleanup(func() { _ = e.Close() })
		return raw, e
	}
	raw, e := server()
	for name, has := range map[string][2]bool{
		"ReleaseWatcher":  {is[locklock.ReleaseWatcher](raw), is[locklock.ReleaseWatcher](e)},
		"EventSource":     {is[locklock.EventSource](raw), is[locklock.EventSource](e)},
		"EventHistory":    {is[locklock.EventHistory](raw), is[locklock.EventHistory](e)},
		"SemaphoreEngine": {is[locklock.SemaphoreEngine](raw), is[locklock.SemaphoreEngine](e)},
	} {
		if has[0] != has[1] {
			t.Errorf("etcd engine %v %s, wrapped %v", has[0], name, has[1])
		}
	}
	if !is[locklock.EventHistory](raw) || !is[locklock.ReleaseWatcher](raw) {
		t.Fatal("the etcd engine no longer has the abilities this test is about")
	}

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	first := locklock.NewService(e)
	w, err := first.Watch(ctx, locklock.WatchRequest{Filter: locklock.Filter{Namespace: locklock.DefaultNamespace}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	from := w.At.String()
	if _, _, err := first.Acquire(ctx, locklock.AcquireRequest{ID: id("h")}); err != nil {
		t.Fatal(err)
	}
	if evs, err := w.Next(ctx); err != nil || len(evs) == 0 {
		t.Fatalf("the first server's stream: %v, %v", evs, err)
	}
	_, e2 := server()
	second := locklock.NewService(e2)
	resumed, err := second.Watch(ctx, locklock.WatchRequest{Filter: locklock.Filter{Namespace: locklock.DefaultNamespace}, From: from})
	if err != nil {
		t.Fatal(err)
	}
	defer resumed.Close()
	if !resumed.Resumed || resumed.Reset {
		t.Fatalf("a server over the wrapped engine could not resume from %s (resumed %v, reset %v)", from, resumed.Resumed, resumed.Reset)
	}
	if evs, err := resumed.Next(ctx); err != nil || len(evs) == 0 || evs[0].Type != locklock.EventAcquired || evs[0].Lock.Name != "h" {
		t.Fatalf("resumed stream: %v, %v", evs, err)
	}
}

func is[T any](v any) bool {
	_, ok := v.(T)
	return ok
}
