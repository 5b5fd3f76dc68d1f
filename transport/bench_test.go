package transport_test

import (
	"context"
	crand "crypto/rand"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/locklock/locklock/engines/memory"
	"github.com/locklock/locklock/internal/enginebench"
	"github.com/locklock/locklock/locklock"
	"github.com/locklock/locklock/transport"
)

// The handler benchmarks call ServeHTTP with a recorder: no network, no
// server, just routing, the caller, the body, the Service (memory engine)
// and the JSON answer — the CPU one request costs the handler. Each op
// builds its request and recorder by hand (a few allocations), far cheaper
// than httptest.NewRequest.

// BenchmarkHandlerAcquireRelease: POST then DELETE of a fresh UUID lock,
// anonymous, without a body; an op is both.
func BenchmarkHandlerAcquireRelease(b *testing.B) {
	e := memory.New()
	b.Cleanup(func() { _ = e.Close() })
	h := transport.NewHandler(locklock.NewService(e))
	var seed [32]byte
	_, _ = crand.Read(seed[:])
	rng := rand.NewChaCha8(seed)
	b.ReportAllocs()
	for b.Loop() {
		path := "/lock/uuid/" + enginebench.UUID(rng)
		if w := serve(h, http.MethodPost, path); w.Code != http.StatusCreated {
			b.Fatalf("acquire: %d %s", w.Code, w.Body)
		}
		if w := serve(h, http.MethodDelete, path); w.Code != http.StatusOK {
			b.Fatalf("release: %d %s", w.Code, w.Body)
		}
	}
}

// BenchmarkHandlerHealthz: GET /healthz on the ops handler, the floor of
// what any request costs.
func BenchmarkHandlerHealthz(b *testing.B) {
	e := memory.New()
	b.Cleanup(func() { _ = e.Close() })
	h := transport.NewOpsHandler(locklock.NewService(e))
	b.ReportAllocs()
	for b.Loop() {
		if w := serve(h, http.MethodGet, "/healthz"); w.Code != http.StatusOK {
			b.Fatalf("healthz: %d %s", w.Code, w.Body)
		}
	}
}

func serve(h http.Handler, method, path string) *httptest.ResponseRecorder {
	r := (&http.Request{
		Method:     method,
		URL:        &url.URL{Path: path},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     http.Header{},
		Body:       http.NoBody,
		Host:       "127.0.0.1:8080",
		RemoteAddr: "192.0.2.1:1234",
		RequestURI: path,
	}).WithContext(context.Background())
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}
