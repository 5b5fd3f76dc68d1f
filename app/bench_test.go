package app

import (
	"context"
	crand "crypto/rand"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/locklock/locklock/engines/memory"
	"github.com/locklock/locklock/internal/enginebench"
	"github.com/locklock/locklock/internal/keyauth"
	"github.com/locklock/locklock/internal/keys"
	"github.com/locklock/locklock/internal/metrics"
	"github.com/locklock/locklock/locklock"
	"github.com/locklock/locklock/transport/client"
	"github.com/locklock/locklock/transport/ratelimit"
)

// The server benchmarks run the standalone server's whole handler chain —
// instrumentation, metrics, the API prefix, routing, the caller, the
// Service on an instrumented memory engine, the answer — without the
// network: the CPU a request costs above net/http itself.

func benchHandlers(b *testing.B) http.Handler {
	m := metrics.New()
	e := m.Engine(memory.New())
	b.Cleanup(func() { _ = e.Close() })
	svc := locklock.NewService(e, locklock.WithAcquireObserver(m.AcquireDone))
	access := keyauth.Access{Keys: keys.NewStore(keys.NewIndex(keys.Default()))}
	log := slog.New(slog.DiscardHandler)
	return newHandlers(DefaultConfig(), svc, access, ratelimit.New(), m, nil, log).main
}

// BenchmarkServerCycle: POST then DELETE of a fresh UUID lock; an op is both.
func BenchmarkServerCycle(b *testing.B) {
	h := benchHandlers(b)
	var seed [32]byte
	_, _ = crand.Read(seed[:])
	rng := rand.NewChaCha8(seed)
	b.ReportAllocs()
	for b.Loop() {
		path := client.APIPrefix + "/lock/uuid/" + enginebench.UUID(rng)
		if w := serveOnce(h, http.MethodPost, path); w.Code != http.StatusCreated {
			b.Fatalf("acquire: %d %s", w.Code, w.Body)
		}
		if w := serveOnce(h, http.MethodDelete, path); w.Code != http.StatusOK {
			b.Fatalf("release: %d %s", w.Code, w.Body)
		}
	}
}

// BenchmarkServerHealthz: GET /healthz through the same chain.
func BenchmarkServerHealthz(b *testing.B) {
	h := benchHandlers(b)
	b.ReportAllocs()
	for b.Loop() {
		if w := serveOnce(h, http.MethodGet, "/healthz"); w.Code != http.StatusOK {
			b.Fatalf("healthz: %d %s", w.Code, w.Body)
		}
	}
}

// serveOnce builds the request as net/http's server would hand it over.
func serveOnce(h http.Handler, method, path string) *httptest.ResponseRecorder {
	r := (&http.Request{
		Method:     method,
		URL:        &url.URL{Path: path},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     http.Header{"User-Agent": {"bench"}, "Accept": {"*/*"}},
		Body:       http.NoBody,
		Host:       "127.0.0.1:8080",
		RemoteAddr: "127.0.0.1:40000",
		RequestURI: path,
	}).WithContext(context.Background())
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}
