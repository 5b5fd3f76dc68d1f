package transport

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestOpsHandler(t *testing.T) {
	e := newEnv(t)
	ops := NewOpsHandler(e.svc)
	serve := func(method, path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		ops.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
		return rec
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		rec := serve("GET", path)
		var body statusJSON
		decodeStrict(t, rec.Body.Bytes(), &body)
		if rec.Code != http.StatusOK || body.Status != "ok" {
			t.Errorf("GET %s: %d %+v", path, rec.Code, body)
		}
		checkRecProblem(t, serve("POST", path), http.StatusMethodNotAllowed, codeMethodNotAllowed)
	}
	checkRecProblem(t, serve("GET", "/lock/uuid/"+u1), http.StatusNotFound, codeNotFound)
	checkRecProblem(t, serve("GET", "/"), http.StatusNotFound, codeNotFound)

	// Once storage is gone the process is still alive but not ready.
	_ = e.engine.Close()
	if rec := serve("GET", "/healthz"); rec.Code != http.StatusOK {
		t.Errorf("healthz with a closed engine: %d, want 200", rec.Code)
	}
	rec := serve("GET", "/readyz")
	checkRecProblem(t, rec, http.StatusServiceUnavailable, codeUnavailable)
	if rec.Header().Get("Retry-After") == "" {
		t.Error("503 from readyz without Retry-After")
	}
}

// TestOpsMetrics: /metrics answers GET and HEAD only, like /healthz and
// /readyz; PUT, TRACE, OPTIONS and the rest get 405 with Allow.
func TestOpsMetrics(t *testing.T) {
	e := newEnv(t)
	scrapes := 0
	ops := NewOpsHandler(e.svc, WithMetricsHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scrapes++
		_, _ = w.Write([]byte("# metrics\n"))
	})))
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		rec := httptest.NewRecorder()
		ops.ServeHTTP(rec, httptest.NewRequest(method, "/metrics", nil))
		if rec.Code != http.StatusOK {
			t.Errorf("%s /metrics: %d", method, rec.Code)
		}
	}
	for _, method := range []string{http.MethodPut, http.MethodPost, http.MethodDelete, http.MethodPatch, http.MethodTrace, http.MethodOptions, "BREW"} {
		rec := httptest.NewRecorder()
		ops.ServeHTTP(rec, httptest.NewRequest(method, "/metrics", nil))
		checkRecProblem(t, rec, http.StatusMethodNotAllowed, codeMethodNotAllowed)
		if allow := rec.Header().Get("Allow"); allow != "GET, HEAD" {
			t.Errorf("%s /metrics: Allow %q, want GET, HEAD", method, allow)
		}
	}
	if scrapes != 2 {
		t.Errorf("the metrics handler ran %d times, want 2 (GET and HEAD)", scrapes)
	}
	// Without the option there is no /metrics.
	rec := httptest.NewRecorder()
	NewOpsHandler(e.svc).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	checkRecProblem(t, rec, http.StatusNotFound, codeNotFound)
}
