package transport

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
)

// tcase is one request against a fresh service. Setup requests must
// succeed; the clock then moves by advance.
type tcase struct {
	name    string
	setup   []req
	advance time.Duration
	prepare func(e *env)
	req     req
	status  int
	code    string // for error statuses
	check   func(t *testing.T, e *env, rec *httptest.ResponseRecorder, setup []lockJSON)
}

func uuidPath(name string) string { return "/lock/uuid/" + name }
func keyPath(name string) string  { return "/lock/key/" + name }

func post(path, body string, hdr ...string) req {
	return req{method: http.MethodPost, path: path, body: body, hdr: hdr}
}
func del(path, body string, hdr ...string) req {
	return req{method: http.MethodDelete, path: path, body: body, hdr: hdr}
}
func patch(path, body string, hdr ...string) req {
	return req{method: http.MethodPatch, path: path, body: body, hdr: hdr}
}
func get(path string, hdr ...string) req { return req{method: http.MethodGet, path: path, hdr: hdr} }
func head(path string, hdr ...string) req {
	return req{method: http.MethodHead, path: path, hdr: hdr}
}

// runCases runs each case and, for every rejected request, checks that it
// answered with a proper problem and changed no lock.
func runCases(t *testing.T, cases []tcase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			var setup []lockJSON
			for _, q := range tc.setup {
				setup = append(setup, e.must(q))
			}
			e.clock.Advance(tc.advance)
			if tc.prepare != nil {
				tc.prepare(e)
			}
			var before []locklock.Lock
			if tc.status < 500 { // a failing engine cannot be listed
				before = e.snapshot()
			}
			rec := e.do(tc.req)
			if tc.status >= 400 {
				if tc.req.method == http.MethodHead {
					checkHeadProblem(t, rec, tc.status)
				} else {
					checkRecProblem(t, rec, tc.status, tc.code)
				}
				if tc.status < 500 {
					e.assertUnchanged(before)
				}
			} else {
				if rec.Code != tc.status {
					t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
				}
				if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type %q", ct)
				}
			}
			if tc.check != nil {
				tc.check(t, e, rec, setup)
			}
		})
	}
}

func checkHeadProblem(t *testing.T, rec *httptest.ResponseRecorder, status int) {
	t.Helper()
	if rec.Code != status || rec.Header().Get("Content-Type") != "application/problem+json" || rec.Body.Len() != 0 {
		t.Errorf("HEAD: status %d, Content-Type %q, body %q; want %d, a problem type and no body",
			rec.Code, rec.Header().Get("Content-Type"), rec.Body, status)
	}
}

func lockBody(t *testing.T, rec *httptest.ResponseRecorder) lockJSON {
	t.Helper()
	var l lockJSON
	decodeStrict(t, rec.Body.Bytes(), &l)
	return l
}

func releasedBody(t *testing.T, rec *httptest.ResponseRecorder) lockJSON {
	t.Helper()
	var r releasedJSON
	decodeStrict(t, rec.Body.Bytes(), &r)
	if !r.Released {
		t.Errorf("released = false in %s", rec.Body)
	}
	return r.Lock
}

func wantHeader(name, want string) func(*testing.T, *env, *httptest.ResponseRecorder, []lockJSON) {
	return func(t *testing.T, _ *env, rec *httptest.ResponseRecorder, _ []lockJSON) {
		t.Helper()
		if got := rec.Header().Get(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
}

// wantGone checks that the lock is free afterwards.
func wantGone(ns string, kind locklock.Kind, name string) func(*testing.T, *env, *httptest.ResponseRecorder, []lockJSON) {
	return func(t *testing.T, e *env, _ *httptest.ResponseRecorder, _ []lockJSON) {
		t.Helper()
		if _, err := e.get(ns, kind, name); !errors.Is(err, locklock.ErrNotFound) {
			t.Errorf("lock %s still there: %v", name, err)
		}
	}
}
