package transport

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/locklock/locklock/internal/abbrev"
	"github.com/locklock/locklock/locklock"
)

func TestKeyRoutesAndCallers(t *testing.T) {
	var cases []tcase
	// Anonymous callers are refused before the name is looked at.
	for _, name := range []string{"build", "", "a/b", "not%20valid!"} {
		for _, q := range []req{post(keyPath(name), ""), del(keyPath(name), ""), patch(keyPath(name), ""), get(keyPath(name)), head(keyPath(name))} {
			cases = append(cases, tcase{
				name: "anonymous " + q.method + " " + q.path, req: q,
				status: http.StatusUnauthorized, code: codeUnauthorized,
				check: wantHeader("WWW-Authenticate", `Bearer realm="locklock"`),
			})
		}
	}
	for _, name := range []string{"build", ""} {
		cases = append(cases, tcase{
			name: "plan without custom names " + name, req: post(keyPath(name), "", "Authorization", devKey),
			status: http.StatusForbidden, code: codeForbidden,
		})
	}
	cases = append(cases, []tcase{
		{name: "unknown key", req: post(uuidPath(u1), "", "Authorization", badKey), status: http.StatusUnauthorized, code: codeUnauthorized},
		{name: "forbidden key", req: post(uuidPath(u1), "", "Authorization", bannedKey), status: http.StatusForbidden, code: codeForbidden},
		{name: "authenticator bug", req: post(uuidPath(u1), "", "Authorization", brokenKey), status: http.StatusInternalServerError, code: codeInternal},
		{
			name: "plan without custom names uses UUIDs in its namespace", req: post(uuidPath(u1), "", "Authorization", devKey),
			status: http.StatusCreated,
			check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, _ []lockJSON) {
				if got := lockBody(t, rec); got.Namespace != "devco" {
					t.Errorf("namespace %q", got.Namespace)
				}
			},
		},
		{
			name: "pro acquires a key lock", req: post(keyPath("build:main~1.2_x-y"), secretS1, "Authorization", proKey),
			status: http.StatusCreated,
			check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, _ []lockJSON) {
				got := lockBody(t, rec)
				if got.Namespace != "acme" || got.Kind != "key" || got.Name != "build:main~1.2_x-y" || !got.Protected {
					t.Errorf("lock %+v", got)
				}
			},
		},
		{name: "pro, 255 characters", req: post(keyPath(strings.Repeat("x", 255)), "", "Authorization", proKey), status: http.StatusCreated},
		{name: "pro, names are case-sensitive", setup: []req{post(keyPath("Build"), "", "Authorization", proKey)}, req: post(keyPath("build"), "", "Authorization", proKey), status: http.StatusCreated},
		{name: "pro, held key lock", setup: []req{post(keyPath("build"), secretS1, "Authorization", proKey)}, req: post(keyPath("build"), "", "Authorization", proKey), status: http.StatusConflict, code: codeLockHeld},
		{
			name: "pro GET, PATCH and DELETE a key lock", setup: []req{post(keyPath("build"), secretS1, "Authorization", proKey)},
			req: get(keyPath("build"), "Authorization", proKey), status: http.StatusOK,
			check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, setup []lockJSON) {
				if got := lockBody(t, rec); !reflect.DeepEqual(got, setup[0]) {
					t.Errorf("GET %+v, want %+v", got, setup[0])
				}
				if got := e.must(patch(keyPath("build"), `{"secret":"s1","expires_in":7}`, "Authorization", proKey)); got.ExpiresIn != 7 {
					t.Errorf("PATCH %+v", got)
				}
				e.must(del(keyPath("build"), "", "Authorization", proKey, "Locklock-Secret", "s1"))
				wantGone("acme", locklock.KindKey, "build")(t, e, rec, setup)
			},
		},
		{
			name: "namespaces are separate", setup: []req{post(uuidPath(u1), secretS1)},
			req: post(uuidPath(u1), `{"secret":"s2"}`, "Authorization", proKey), status: http.StatusCreated,
			check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, _ []lockJSON) {
				if got := lockBody(t, rec); got.Namespace != "acme" {
					t.Errorf("namespace %q", got.Namespace)
				}
			},
		},
	}...)
	runCases(t, cases)
}

func TestDefaultAuthenticatorIsAnonymous(t *testing.T) {
	svc := locklock.NewService(newEnv(t).engine)
	h := NewHandler(svc)
	for _, q := range []req{post(keyPath("build"), "", "Authorization", proKey), get("/locks?kind=uuid", "Authorization", proKey)} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(q.method, q.path, nil))
		checkRecProblem(t, rec, http.StatusUnauthorized, codeUnauthorized)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, uuidPath(u1), nil))
	if rec.Code != http.StatusCreated || lockBody(t, rec).Namespace != locklock.DefaultNamespace {
		t.Errorf("anonymous acquire: %d %s", rec.Code, rec.Body)
	}
}

func TestInvalidNames(t *testing.T) {
	badUUIDs := []string{
		"", "not-a-uuid", u1 + "0", u1[:35], "{" + u1 + "}", strings.ReplaceAll(u1, "-", ""),
		"g" + u1[1:], u1 + "/", "a/b", u1[:8] + "%2F" + u1[9:], "%0A" + u1[1:], strings.Repeat("a", 300),
		"/" + u1, "../" + u1, "./" + u1,
	}
	badKeys := []string{"", "a/b", "/a", "a/", strings.Repeat("x", 256), "a%20b", "%C3%A4", "a*b", "a%00", "%0A", "a//b", "a%2Fb"}
	var cases []tcase
	add := func(path, code string, hdr ...string) {
		for _, q := range []req{post(path, "", hdr...), del(path, "", hdr...), patch(path, "", hdr...), get(path, hdr...), head(path, hdr...)} {
			status := http.StatusBadRequest
			cases = append(cases, tcase{
				name: q.method + " " + abbrev.String(q.path), req: q, status: status, code: code,
				// Something to lose if a bad name were taken for this one.
				setup: []req{post(uuidPath(u1), ""), post(keyPath("a"), "", "Authorization", proKey)},
			})
		}
	}
	for _, n := range badUUIDs {
		add(uuidPath(n), codeInvalidUUID)
	}
	for _, n := range badKeys {
		add(keyPath(n), codeInvalidName, "Authorization", proKey)
	}
	runCases(t, cases)
}
