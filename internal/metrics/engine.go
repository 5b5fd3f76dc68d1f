package metrics

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/locklock/locklock/locklock"
)

// Engine wraps e so that every operation's latency is observed (a
// semaphore's too), sweeps are counted, and slot releases counted
// (CountHeld, the metric's own scrape, is passed through unobserved). The
// wrapper keeps exactly e's optional abilities (ReleaseWatcher,
// EventSource with EventGate and EventHistory, SemaphoreEngine), so the
// Service behaves as with e itself: one it hid would be lost to the
// standalone server (no streams, no resumes from etcd's history, no
// semaphores).
func (m *Metrics) Engine(e locklock.Engine) locklock.Engine {
	in := &instrumented{Engine: e, m: m}
	w, watches := e.(locklock.ReleaseWatcher)
	sem, slots := e.(locklock.SemaphoreEngine)
	is := &instrumentedSlots{e: sem, m: m}
	src, reports := e.(locklock.EventSource)
	hist, replays := e.(locklock.EventHistory)
	replays = replays && reports // history is read only for events it reports
	ev, hs := eventSource{src}, historySource{eventSource{src}, hist}
	type rw = locklock.ReleaseWatcher
	switch {
	case watches && replays && slots:
		return struct {
			*instrumented
			rw
			historySource
			*instrumentedSlots
		}{in, w, hs, is}
	case watches && replays:
		return struct {
			*instrumented
			rw
			historySource
		}{in, w, hs}
	case watches && reports && slots:
		return struct {
			*instrumented
			rw
			eventSource
			*instrumentedSlots
		}{in, w, ev, is}
	case watches && reports:
		return struct {
			*instrumented
			rw
			eventSource
		}{in, w, ev}
	case watches && slots:
		return struct {
			*instrumented
			rw
			*instrumentedSlots
		}{in, w, is}
	case watches:
		return struct {
			*instrumented
			rw
		}{in, w}
	case replays && slots:
		return struct {
			*instrumented
			historySource
			*instrumentedSlots
		}{in, hs, is}
	case replays:
		return struct {
			*instrumented
			historySource
		}{in, hs}
	case reports && slots:
		return struct {
			*instrumented
			eventSource
			*instrumentedSlots
		}{in, ev, is}
	case reports:
		return struct {
			*instrumented
			eventSource
		}{in, ev}
	case slots:
		return struct {
			*instrumented
			*instrumentedSlots
		}{in, is}
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

// historySource is eventSource for an engine that also reads its events
// back from storage's history (etcd).
type historySource struct {
	eventSource
	locklock.EventHistory
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
	case errors.Is(err, locklock.ErrHeld), errors.Is(err, locklock.ErrDelayed), errors.Is(err, locklock.ErrNotFound), errors.Is(err, locklock.ErrSecretMismatch),
		errors.Is(err, locklock.ErrSemaphoreFull), errors.Is(err, locklock.ErrLimitMismatch),
		errors.Is(err, locklock.ErrSemaphoreNotFound), errors.Is(err, locklock.ErrSlotNotFound):
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

func (e *instrumented) Revoke(ctx context.Context, id locklock.ID, now time.Time) (locklock.Lock, error) {
	start := time.Now()
	l, err := e.Engine.Revoke(ctx, id, now)
	e.observe("revoke", start, err)
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
