package metrics

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/locklock/locklock/locklock"
)

// Engine wraps e so that every operation's latency is observed, and sweeps
// are counted (CountHeld, the metric's own scrape, is passed through
// unobserved). The wrapper keeps e's optional abilities (ReleaseWatcher,
// EventSource), so the Service behaves exactly as with e itself.
func (m *Metrics) Engine(e locklock.Engine) locklock.Engine {
	in := &instrumented{Engine: e, m: m}
	w, watches := e.(locklock.ReleaseWatcher)
	src, reports := e.(locklock.EventSource)
	switch {
	case watches && reports:
		return struct {
			*instrumented
			locklock.ReleaseWatcher
			eventSource
		}{in, w, eventSource{src}}
	case watches:
		return struct {
			*instrumented
			locklock.ReleaseWatcher
		}{in, w}
	case reports:
		return struct {
			*instrumented
			eventSource
		}{in, eventSource{src}}
	}
	return in
}

// eventSource passes an engine's events through, and its EventGate when it
// has one (SetEventGate does nothing otherwise).
type eventSource struct{ locklock.EventSource }

func (s eventSource) SetEventGate(quiet func() bool, skip func(n int)) {
	if g, ok := s.EventSource.(locklock.EventGate); ok {
		g.SetEventGate(quiet, skip)
	}
}

type instrumented struct {
	locklock.Engine
	m *Metrics
}

func (e *instrumented) observe(op string, start time.Time, err error) {
	e.m.engineOps.WithLabelValues(op, result(err)).Observe(time.Since(start).Seconds())
}

// result sorts an engine error: refusals are answers, not failures.
func result(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, locklock.ErrHeld), errors.Is(err, locklock.ErrDelayed), errors.Is(err, locklock.ErrNotFound), errors.Is(err, locklock.ErrSecretMismatch):
		return "refused"
	}
	return "error"
}

func (e *instrumented) TryAcquire(ctx context.Context, l locklock.Lock, now time.Time) (locklock.Lock, error) {
	start := time.Now()
	got, err := e.Engine.TryAcquire(ctx, l, now)
	e.observe("try_acquire", start, err)
	return got, err
}

func (e *instrumented) Get(ctx context.Context, id locklock.ID, now time.Time) (locklock.Lock, error) {
	start := time.Now()
	l, err := e.Engine.Get(ctx, id, now)
	e.observe("get", start, err)
	return l, err
}

func (e *instrumented) Release(ctx context.Context, id locklock.ID, now time.Time, allow func(locklock.Lock) error) (locklock.Lock, error) {
	start := time.Now()
	l, err := e.Engine.Release(ctx, id, now, allow)
	e.observe("release", start, err)
	return l, err
}

func (e *instrumented) Refresh(ctx context.Context, id locklock.ID, now time.Time, ch locklock.Change, allow func(locklock.Lock) error) (locklock.Lock, error) {
	start := time.Now()
	l, err := e.Engine.Refresh(ctx, id, now, ch, allow)
	e.observe("refresh", start, err)
	return l, err
}

func (e *instrumented) List(ctx context.Context, q locklock.ListQuery, now time.Time) ([]locklock.Lock, error) {
	start := time.Now()
	ls, err := e.Engine.List(ctx, q, now)
	e.observe("list", start, err)
	return ls, err
}

func (e *instrumented) Sweep(ctx context.Context, now time.Time) (int, error) {
	start := time.Now()
	n, err := e.Engine.Sweep(ctx, now)
	e.observe("sweep", start, err)
	e.m.sweeps.WithLabelValues(result(err)).Inc()
	e.m.swept.Add(float64(n))
	return n, err
}

func (e *instrumented) Ping(ctx context.Context) error {
	start := time.Now()
	err := e.Engine.Ping(ctx)
	e.observe("ping", start, err)
	return err
}

// WatchLocks reports the number of held locks at each scrape, counted by
// the engine (Engine.CountHeld). Counting may scan storage, so a count is
// reused for maxAge, and a scrape waits at most timeout for a new one; a
// failed count is left out of the scrape rather than reported as zero.
func (m *Metrics) WatchLocks(e locklock.Engine, now func() time.Time, maxAge, timeout time.Duration) {
	m.reg.MustRegister(&heldCollector{
		desc:   prometheus.NewDesc("locklock_locks_held", "Locks held (not expired), counted at most every few seconds.", nil, nil),
		engine: e, now: now, maxAge: maxAge, timeout: timeout,
	})
}

type heldCollector struct {
	desc    *prometheus.Desc
	engine  locklock.Engine
	now     func() time.Time
	maxAge  time.Duration
	timeout time.Duration

	mu      sync.Mutex
	counted time.Time
	n       int
}

func (h *heldCollector) Describe(ch chan<- *prometheus.Desc) { ch <- h.desc }

func (h *heldCollector) Collect(ch chan<- prometheus.Metric) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.counted.IsZero() || time.Since(h.counted) > h.maxAge {
		ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
		n, err := h.engine.CountHeld(ctx, h.now())
		cancel()
		if err != nil {
			return
		}
		h.n, h.counted = n, time.Now()
	}
	ch <- prometheus.MustNewConstMetric(h.desc, prometheus.GaugeValue, float64(h.n))
}
