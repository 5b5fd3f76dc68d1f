package metrics_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/locklock/locklock/engines/memory"
	"github.com/locklock/locklock/internal/metrics"
	"github.com/locklock/locklock/locklock"
)

var t0 = time.Date(2026, 11, 26, 15, 4, 5, 0, time.UTC)

// gather returns the registry's families by name.
func gather(t *testing.T, m *metrics.Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

// value is the sum of a family's samples whose labels include want.
func value(t *testing.T, m *metrics.Metrics, name string, want map[string]string) float64 {
	t.Helper()
	f, ok := gather(t, m)[name]
	if !ok {
		return 0
	}
	var sum float64
samples:
	for _, s := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range s.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue samples
			}
		}
		switch {
		case s.Counter != nil:
			sum += s.Counter.GetValue()
		case s.Gauge != nil:
			sum += s.Gauge.GetValue()
		case s.Histogram != nil:
			sum += float64(s.Histogram.GetSampleCount())
		}
	}
	return sum
}

func newService(t *testing.T, m *metrics.Metrics) (*locklock.Service, locklock.Engine, *locklock.ManualClock) {
	t.Helper()
	raw := memory.New()
	t.Cleanup(func() { _ = raw.Close() })
	engine := m.Engine(raw)
	clock := locklock.NewManualClock(t0)
	svc := locklock.NewService(engine, locklock.WithClock(clock), locklock.WithAcquireObserver(m.AcquireDone))
	return svc, engine, clock
}

func id(name string) locklock.ID {
	return locklock.ID{Namespace: locklock.DefaultNamespace, Kind: locklock.KindKey, Name: name}
}

// TestEngineAndAcquireMetrics: engine operations are timed by result, and
// acquire outcomes counted, through a real Service.
func TestEngineAndAcquireMetrics(t *testing.T) {
	m := metrics.New()
	svc, _, clock := newService(t, m)
	ctx := t.Context()
	if _, _, err := svc.Acquire(ctx, locklock.AcquireRequest{ID: id("a"), Secret: "s", TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.Acquire(ctx, locklock.AcquireRequest{ID: id("a"), Secret: "s"}); err != nil {
		t.Fatal(err) // the holder's retry
	}
	if _, _, err := svc.Acquire(ctx, locklock.AcquireRequest{ID: id("a")}); !errors.Is(err, locklock.ErrHeld) {
		t.Fatalf("third acquire: %v", err)
	}
	if _, _, err := svc.Acquire(ctx, locklock.AcquireRequest{ID: id("bad/name")}); err == nil {
		t.Fatal("bad name accepted")
	}
	if _, err := svc.Release(ctx, id("nope"), ""); !errors.Is(err, locklock.ErrNotFound) {
		t.Fatal(err)
	}
	if _, _, err := svc.Acquire(ctx, locklock.AcquireRequest{ID: id("short"), TTL: time.Second}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Second)
	if n, err := svc.Sweep(ctx); err != nil || n != 1 {
		t.Fatalf("sweep: %d, %v", n, err)
	}

	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"locklock_acquires_total", map[string]string{"outcome": "granted"}, 2},
		{"locklock_acquires_total", map[string]string{"outcome": "reacquired"}, 1},
		{"locklock_acquires_total", map[string]string{"outcome": "held"}, 1},
		{"locklock_acquires_total", map[string]string{"outcome": "invalid"}, 1},
		{"locklock_acquires_total", map[string]string{"outcome": "failed"}, 0},
		{"locklock_acquires_total", map[string]string{"outcome": "canceled"}, 0},
		{"locklock_acquires_total", map[string]string{"outcome": "waited"}, 0},
		{"locklock_engine_operation_duration_seconds", map[string]string{"op": "try_acquire", "result": "ok"}, 2},
		{"locklock_engine_operation_duration_seconds", map[string]string{"op": "try_acquire", "result": "refused"}, 2},
		{"locklock_engine_operation_duration_seconds", map[string]string{"op": "release", "result": "refused"}, 1},
		{"locklock_engine_operation_duration_seconds", map[string]string{"op": "sweep", "result": "ok"}, 1},
		{"locklock_sweeps_total", map[string]string{"result": "ok"}, 1},
		{"locklock_swept_locks_total", nil, 1},
	} {
		if got := value(t, m, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

// TestWaitOutcomes: a wait that ends with the lock is "waited", one that
// ends without it "timed_out"; the waiters gauge shows the waiter meanwhile.
func TestWaitOutcomes(t *testing.T) {
	m := metrics.New()
	raw := memory.New()
	t.Cleanup(func() { _ = raw.Close() })
	svc := locklock.NewService(m.Engine(raw), locklock.WithAcquireObserver(m.AcquireDone))
	m.WatchService(svc)
	ctx := t.Context()
	if _, _, err := svc.Acquire(ctx, locklock.AcquireRequest{ID: id("w"), TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := svc.Acquire(ctx, locklock.AcquireRequest{ID: id("w"), Wait: 5 * time.Second})
		done <- err
	}()
	for svc.Waiters() == 0 {
		time.Sleep(time.Millisecond)
	}
	if got := value(t, m, "locklock_waiters", nil); got != 1 {
		t.Errorf("waiters gauge %v with one waiter", got)
	}
	if _, err := svc.Release(ctx, id("w"), ""); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("waiter: %v", err)
	}
	if _, _, err := svc.Acquire(ctx, locklock.AcquireRequest{ID: id("w"), Wait: time.Second}); !errors.Is(err, locklock.ErrHeld) {
		t.Fatalf("second waiter: %v, want held after its wait", err)
	}
	if got := value(t, m, "locklock_acquires_total", map[string]string{"outcome": "waited"}); got != 1 {
		t.Errorf("waited = %v, want 1", got)
	}
	if got := value(t, m, "locklock_acquires_total", map[string]string{"outcome": "timed_out"}); got != 1 {
		t.Errorf("timed_out = %v, want 1", got)
	}
	if got := value(t, m, "locklock_waiters", nil); got != 0 {
		t.Errorf("waiters gauge %v after the waits", got)
	}
}

// TestQueuedWaiterCountsAsWaited: a waiter that queued behind another and
// won on its first try as head of the queue waited, and is counted so.
func TestQueuedWaiterCountsAsWaited(t *testing.T) {
	m := metrics.New()
	raw := memory.New()
	t.Cleanup(func() { _ = raw.Close() })
	svc := locklock.NewService(m.Engine(raw), locklock.WithAcquireObserver(m.AcquireDone))
	ctx := t.Context()
	if _, _, err := svc.Acquire(ctx, locklock.AcquireRequest{ID: id("q"), TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 2)
	for i := 1; i <= 2; i++ {
		go func() {
			_, _, err := svc.Acquire(ctx, locklock.AcquireRequest{ID: id("q"), TTL: time.Minute, Wait: 30 * time.Second})
			got <- err
		}()
		for svc.Waiters() < i { // the second queues behind the first
			time.Sleep(time.Millisecond)
		}
	}
	for range 2 {
		if _, err := svc.Release(ctx, id("q"), ""); err != nil {
			t.Fatal(err)
		}
		if err := <-got; err != nil {
			t.Fatalf("waiter: %v", err)
		}
	}
	if v := value(t, m, "locklock_acquires_total", map[string]string{"outcome": "waited"}); v != 2 {
		t.Errorf("waited = %v, want 2 (both waiters waited)", v)
	}
	if v := value(t, m, "locklock_acquires_total", map[string]string{"outcome": "granted"}); v != 1 {
		t.Errorf("granted = %v, want 1 (only the first acquire got the lock at once)", v)
	}
}

// TestHangUpsCountAsCanceled: long-poll waiters whose clients go away are
// "canceled", not "failed" — an alert on failures must not page for them.
func TestHangUpsCountAsCanceled(t *testing.T) {
	const waiters = 1000
	m := metrics.New()
	raw := memory.New()
	t.Cleanup(func() { _ = raw.Close() })
	svc := locklock.NewService(m.Engine(raw), locklock.WithAcquireObserver(m.AcquireDone))
	if _, _, err := svc.Acquire(t.Context(), locklock.AcquireRequest{ID: id("h"), TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	ctx, hangUp := context.WithCancel(t.Context())
	errs := make(chan error, waiters)
	for range waiters {
		go func() {
			_, _, err := svc.Acquire(ctx, locklock.AcquireRequest{ID: id("h"), Wait: time.Minute})
			errs <- err
		}()
	}
	for svc.Waiters() < waiters {
		time.Sleep(time.Millisecond)
	}
	hangUp()
	for range waiters {
		if err := <-errs; !errors.Is(err, context.Canceled) {
			t.Fatalf("waiter ended with %v, want context.Canceled", err)
		}
	}
	if v := value(t, m, "locklock_acquires_total", map[string]string{"outcome": "canceled"}); v != waiters {
		t.Errorf("canceled = %v, want %d", v, waiters)
	}
	if v := value(t, m, "locklock_acquires_total", map[string]string{"outcome": "failed"}); v != 0 {
		t.Errorf("failed = %v, want 0: clients going away are not the server's failures", v)
	}
}

// TestLocksHeld counts live locks at scrape time, at most every maxAge.
func TestLocksHeld(t *testing.T) {
	m := metrics.New()
	svc, engine, clock := newService(t, m)
	m.WatchLocks(engine, clock.Now, time.Hour, time.Second)
	for _, name := range []string{"x", "y", "z"} {
		if _, _, err := svc.Acquire(t.Context(), locklock.AcquireRequest{ID: id(name), TTL: time.Minute}); err != nil {
			t.Fatal(err)
		}
	}
	if got := value(t, m, "locklock_locks_held", nil); got != 3 {
		t.Errorf("locks_held = %v, want 3", got)
	}
	if _, err := svc.Release(t.Context(), id("x"), ""); err != nil {
		t.Fatal(err)
	}
	if got := value(t, m, "locklock_locks_held", nil); got != 3 {
		t.Errorf("locks_held = %v within maxAge, want the cached 3", got)
	}

	fresh := metrics.New()
	fresh.WatchLocks(engine, clock.Now, 0, time.Second)
	if got := value(t, fresh, "locklock_locks_held", nil); got != 2 {
		t.Errorf("locks_held = %v after a release, want 2", got)
	}
	clock.Advance(2 * time.Minute)
	if got := value(t, fresh, "locklock_locks_held", nil); got != 0 {
		t.Errorf("locks_held = %v after expiry, want 0", got)
	}
}

// TestEngineWrapperKeepsAbilities: the wrapper claims exactly the optional
// abilities of the engine it wraps: the memory engine reports events (so a
// Service over the wrapper serves streams) but does not watch releases.
func TestEngineWrapperKeepsAbilities(t *testing.T) {
	m := metrics.New()
	e := m.Engine(memory.New())
	defer e.Close()
	if _, ok := e.(locklock.ReleaseWatcher); ok {
		t.Error("wrapped memory engine claims locklock.ReleaseWatcher")
	}
	if _, ok := e.(locklock.EventSource); !ok {
		t.Fatal("wrapped memory engine hides locklock.EventSource")
	}
	svc := locklock.NewService(e)
	id := locklock.ID{Namespace: "public", Kind: locklock.KindKey, Name: "x"}
	w, err := svc.Watch(t.Context(), locklock.WatchRequest{Filter: locklock.Filter{ID: &id}})
	if err != nil {
		t.Fatalf("watch through the wrapper: %v", err)
	}
	defer w.Close()
	if _, _, err := svc.Acquire(t.Context(), locklock.AcquireRequest{ID: id}); err != nil {
		t.Fatal(err)
	}
	evs, err := w.Next(t.Context())
	if err != nil || len(evs) != 1 || evs[0].Type != locklock.EventAcquired {
		t.Fatalf("events through the wrapper: %v, %v", evs, err)
	}
}

// TestRequestsAndScrape: requests are counted by route, method and code,
// odd methods fold into "other", 429s count as rate limited by caller
// kind, and the text format carries the runtime and process collectors
// but no lock name.
func TestRequestsAndScrape(t *testing.T) {
	m := metrics.New()
	m.ObserveRequest("/v1/api/lock/uuid/{uuid}", http.MethodPost, 201, time.Millisecond, true)
	m.ObserveRequest("/v1/api/lock/uuid/{uuid}", http.MethodPost, 429, time.Millisecond, true)
	m.ObserveRequest("/v1/api/lock/key/{name}", http.MethodPost, 429, time.Millisecond, false)
	m.ObserveRequest("unmatched", "BREW", 405, time.Millisecond, true)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"locklock_http_requests_total", map[string]string{"route": "/v1/api/lock/uuid/{uuid}", "method": "POST", "code": "201"}, 1},
		{"locklock_http_requests_total", map[string]string{"method": "other", "code": "405"}, 1},
		{"locklock_http_request_duration_seconds", map[string]string{"method": "POST"}, 3},
		{"locklock_rate_limited_total", map[string]string{"caller": "anonymous"}, 1},
		{"locklock_rate_limited_total", map[string]string{"caller": "key"}, 1},
	} {
		if got := value(t, m, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}

	svc, _, _ := newService(t, m)
	if _, _, err := svc.Acquire(t.Context(), locklock.AcquireRequest{ID: id("secret-project-name"), Secret: "hunter2"}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	for _, want := range []string{"go_goroutines", "process_cpu_seconds_total", "locklock_acquires_total{outcome=\"granted\"} 1"} {
		if !strings.Contains(text, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	for _, leak := range []string{"secret-project-name", "hunter2"} {
		if strings.Contains(text, leak) {
			t.Errorf("scrape contains %q", leak)
		}
	}
}
