package transport

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/locklock/locklock/locklock"
)

// readyTimeout bounds how long /readyz waits for the engine.
const readyTimeout = 2 * time.Second

// WithMetricsHandler makes NewOpsHandler serve metrics (a Prometheus
// scrape handler) at /metrics. NewHandler ignores it.
func WithMetricsHandler(metrics http.Handler) Option {
	return func(h *handler) { h.metrics = metrics }
}

// NewOpsHandler serves the operational endpoints of a standalone server:
// GET /healthz (the process answers), GET /readyz (the storage engine
// answers; 503 unavailable otherwise) and, with WithMetricsHandler, GET
// /metrics. Each answers GET and HEAD only, other methods 405 with Allow.
// Any other path gets the API's not_found problem, so a server's whole
// surface speaks problem+json.
func NewOpsHandler(svc *locklock.Service, opts ...Option) http.Handler {
	h := newHandler(svc, opts)
	r := newRouter(h)
	if h.metrics != nil {
		r.handle("/metrics", h.methods(map[string]http.HandlerFunc{
			http.MethodGet:  h.metrics.ServeHTTP,
			http.MethodHead: h.metrics.ServeHTTP,
		}))
	}
	r.handle("/healthz", h.methods(map[string]http.HandlerFunc{
		http.MethodGet:  h.healthz,
		http.MethodHead: h.healthz,
	}))
	r.handle("/readyz", h.methods(map[string]http.HandlerFunc{
		http.MethodGet:  h.readyz,
		http.MethodHead: h.readyz,
	}))
	return r
}

// NotFoundHandler answers every request with the not_found problem, for
// paths outside the API that a server does not serve.
func NotFoundHandler() http.Handler {
	h := newHandler(nil, nil)
	return http.HandlerFunc(h.notFound)
}

// WithReadyStorage adds a "storage" member to /readyz's answer: what report
// returns, as JSON (nil leaves it out). The standalone server reports the
// Badger engine's free space with it. /readyz stays 200 while storage is
// low on space: the server still serves reads and releases.
func WithReadyStorage(report func() any) Option { return func(h *handler) { h.storage = report } }

type statusJSON struct {
	Status string `json:"status"`
}

type readyJSON struct {
	Status  string `json:"status"`
	Storage any    `json:"storage,omitempty"`
}

func (h *handler) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, r, http.StatusOK, statusJSON{"ok"})
}

func (h *handler) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	if err := h.svc.Ready(ctx); err != nil {
		// Whatever the engine says, the server cannot serve locks now.
		h.fail(w, r, fmt.Errorf("%w: readiness check: %w", locklock.ErrUnavailable, err))
		return
	}
	ready := readyJSON{Status: "ok"}
	if h.storage != nil {
		ready.Storage = h.storage()
	}
	writeJSON(w, r, http.StatusOK, ready)
}
