package transport

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/locklock/locklock/internal/abbrev"
	"github.com/locklock/locklock/locklock"
	"github.com/locklock/locklock/transport/ratelimit"
)

// Option configures the handler.
type Option func(*handler)

// WithLogger sets where server-side failures (500, 503) are logged. The
// default discards them. Secrets, Authorization headers and bodies are
// never logged.
func WithLogger(l *slog.Logger) Option { return func(h *handler) { h.log = l } }

// WithAuthenticator decides who each request acts for. The default makes
// every request anonymous (AnonymousCaller). Errors wrapping locklock.ErrUnauthorized
// or locklock.ErrForbidden become 401 or 403.
func WithAuthenticator(auth func(*http.Request) (Caller, error)) Option {
	return func(h *handler) { h.auth = auth }
}

type handler struct {
	svc     *locklock.Service
	log     *slog.Logger
	auth    func(*http.Request) (Caller, error)
	limiter *ratelimit.Limiter
	prefix  string
	metrics http.Handler // NewOpsHandler's /metrics, if any
	storage func() any   // WithReadyStorage
}

// WithRateLimiter throttles callers by their plan's rate (Caller.RateKey and
// Caller.RateLimit): 429 rate_limited beyond it, RateLimit headers always.
// Without it nobody is throttled.
func WithRateLimiter(l *ratelimit.Limiter) Option { return func(h *handler) { h.limiter = l } }

// WithPathPrefix serves the routes under prefix ("/v1/api" serves
// /v1/api/lock/uuid/…): the same as wrapping the handler in
// http.StripPrefix(prefix, …), without copying every request to strip it.
// A trailing slash is ignored.
func WithPathPrefix(prefix string) Option {
	return func(h *handler) { h.prefix = strings.TrimSuffix(prefix, "/") }
}

// NewHandler returns the API's routes, relative to wherever it is mounted
// (or under WithPathPrefix).
func NewHandler(svc *locklock.Service, opts ...Option) http.Handler {
	h := newHandler(svc, opts)
	r := newRouter(h)
	for _, row := range routeTable {
		r.add(row, h.methods(row.methods(h, row.prefix)))
	}
	return r
}

// lockMethods are a lock route's handlers; routePrefix is the path before
// the lock's name.
func (h *handler) lockMethods(kind locklock.Kind, routePrefix string) map[string]http.HandlerFunc {
	return map[string]http.HandlerFunc{
		http.MethodPost:   h.lockOp(kind, routePrefix, h.acquire),
		http.MethodDelete: h.lockOp(kind, routePrefix, h.release),
		http.MethodGet:    h.lockOp(kind, routePrefix, h.inspect),
		http.MethodHead:   h.lockOp(kind, routePrefix, h.inspect),
		http.MethodPatch:  h.lockOp(kind, routePrefix, h.patch),
	}
}

func newHandler(svc *locklock.Service, opts []Option) *handler {
	h := &handler{svc: svc, log: slog.New(slog.DiscardHandler), auth: anonymous}
	for _, o := range opts {
		o(h)
	}
	return h
}

// methodSet dispatches on the request method. Doing it here rather than with
// mux's Methods matcher gives a known path with an unknown method a 405 with
// an exact Allow header. It is a type of its own so that a test can walk the
// router and read each path's methods (openapi_test.go).
type methodSet struct {
	h        *handler
	byMethod map[string]http.HandlerFunc
	allow    string
	template string // the route's path, relative to the mount point (set by the router)
}

func (h *handler) methods(byMethod map[string]http.HandlerFunc) *methodSet {
	return &methodSet{h: h, byMethod: byMethod, allow: strings.Join(slices.Sorted(maps.Keys(byMethod)), ", ")}
}

func (m *methodSet) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f, ok := m.byMethod[r.Method]; ok {
		f(w, r)
		return
	}
	w.Header().Set("Allow", m.allow)
	m.h.fail(w, r, newProblem(codeMethodNotAllowed, "method %q is not allowed here; allowed: %s", abbrev.String(r.Method), m.allow))
}

func (h *handler) notFound(w http.ResponseWriter, r *http.Request) {
	h.fail(w, r, newProblem(codeNotFound, "no route for %q %q", abbrev.String(r.Method), abbrev.String(r.URL.Path)))
}

// fail answers with the problem for err, logging what the client cannot fix.
// Method and path are the client's and quoted only as a prefix (API.md §7).
func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	p := toProblem(err)
	switch {
	case errors.Is(err, context.Canceled):
		// Usually the client went away; nothing for an operator to do.
		h.log.DebugContext(r.Context(), "request cancelled", requestAttrs(r)...)
	case errors.Is(err, locklock.ErrStorageFull):
		// The engine logged the low-space state once; a line per refused
		// request would flood the log while it lasts.
		h.log.DebugContext(r.Context(), "request not served", append(requestAttrs(r), "err", err)...)
	case p.Code == codeInternal:
		h.log.ErrorContext(r.Context(), "request failed", append(requestAttrs(r), "err", err)...)
	case p.Status >= 500:
		h.log.WarnContext(r.Context(), "request not served", append(requestAttrs(r), "err", err)...)
	}
	writeProblem(w, r, p)
}

// requestAttrs names a request in a log line: its method and path, cut to
// a short prefix.
func requestAttrs(r *http.Request) []any {
	return []any{"method", abbrev.String(r.Method), "path", abbrev.String(r.URL.EscapedPath())}
}
