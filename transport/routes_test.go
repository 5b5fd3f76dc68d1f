package transport

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRoutes(t *testing.T) {
	runCases(t, []tcase{
		{name: "PUT lock", req: req{method: http.MethodPut, path: uuidPath(u1), body: "{}"}, status: http.StatusMethodNotAllowed, code: codeMethodNotAllowed, check: wantHeader("Allow", "DELETE, GET, HEAD, PATCH, POST")},
		{name: "OPTIONS key lock", req: req{method: http.MethodOptions, path: keyPath("x")}, status: http.StatusMethodNotAllowed, code: codeMethodNotAllowed, check: wantHeader("Allow", "DELETE, GET, HEAD, PATCH, POST")},
		{name: "POST list", req: post("/locks", ""), status: http.StatusMethodNotAllowed, code: codeMethodNotAllowed, check: wantHeader("Allow", "GET, HEAD")},
		{name: "DELETE list", req: del("/locks", "", "Authorization", proKey), status: http.StatusMethodNotAllowed, code: codeMethodNotAllowed, check: wantHeader("Allow", "GET, HEAD")},
		{name: "root", req: get("/"), status: http.StatusNotFound, code: codeNotFound},
		{name: "lock", req: get("/lock"), status: http.StatusNotFound, code: codeNotFound},
		{name: "kind without slash", req: post("/lock/uuid", ""), status: http.StatusNotFound, code: codeNotFound},
		{name: "unknown kind", req: post("/lock/other/x", ""), status: http.StatusNotFound, code: codeNotFound},
		{name: "locks with slash", req: get("/locks/"), status: http.StatusNotFound, code: codeNotFound},
		{name: "unmounted prefix", req: post("/v1/api"+uuidPath(u1), ""), status: http.StatusNotFound, code: codeNotFound},
	})
}

func TestServerErrors(t *testing.T) {
	runCases(t, []tcase{{
		name: "closed engine", setup: []req{post(uuidPath(u1), "")},
		prepare: func(e *env) { _ = e.engine.Close() },
		req:     post(uuidPath(u2), ""), status: http.StatusServiceUnavailable, code: codeUnavailable,
		check: wantHeader("Retry-After", "1"),
	}, {
		name:    "unexpected engine error",
		prepare: func(e *env) { e.engine.failGet = errors.New("disk on fire at /var/secret") },
		req:     get(uuidPath(u1)), status: http.StatusInternalServerError, code: codeInternal,
		check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, _ []lockJSON) {
			if strings.Contains(rec.Body.String(), "fire") {
				t.Errorf("internal error leaked: %s", rec.Body)
			}
		},
	}})
}
