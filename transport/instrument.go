package transport

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/locklock/locklock/internal/abbrev"
)

// RequestIDHeader carries a request's id: taken from the client when it
// sends a sane one (so that its logs and ours line up), made up otherwise,
// and echoed in every response.
const RequestIDHeader = "X-Request-Id"

// RequestInfo describes one answered request, for metrics.
type RequestInfo struct {
	Route     string // a template from a fixed set, never a lock name
	Method    string
	Status    int
	Duration  time.Duration
	Anonymous bool // sent no Authorization header
}

type requestIDKey struct{}

// RequestID is the id of the request ctx belongs to, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// Instrument wraps next with what every request gets: a request id in its
// context and in the response, one log line at debug level (method, path,
// route, status, duration, request id — never headers or bodies, so never a
// secret or an API key), and a call of observe when it is answered. route
// names the request's route template; observe may be nil.
func Instrument(next http.Handler, log *slog.Logger, route func(*http.Request) string, observe func(RequestInfo)) http.Handler {
	ids := newRequestIDs()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get(RequestIDHeader)
		if !saneRequestID(id) {
			id = ids.next()
		}
		w.Header()[RequestIDHeader] = []string{id}
		r = r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id))
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)

		info := RequestInfo{
			Route:     route(r),
			Method:    r.Method,
			Status:    rec.status,
			Duration:  time.Since(start),
			Anonymous: r.Header.Get("Authorization") == "",
		}
		if observe != nil {
			observe(info)
		}
		if log.Enabled(r.Context(), slog.LevelDebug) {
			log.DebugContext(r.Context(), "request", append(requestAttrs(r), "route", info.Route,
				"status", info.Status, "duration", info.Duration, "remote", r.RemoteAddr)...)
		}
	})
}

// saneRequestID accepts what can go into a log line and a header as is:
// 1–64 characters of letters, digits and . _ : -. Longer ids are replaced
// rather than cut, since a cut id would no longer match the client's; 64
// holds a UUID, a W3C trace id or a traceparent.
func saneRequestID(id string) bool {
	if id == "" || len(id) > abbrev.Len {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._:-", c)) {
			return false
		}
	}
	return true
}

// newRequestID makes an id unique within the process and, by its random
// prefix, across restarts: an id names a request, it guards nothing, so a
// counter does (and costs no system call per request).
func (ids *requestIDs) next() string {
	b := make([]byte, 0, 32)
	b = append(b, ids.prefix...)
	b = append(b, '-')
	return string(strconv.AppendUint(b, ids.n.Add(1), 36))
}

type requestIDs struct {
	prefix string
	n      atomic.Uint64
}

func newRequestIDs() *requestIDs {
	var b [6]byte
	_, _ = rand.Read(b[:]) // never fails
	return &requestIDs{prefix: hex.EncodeToString(b[:])}
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wroteHeader {
		s.status, s.wroteHeader = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.wroteHeader = true
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the real writer (flushes,
// deadlines).
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// LogHandler adds the request id of the record's context to every log
// record, so that a warning logged deep in a request can be found with
// the id the client saw.
func LogHandler(h slog.Handler) slog.Handler { return requestIDHandler{h} }

type requestIDHandler struct{ slog.Handler }

func (h requestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestID(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h requestIDHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(attrs)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}
