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
