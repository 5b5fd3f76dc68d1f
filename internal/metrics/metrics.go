// Package metrics exposes Locklock's Prometheus metrics: HTTP requests,
// acquire outcomes of locks and semaphore slots, held locks, slot
// releases, waiters, engine latency, sweeps and throttling, plus the Go
// runtime and process collectors.
//
// Every Metrics has a registry of its own (no global state), so several
// servers can run in one process. No label ever carries a lock name, a
// secret or an API key: labels are routes, methods, status codes, outcomes
// and operation names only.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/locklock/locklock/locklock"
)

// Metrics holds the collectors of one server.
type Metrics struct {
	reg         *prometheus.Registry
	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	acquires    *prometheus.CounterVec
	engineOps   *prometheus.HistogramVec
	sweeps      *prometheus.CounterVec
	swept       prometheus.Counter
	rateLimited *prometheus.CounterVec
	// Semaphores (API.md §10).
	slotAcquires *prometheus.CounterVec
	slotReleases prometheus.Counter
}

// latencyBuckets span an in-memory operation (tens of µs) to an fsync or a
// slow etcd round trip (seconds).
var latencyBuckets = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// New makes the collectors and registers them, with the Go runtime and
// process collectors, on a registry of their own.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "locklock_http_requests_total",
			Help: "HTTP requests by route template, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "locklock_http_request_duration_seconds",
			Help:    "Time to answer HTTP requests, by route template and method (waits included).",
			Buckets: latencyBuckets,
		}, []string{"route", "method"}),
		acquires: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "locklock_acquires_total",
			Help: "Acquire outcomes: granted (a free lock), reacquired (the holder's retry), held (refused at once), delayed (a lock-delay barred it, at once or when the wait ended), waited (granted after waiting), timed_out (still held when the wait ended), too_many_waiters (held, and no wait slot free), invalid (refused for its input), canceled (the client went away first), failed (the server's own error: storage, shutdown).",
		}, []string{"outcome"}),
		engineOps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "locklock_engine_operation_duration_seconds",
			Help:    "Storage engine operations by operation and result (ok, refused: held/not found/secret mismatch, error).",
			Buckets: latencyBuckets,
		}, []string{"op", "result"}),
		sweeps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "locklock_sweeps_total",
			Help: "Sweeps of expired locks, by result.",
		}, []string{"result"}),
		swept: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "locklock_swept_locks_total",
			Help: "Expired locks removed from storage by sweeps.",
		}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "locklock_rate_limited_total",
			Help: "Requests refused with 429 for exceeding the caller's plan, by caller kind (anonymous or key).",
		}, []string{"caller"}),
		slotAcquires: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "locklock_semaphore_acquires_total",
			Help: "Semaphore slot acquire outcomes: granted (it fit at once), reacquired (the holder's retry), full (it did not fit, or earlier waiters were queued; no wait), limit_mismatch (the semaphore has another limit), waited (granted after waiting), timed_out (still full when the wait ended), too_many_waiters, invalid, canceled, failed (as for locks).",
		}, []string{"outcome"}),
		slotReleases: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "locklock_semaphore_releases_total",
			Help: "Semaphore slots released (by their holders, or given back for a waiter whose client went away); expired slots are not counted.",
		}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests, m.duration, m.acquires, m.engineOps, m.sweeps, m.swept, m.rateLimited,
		m.slotAcquires, m.slotReleases,
	)
	for _, o := range locklock.AcquireOutcomes() {
		m.acquires.WithLabelValues(string(o)) // every outcome shows, at 0
	}
	for _, o := range locklock.SlotOutcomes() {
		m.slotAcquires.WithLabelValues(string(o))
	}
	return m
}

// Registry is where the collectors live, for adding one's own.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// knownMethods bounds the method label: anything else counts as "other".
var knownMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodOptions: true,
}

// ObserveRequest records one answered request. route must be a template
// from a fixed set ("/lock/uuid/{uuid}"), never a path with a lock name.
func (m *Metrics) ObserveRequest(route, method string, status int, d time.Duration, anonymous bool) {
	if !knownMethods[method] {
		method = "other"
	}
	m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(route, method).Observe(d.Seconds())
	if status == http.StatusTooManyRequests {
		caller := "key"
		if anonymous {
			caller = "anonymous"
		}
		m.rateLimited.WithLabelValues(caller).Inc()
	}
}

// AcquireDone counts an acquire's outcome; give it to the Service with
// locklock.WithAcquireObserver.
func (m *Metrics) AcquireDone(o locklock.AcquireOutcome) {
	m.acquires.WithLabelValues(string(o)).Inc()
}

// WatchService reports the Service's waiters at each scrape.
func (m *Metrics) WatchService(svc *locklock.Service) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "locklock_waiters",
		Help: "Acquire requests waiting for a held lock or a full semaphore.",
	}, func() float64 { return float64(svc.Waiters()) }))
}
