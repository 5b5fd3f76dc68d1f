package transport

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/locklock/locklock/engines/memory"
	"github.com/locklock/locklock/internal/keyauth"
	"github.com/locklock/locklock/internal/keys"
	"github.com/locklock/locklock/locklock"
)

const opsKey = "llk_acme-ops-test-key" // namespace acme, an operator plan

// forceEnv is an API with the keys file's authenticator, an operator key
// of acme among acme's, globex's and devco's ordinary keys, and its log.
type forceEnv struct {
	*env
	log *bytes.Buffer
}

func newForceEnv(t *testing.T) *forceEnv {
	t.Helper()
	file := keysFile(&keys.AnonymousPolicy{Plan: "developer"}, 0, 0)
	file.Plans["ops"] = keys.Plan{CustomNames: true, Operator: true}
	file.Keys = append(file.Keys, keys.Key{ID: "acme-oncall", Namespace: "acme", Plan: "ops", SHA256: keys.HashKey(opsKey)})
	eng := &spyEngine{Engine: memory.New(), held: make(chan struct{}, 1)}
	t.Cleanup(func() { _ = eng.Close() })
	clock := locklock.NewManualClock(start)
	svc := locklock.NewService(eng, locklock.WithClock(clock))
	var log bytes.Buffer
	h := NewHandler(svc,
		WithAuthenticator(keyAuthenticator(keyauth.Access{Keys: keys.NewStore(keys.NewIndex(file))})),
		WithLogger(slog.New(slog.NewJSONHandler(&log, &slog.HandlerOptions{Level: slog.LevelInfo}))))
	return &forceEnv{env: &env{t: t, engine: eng, clock: clock, svc: svc, h: h}, log: &log}
}

func bearer(key string) []string { return []string{"Authorization", "Bearer " + key} }

func withForce(hdr []string, value string) []string {
	return append(append([]string{}, hdr...), forceHeader, value)
}

// auditLines are the log's `forced release` lines, decoded.
func (e *forceEnv) auditLines() []map[string]any {
	e.t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(e.log.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			e.t.Fatalf("log line %q: %v", line, err)
		}
		if m["msg"] == "forced release" {
			out = append(out, m)
		}
	}
	return out
}

// TestForcedRelease: an operator key ends a protected lock of its namespace
// without the secret (200, the lock as it was), a lock-delay starts then —
// binding the lost holder's secret too — and one audit line says who ended
// what, with no secret in it.
func TestForcedRelease(t *testing.T) {
	e := newForceEnv(t)
	held := e.must(req{method: "POST", path: "/lock/key/deploy", body: `{"secret":"the-holders-secret","lock_delay":10,"holder":"ci-42"}`, hdr: bearer(acmeKey)})

	rec := e.do(req{method: "DELETE", path: "/lock/key/deploy", hdr: withForce(bearer(opsKey), "true")})
	if rec.Code != http.StatusOK {
		t.Fatalf("forced release: %d %s", rec.Code, rec.Body)
	}
	var rel releasedJSON
	decodeStrict(t, rec.Body.Bytes(), &rel)
	if !rel.Released || rel.Lock.FencingToken != held.FencingToken || rel.Lock.Holder != "ci-42" {
		t.Errorf("forced release answered %+v, want released and the lock as it was", rel)
	}

	// The lock-delay, from the revoke, for everyone: the lost holder too.
	for _, body := range []string{`{"secret":"the-holders-secret"}`, `{"secret":"someone-else"}`, ``} {
		rec := e.do(req{method: "POST", path: "/lock/key/deploy", body: body, hdr: bearer(acmeKey)})
		p := checkRecProblem(t, rec, http.StatusConflict, "lock_delayed")
		if p.DelayedUntil != "2026-11-26T15:04:15.123Z" || !strings.Contains(p.Detail, "revoked by an operator") {
			t.Errorf("acquire %s during the revoke's lock-delay: delayed_until %q, detail %q; want the revoke + 10 s, and why", body, p.DelayedUntil, p.Detail)
		}
	}
	e.clock.Advance(10 * time.Second)
	next := e.must(req{method: "POST", path: "/lock/key/deploy", body: `{"secret":"the-holders-secret"}`, hdr: bearer(acmeKey)})
	if next.FencingToken <= held.FencingToken {
		t.Errorf("token after the lock-delay %d, want > %d", next.FencingToken, held.FencingToken)
	}

	lines := e.auditLines()
	if len(lines) != 1 {
		t.Fatalf("audit lines %v, want one", lines)
	}
	want := map[string]any{"level": "INFO", "key_id": "acme-oncall", "namespace": "acme", "kind": "key", "name": "deploy", "token": float64(held.FencingToken)}
	for k, v := range want {
		if lines[0][k] != v {
			t.Errorf("audit line %s = %v, want %v (line %v)", k, lines[0][k], v, lines[0])
		}
	}
	for _, secret := range []string{"the-holders-secret", opsKey, keys.HashKey(opsKey)} {
		if strings.Contains(e.log.String(), secret) {
			t.Errorf("the log holds %q: %s", secret, e.log)
		}
	}
}

// TestForceRefused: anyone but an operator who sends Locklock-Force gets
// 403 forbidden whatever its value, an operator who sends anything but
// "true" (or sends it twice) 400 invalid_body; none of that changes a lock,
// none of it is logged as a forced release, and no refusal falls back to
// an ordinary release — even of an unprotected lock.
func TestForceRefused(t *testing.T) {
	e := newForceEnv(t)
	e.must(req{method: "POST", path: "/lock/key/job", body: `{"secret":"s"}`, hdr: bearer(acmeKey)})
	e.must(req{method: "POST", path: "/lock/uuid/" + u1}) // public, unprotected
	e.must(req{method: "POST", path: "/lock/key/open", hdr: bearer(acmeKey)})
	before := e.snapshot()
	for _, tc := range []struct {
		name, path string
		hdr        []string
		status     int
		code       string
	}{
		{"ordinary key", "/lock/key/job", withForce(bearer(acmeKey), "true"), 403, "forbidden"},
		{"ordinary key, unprotected lock", "/lock/key/open", withForce(bearer(acmeKey), "true"), 403, "forbidden"},
		{"ordinary key, with the secret", "/lock/key/job", withForce(append(bearer(acmeKey), secretHeader, "s"), "true"), 403, "forbidden"},
		{"ordinary key, other value", "/lock/key/job", withForce(bearer(acmeKey), "false"), 403, "forbidden"},
		{"anonymous", "/lock/uuid/" + u1, []string{forceHeader, "true"}, 403, "forbidden"},
		{"operator, TRUE", "/lock/key/job", withForce(bearer(opsKey), "TRUE"), 400, "invalid_body"},
		{"operator, 1", "/lock/key/job", withForce(bearer(opsKey), "1"), 400, "invalid_body"},
		{"operator, false", "/lock/key/open", withForce(bearer(opsKey), "false"), 400, "invalid_body"},
		{"operator, empty", "/lock/key/job", withForce(bearer(opsKey), ""), 400, "invalid_body"},
		{"operator, twice", "/lock/key/job", withForce(withForce(bearer(opsKey), "true"), "true"), 400, "invalid_body"},
		{"operator, bad body", "/lock/key/job", withForce(bearer(opsKey), "true"), 400, "unknown_field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := ""
			if tc.name == "operator, bad body" {
				body = `{"force":true}`
			}
			rec := e.do(req{method: "DELETE", path: tc.path, body: body, hdr: tc.hdr})
			p := checkRecProblem(t, rec, tc.status, tc.code)
			if tc.status == 403 && !strings.Contains(p.Detail, "operator") {
				t.Errorf("detail %q does not say an operator key is needed", p.Detail)
			}
		})
	}
	e.assertUnchanged(before)
	if lines := e.auditLines(); len(lines) != 0 {
		t.Errorf("refusals logged as forced releases: %v", lines)
	}
}

// TestForceStaysInNamespace: an operator's forced release names a lock of
// its own namespace, as every request does: globex's lock of the same name
// is untouched, and a name only globex holds is not found.
func TestForceStaysInNamespace(t *testing.T) {
	e := newForceEnv(t)
	e.must(req{method: "POST", path: "/lock/key/shared-name", body: `{"secret":"g"}`, hdr: bearer(globexKey)})
	e.must(req{method: "POST", path: "/lock/key/shared-name", body: `{"secret":"a"}`, hdr: bearer(acmeKey)})
	e.must(req{method: "DELETE", path: "/lock/key/shared-name", hdr: withForce(bearer(opsKey), "true")})
	if _, err := e.get("acme", locklock.KindKey, "shared-name"); err == nil {
		t.Error("acme's lock is still held after the forced release")
	}
	if l, err := e.get("globex", locklock.KindKey, "shared-name"); err != nil || !l.Protected() {
		t.Errorf("globex's lock of the same name: %+v, %v; want it held", l, err)
	}
	e.must(req{method: "POST", path: "/lock/key/globex-only", hdr: bearer(globexKey)})
	rec := e.do(req{method: "DELETE", path: "/lock/key/globex-only", hdr: withForce(bearer(opsKey), "true")})
	checkRecProblem(t, rec, http.StatusNotFound, "lock_not_found")
	if _, err := e.get("globex", locklock.KindKey, "globex-only"); err != nil {
		t.Errorf("globex's lock after acme's operator tried it: %v", err)
	}
}

// TestForceOtherMethodsIgnore: the header means nothing but on DELETE: a
// POST, GET or PATCH that carries it, from anyone, is served as without it.
func TestForceOtherMethodsIgnore(t *testing.T) {
	e := newForceEnv(t)
	for _, q := range []req{
		{method: "POST", path: "/lock/key/x", body: `{"secret":"s"}`, hdr: withForce(bearer(acmeKey), "yes")},
		{method: "GET", path: "/lock/key/x", hdr: withForce(bearer(acmeKey), "true")},
		{method: "PATCH", path: "/lock/key/x", body: `{"secret":"s","expires_in":60}`, hdr: withForce(bearer(acmeKey), "true")},
		{method: "POST", path: "/lock/uuid/" + u2, hdr: []string{forceHeader, "true"}},
	} {
		if rec := e.do(q); rec.Code/100 != 2 {
			t.Errorf("%s %s with %s: %d %s", q.method, q.path, forceHeader, rec.Code, rec.Body)
		}
	}
	// And a PATCH without the secret is still refused: the header grants
	// nothing there.
	rec := e.do(req{method: "PATCH", path: "/lock/key/x", body: `{"expires_in":60}`, hdr: withForce(bearer(opsKey), "true")})
	checkRecProblem(t, rec, http.StatusForbidden, "secret_mismatch")
}

// TestForcedSlotRelease: an operator frees a protected slot without its
// secret, with an audit line naming the slot; others are refused.
func TestForcedSlotRelease(t *testing.T) {
	e := newForceEnv(t)
	rec := e.do(req{method: "POST", path: "/semaphore/key/pool", body: `{"limit":1,"secret":"s","holder":"w-1"}`, hdr: bearer(acmeKey)})
	var sl slotJSON
	decodeStrict(t, rec.Body.Bytes(), &sl)
	path := "/semaphore/key/pool/" + sl.Slot
	checkRecProblem(t, e.do(req{method: "DELETE", path: path, hdr: withForce(bearer(acmeKey), "true")}), http.StatusForbidden, "forbidden")
	checkRecProblem(t, e.do(req{method: "DELETE", path: path, hdr: withForce(bearer(opsKey), "yes")}), http.StatusBadRequest, "invalid_body")
	rec = e.do(req{method: "DELETE", path: path, hdr: withForce(bearer(opsKey), "true")})
	if rec.Code != http.StatusOK {
		t.Fatalf("forced slot release: %d %s", rec.Code, rec.Body)
	}
	// Room at once: slots have no lock-delay.
	if rec := e.do(req{method: "POST", path: "/semaphore/key/pool", body: `{"limit":1}`, hdr: bearer(acmeKey)}); rec.Code != http.StatusCreated {
		t.Errorf("acquire after the forced release: %d %s", rec.Code, rec.Body)
	}
	lines := e.auditLines()
	if len(lines) != 1 || lines[0]["key_id"] != "acme-oncall" || lines[0]["name"] != "pool" || lines[0]["slot"] != sl.Slot ||
		lines[0]["token"] != float64(sl.FencingToken) || lines[0]["namespace"] != "acme" {
		t.Errorf("audit lines %v, want one naming acme-oncall, pool, slot %s, token %d", lines, sl.Slot, sl.FencingToken)
	}
}

// TestWhoami: /whoami tells a caller its namespace, plan and powers, and
// never its key.
func TestWhoami(t *testing.T) {
	e := newForceEnv(t)
	for _, tc := range []struct {
		name string
		hdr  []string
		want whoamiJSON
	}{
		{"operator", bearer(opsKey), whoamiJSON{Namespace: "acme", KeyID: "acme-oncall", Plan: "ops", CustomNames: true, Operator: true}},
		{"pro", bearer(acmeKey), whoamiJSON{Namespace: "acme", KeyID: "acme-ci", Plan: "pro", CustomNames: true}},
		{"anonymous", nil, whoamiJSON{Namespace: "public", Anonymous: true, Plan: "developer"}},
	} {
		rec := e.do(req{method: "GET", path: "/whoami", hdr: tc.hdr})
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", tc.name, rec.Code, rec.Body)
		}
		var got whoamiJSON
		decodeStrict(t, rec.Body.Bytes(), &got)
		if got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
		if strings.Contains(rec.Body.String(), "llk_") {
			t.Errorf("%s: the answer holds a key: %s", tc.name, rec.Body)
		}
	}
	checkRecProblem(t, e.do(req{method: "GET", path: "/whoami", hdr: bearer("llk_unknown")}), http.StatusUnauthorized, "unauthorized")
}
