package transport

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
)

const secretS1 = `{"secret":"s1","expires_in":60}`

func TestAcquire(t *testing.T) {
	runCases(t, []tcase{{
		name:   "free lock without body",
		req:    post(uuidPath(u1), ""),
		status: http.StatusCreated,
		check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, _ []lockJSON) {
			got := lockBody(t, rec)
			want := lockJSON{
				Namespace: "public", Kind: "uuid", Name: u1,
				AcquiredAt: "2026-11-26T15:04:05.123Z", ExpiresAt: "2026-12-26T15:04:05.123Z",
				ExpiresIn: 2592000, FencingToken: got.FencingToken, Protected: false,
			}
			if !reflect.DeepEqual(got, want) || got.FencingToken == 0 {
				t.Errorf("lock %+v, want %+v", got, want)
			}
			if l, err := e.get("public", locklock.KindUUID, u1); err != nil || l.Token != got.FencingToken {
				t.Errorf("stored lock %+v, %v", l, err)
			}
		},
	}, {
		name:   "free lock with secret and expires_in",
		req:    post(uuidPath(u1), secretS1, "Content-Type", "application/json"),
		status: http.StatusCreated,
		check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, _ []lockJSON) {
			got := lockBody(t, rec)
			if !got.Protected || got.ExpiresIn != 60 || got.ExpiresAt != "2026-11-26T15:05:05.123Z" {
				t.Errorf("lock %+v", got)
			}
			if strings.Contains(rec.Body.String(), "s1") {
				t.Errorf("secret echoed: %s", rec.Body)
			}
		},
	}, {
		name:   "charset parameter and wait 0 are fine",
		req:    post(uuidPath(u1), `{"wait":0}`, "Content-Type", "application/json; charset=utf-8"),
		status: http.StatusCreated,
	}, {
		name:   "secret in header protects the lock",
		req:    post(uuidPath(u1), "", "Locklock-Secret", "s1"),
		status: http.StatusCreated,
		check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, _ []lockJSON) {
			if !lockBody(t, rec).Protected {
				t.Error("not protected")
			}
			checkRecProblem(t, e.do(del(uuidPath(u1), "")), http.StatusForbidden, codeSecretMismatch)
			e.must(del(uuidPath(u1), `{"secret":"s1"}`))
		},
	}, {
		name:    "re-acquire with the same secret changes nothing",
		setup:   []req{post(uuidPath(u1), secretS1)},
		advance: 10 * time.Second,
		req:     post(uuidPath(u1), `{"secret":"s1","expires_in":999}`),
		status:  http.StatusOK,
		check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, setup []lockJSON) {
			want := setup[0]
			want.ExpiresIn = 50
			if got := lockBody(t, rec); !reflect.DeepEqual(got, want) {
				t.Errorf("lock %+v, want %+v", got, want)
			}
		},
	}, {
		name:   "held with another secret",
		setup:  []req{post(uuidPath(u1), secretS1)},
		req:    post(uuidPath(u1), `{"secret":"s2"}`),
		status: http.StatusConflict, code: codeLockHeld,
		check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, _ []lockJSON) {
			p := checkRecProblem(t, rec, http.StatusConflict, codeLockHeld)
			if p.ExpiresAt != "2026-11-26T15:05:05.123Z" {
				t.Errorf("expires_at %q", p.ExpiresAt)
			}
			wantHeader("Retry-After", "60")(t, e, rec, nil)
		},
	}, {
		name:   "held without secret by a caller without secret",
		setup:  []req{post(uuidPath(u1), "")},
		req:    post(uuidPath(u1), ""),
		status: http.StatusConflict, code: codeLockHeld,
		check: wantHeader("Retry-After", "2592000"),
	}, {
		name:   "held with a secret by a caller without one",
		setup:  []req{post(uuidPath(u1), secretS1)},
		req:    post(uuidPath(u1), ""),
		status: http.StatusConflict, code: codeLockHeld,
	}, {
		name:    "Retry-After rounds up",
		setup:   []req{post(uuidPath(u1), secretS1)},
		advance: 58200 * time.Millisecond,
		req:     post(uuidPath(u1), ""),
		status:  http.StatusConflict, code: codeLockHeld,
		check: wantHeader("Retry-After", "2"),
	}, {
		name:    "Retry-After is at least 1",
		setup:   []req{post(uuidPath(u1), secretS1)},
		advance: 59999 * time.Millisecond,
		req:     post(uuidPath(u1), ""),
		status:  http.StatusConflict, code: codeLockHeld,
		check: wantHeader("Retry-After", "1"),
	}, {
		name:    "expired lock is free",
		setup:   []req{post(uuidPath(u1), secretS1)},
		advance: 60 * time.Second,
		req:     post(uuidPath(u1), `{"secret":"s2"}`),
		status:  http.StatusCreated,
		check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, setup []lockJSON) {
			if got := lockBody(t, rec); got.FencingToken <= setup[0].FencingToken {
				t.Errorf("token %d not above %d", got.FencingToken, setup[0].FencingToken)
			}
		},
	}, {
		name:   "released lock is free",
		setup:  []req{post(uuidPath(u1), secretS1), del(uuidPath(u1), `{"secret":"s1"}`)},
		req:    post(uuidPath(u1), ""),
		status: http.StatusCreated,
		check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, setup []lockJSON) {
			if got := lockBody(t, rec); got.FencingToken <= setup[0].FencingToken {
				t.Errorf("token %d not above %d", got.FencingToken, setup[0].FencingToken)
			}
		},
	}, {
		name:   "upper-case UUID is stored and echoed in lower case",
		req:    post(uuidPath(strings.ToUpper(u1)), ""),
		status: http.StatusCreated,
		check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, _ []lockJSON) {
			if got := lockBody(t, rec).Name; got != u1 {
				t.Errorf("name %q", got)
			}
			if _, err := e.get("public", locklock.KindUUID, u1); err != nil {
				t.Error(err)
			}
		},
	}, {
		name:   "upper-case UUID is the same lock",
		setup:  []req{post(uuidPath(u1), secretS1)},
		req:    post(uuidPath(strings.ToUpper(u1)), `{"secret":"s2"}`),
		status: http.StatusConflict, code: codeLockHeld,
	}})
}

func TestRelease(t *testing.T) {
	protected := []req{post(uuidPath(u1), secretS1)}
	unprotected := []req{post(uuidPath(u1), "")}
	gone := wantGone("public", locklock.KindUUID, u1)
	released := func(t *testing.T, e *env, rec *httptest.ResponseRecorder, setup []lockJSON) {
		if got := releasedBody(t, rec); got.FencingToken != setup[0].FencingToken || got.Name != u1 {
			t.Errorf("released lock %+v, want %+v", got, setup[0])
		}
		gone(t, e, rec, setup)
	}
	runCases(t, []tcase{
		{name: "body secret", setup: protected, req: del(uuidPath(u1), `{"secret":"s1"}`), status: http.StatusOK, check: released},
		{name: "header secret", setup: protected, req: del(uuidPath(u1), "", "Locklock-Secret", "s1"), status: http.StatusOK, check: released},
		{name: "header and body agree", setup: protected, req: del(uuidPath(u1), `{"secret":"s1"}`, "Locklock-Secret", "s1"), status: http.StatusOK, check: released},
		{name: "upper-case UUID", setup: protected, req: del(uuidPath(strings.ToUpper(u1)), `{"secret":"s1"}`), status: http.StatusOK, check: released},
		{name: "unprotected, no secret", setup: unprotected, req: del(uuidPath(u1), ""), status: http.StatusOK, check: released},
		{name: "unprotected, any secret", setup: unprotected, req: del(uuidPath(u1), `{"secret":"whatever"}`), status: http.StatusOK, check: released},
		{name: "header and body differ", setup: protected, req: del(uuidPath(u1), `{"secret":"s1"}`, "Locklock-Secret", "s2"), status: http.StatusBadRequest, code: codeInvalidBody},
		{name: "header given twice", setup: protected, req: del(uuidPath(u1), "", "Locklock-Secret", "s1", "Locklock-Secret", "s1"), status: http.StatusBadRequest, code: codeInvalidBody},
		{name: "empty header", setup: protected, req: del(uuidPath(u1), "", "Locklock-Secret", ""), status: http.StatusBadRequest, code: codeInvalidBody},
		{name: "header not UTF-8", setup: protected, req: del(uuidPath(u1), "", "Locklock-Secret", "s\xff"), status: http.StatusBadRequest, code: codeInvalidBody},
		{name: "wrong body secret", setup: protected, req: del(uuidPath(u1), `{"secret":"s2"}`), status: http.StatusForbidden, code: codeSecretMismatch},
		{name: "wrong header secret", setup: protected, req: del(uuidPath(u1), "", "Locklock-Secret", "s2"), status: http.StatusForbidden, code: codeSecretMismatch},
		{name: "missing secret", setup: protected, req: del(uuidPath(u1), ""), status: http.StatusForbidden, code: codeSecretMismatch},
		{name: "never acquired", req: del(uuidPath(u1), `{"secret":"s1"}`), status: http.StatusNotFound, code: codeLockNotFound},
		{name: "already released", setup: append(protected, del(uuidPath(u1), `{"secret":"s1"}`)), req: del(uuidPath(u1), `{"secret":"s1"}`), status: http.StatusNotFound, code: codeLockNotFound},
		{name: "expired, right secret", setup: protected, advance: time.Minute, req: del(uuidPath(u1), `{"secret":"s1"}`), status: http.StatusNotFound, code: codeLockNotFound},
		{name: "expired, wrong secret", setup: protected, advance: time.Minute, req: del(uuidPath(u1), `{"secret":"s2"}`), status: http.StatusNotFound, code: codeLockNotFound},
		{name: "other namespace's lock", setup: protected, req: del(uuidPath(u1), `{"secret":"s1"}`, "Authorization", proKey), status: http.StatusNotFound, code: codeLockNotFound},
	})
}

func TestInspect(t *testing.T) {
	protected := []req{post(uuidPath(u1), secretS1)}
	runCases(t, []tcase{{
		name: "GET", setup: protected, advance: 10500 * time.Millisecond,
		req: get(uuidPath(u1)), status: http.StatusOK,
		check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, setup []lockJSON) {
			want := setup[0]
			want.ExpiresIn = 49 // 49.5 s left, rounded down
			if got := lockBody(t, rec); !reflect.DeepEqual(got, want) {
				t.Errorf("lock %+v, want %+v", got, want)
			}
		},
	}, {
		name: "HEAD", setup: protected, req: head(uuidPath(u1)), status: http.StatusOK,
		check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, _ []lockJSON) {
			if rec.Body.Len() != 0 {
				t.Errorf("HEAD body %q", rec.Body)
			}
		},
	}, {
		name: "GET ignores a body", setup: protected, status: http.StatusOK,
		req: req{method: http.MethodGet, path: uuidPath(u1), body: "[not json", hdr: []string{"Content-Type", "text/plain"}},
	}, {
		name: "GET upper-case UUID", setup: protected, req: get(uuidPath(strings.ToUpper(u1))), status: http.StatusOK,
	},
		{name: "GET never acquired", req: get(uuidPath(u1)), status: http.StatusNotFound, code: codeLockNotFound},
		{name: "HEAD never acquired", req: head(uuidPath(u1)), status: http.StatusNotFound, code: codeLockNotFound},
		{name: "GET expired", setup: protected, advance: time.Minute, req: get(uuidPath(u1)), status: http.StatusNotFound, code: codeLockNotFound},
		{name: "GET other namespace", setup: protected, req: get(uuidPath(u1), "Authorization", proKey), status: http.StatusNotFound, code: codeLockNotFound},
	})
}

func TestRefresh(t *testing.T) {
	protected := []req{post(uuidPath(u1), secretS1)}
	refreshed := func(expiresAt string, expiresIn int64) func(*testing.T, *env, *httptest.ResponseRecorder, []lockJSON) {
		return func(t *testing.T, e *env, rec *httptest.ResponseRecorder, setup []lockJSON) {
			want := setup[0]
			want.ExpiresAt, want.ExpiresIn = expiresAt, expiresIn
			if got := lockBody(t, rec); !reflect.DeepEqual(got, want) {
				t.Errorf("lock %+v, want %+v", got, want)
			}
			if l, err := e.get("public", locklock.KindUUID, u1); err != nil || formatTime(l.ExpiresAt) != expiresAt {
				t.Errorf("stored %+v, %v", l, err)
			}
		}
	}
	runCases(t, []tcase{
		{
			name: "new expiry, same token", setup: protected, advance: 30 * time.Second,
			req: patch(uuidPath(u1), `{"secret":"s1","expires_in":120}`), status: http.StatusOK,
			check: refreshed("2026-11-26T15:06:35.123Z", 120),
		},
		{
			name: "header secret", setup: protected,
			req: patch(uuidPath(u1), `{"expires_in":120}`, "Locklock-Secret", "s1"), status: http.StatusOK,
			check: refreshed("2026-11-26T15:06:05.123Z", 120),
		},
		{
			name: "no expires_in: the default", setup: protected,
			req: patch(uuidPath(u1), `{"secret":"s1"}`), status: http.StatusOK,
			check: refreshed("2026-12-26T15:04:05.123Z", 2592000),
		},
		{
			name: "unprotected, no body", setup: []req{post(uuidPath(u1), `{"expires_in":5}`)},
			req: patch(uuidPath(u1), ""), status: http.StatusOK,
			check: refreshed("2026-12-26T15:04:05.123Z", 2592000),
		},
		{name: "never acquired", req: patch(uuidPath(u1), `{"secret":"s1","expires_in":120}`), status: http.StatusNotFound, code: codeLockNotFound},
		{name: "expired", setup: protected, advance: time.Minute, req: patch(uuidPath(u1), `{"secret":"s1","expires_in":120}`), status: http.StatusNotFound, code: codeLockNotFound},
		{name: "wrong secret", setup: protected, req: patch(uuidPath(u1), `{"secret":"s2","expires_in":120}`), status: http.StatusForbidden, code: codeSecretMismatch},
		{name: "missing secret", setup: protected, req: patch(uuidPath(u1), `{"expires_in":120}`), status: http.StatusForbidden, code: codeSecretMismatch},
		{name: "above the maximum", setup: protected, req: patch(uuidPath(u1), `{"secret":"s1","expires_in":31536001}`), status: http.StatusBadRequest, code: codeInvalidBody},
	})
}
