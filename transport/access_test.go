package transport

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/locklock/locklock/engines/memory"
	"github.com/locklock/locklock/internal/keyauth"
	"github.com/locklock/locklock/internal/keys"
	"github.com/locklock/locklock/locklock"
	"github.com/locklock/locklock/transport/ratelimit"
)

const (
	acmeKey   = "llk_acme-test-key"
	globexKey = "llk_globex-test-key"
	devKeyStr = "llk_dev-test-key"
)

// accessEnv is a handler with real API-key authentication and throttling.
type accessEnv struct {
	*env
	clock *fakeNow
	store *keys.Store
}

type fakeNow struct{ t time.Time }

func (f *fakeNow) Now() time.Time { return f.t }

func keysFile(anonymous *keys.AnonymousPolicy, anonRate float64, anonBurst int) keys.File {
	return keys.File{
		Anonymous: anonymous,
		Plans: map[string]keys.Plan{
			"developer": {CustomNames: false, Rate: anonRate, Burst: anonBurst},
			"pro":       {CustomNames: true},
		},
		Keys: []keys.Key{
			{ID: "acme-ci", Namespace: "acme", Plan: "pro", SHA256: keys.HashKey(acmeKey)},
			{ID: "globex", Namespace: "globex", Plan: "pro", SHA256: keys.HashKey(globexKey)},
			{ID: "dev", Namespace: "devco", Plan: "developer", SHA256: keys.HashKey(devKeyStr)},
		},
	}
}

// keyAuthenticator is what app hands transport: the keys file's
// authenticator, its Caller converted to transport's.
func keyAuthenticator(a keyauth.Access) func(*http.Request) (Caller, error) {
	auth := keyauth.New(a)
	return func(r *http.Request) (Caller, error) {
		c, err := auth(r)
		return Caller(c), err
	}
}

func newAccessEnv(t *testing.T, file keys.File) *accessEnv {
	t.Helper()
	eng := &spyEngine{Engine: memory.New(), held: make(chan struct{}, 1)}
	t.Cleanup(func() { _ = eng.Close() })
	clock := locklock.NewManualClock(start)
	svc := locklock.NewService(eng, locklock.WithClock(clock))
	store := keys.NewStore(keys.NewIndex(file))
	now := &fakeNow{t: start}
	h := NewHandler(svc,
		WithAuthenticator(keyAuthenticator(keyauth.Access{Keys: store, BaseDomain: "locks.example.com"})),
		WithRateLimiter(ratelimit.New(ratelimit.WithClock(now.Now))),
	)
	return &accessEnv{env: &env{t: t, engine: eng, clock: clock, svc: svc, h: h}, clock: now, store: store}
}

func TestKeyAuthentication(t *testing.T) {
	e := newAccessEnv(t, keysFile(&keys.AnonymousPolicy{Plan: "developer"}, 0, 0))
	bearer := func(k string) []string { return []string{"Authorization", "Bearer " + k} }
	host := func(h string, kv ...string) []string { return append([]string{"Host", h}, kv...) }
	cases := []struct {
		name   string
		req    req
		status int
		code   string
		ns     string // namespace of the lock in a success
	}{
		{"anonymous uuid", post(uuidPath(u1), ""), 201, "", "public"},
		{"anonymous key route", post(keyPath("deploy"), ""), 401, codeUnauthorized, ""},
		{"anonymous list", get("/locks?kind=uuid"), 401, codeUnauthorized, ""},
		{"pro key, custom name", post(keyPath("deploy"), "", bearer(acmeKey)...), 201, "", "acme"},
		{"pro key, uuid in its namespace", post(uuidPath(u1), "", bearer(acmeKey)...), 201, "", "acme"},
		{"developer key, custom name", post(keyPath("deploy"), "", bearer(devKeyStr)...), 403, codeForbidden, ""},
		{"developer key, uuid", post(uuidPath(u1), "", bearer(devKeyStr)...), 201, "", "devco"},
		{"unknown key", post(uuidPath(u2), "", bearer("llk_nope")...), 401, codeUnauthorized, ""},
		{"not bearer", post(uuidPath(u2), "", "Authorization", "Basic YTpi"), 401, codeUnauthorized, ""},
		{"empty bearer", post(uuidPath(u2), "", "Authorization", "Bearer "), 401, codeUnauthorized, ""},
		{"subdomain, its key", post(keyPath("nightly"), "", host("acme.locks.example.com", bearer(acmeKey)...)...), 201, "", "acme"},
		{"subdomain with port, its key", post(keyPath("weekly"), "", host("ACME.locks.example.com:8080", bearer(acmeKey)...)...), 201, "", "acme"},
		{"subdomain, other namespace's key", post(keyPath("nightly"), "", host("acme.locks.example.com", bearer(globexKey)...)...), 403, codeForbidden, ""},
		{"subdomain, anonymous", post(uuidPath(u2), "", host("acme.locks.example.com")...), 401, codeUnauthorized, ""},
		{"base domain, anonymous", post(uuidPath(u2), "", host("locks.example.com")...), 201, "", "public"},
		{"other host, key", post(keyPath("other-host"), "", host("elsewhere.test", bearer(globexKey)...)...), 201, "", "globex"},
		{"nested subdomain is served as the base", post(keyPath("nested"), "", host("a.acme.locks.example.com", bearer(globexKey)...)...), 201, "", "globex"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := e.snapshotAll()
			rec := e.do(c.req)
			if c.code != "" {
				checkRecProblem(t, rec, c.status, c.code)
				if after := e.snapshotAll(); len(after) != len(before) {
					t.Errorf("a refused request changed locks")
				}
				return
			}
			if rec.Code != c.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, c.status, rec.Body)
			}
			var l lockJSON
			decodeStrict(t, rec.Body.Bytes(), &l)
			if l.Namespace != c.ns {
				t.Errorf("namespace %q, want %q", l.Namespace, c.ns)
			}
		})
	}

	// Namespaces are isolated: globex cannot see, release, refresh or list
	// acme's lock; it is simply not there for them.
	for _, q := range []req{
		get(keyPath("deploy"), bearer(globexKey)...),
		del(keyPath("deploy"), "", bearer(globexKey)...),
		patch(keyPath("deploy"), `{"expires_in":60}`, bearer(globexKey)...),
	} {
		checkRecProblem(t, e.do(q), http.StatusNotFound, codeLockNotFound)
	}
	rec := e.do(get("/locks?kind=key", bearer(globexKey)...))
	var page listJSON
	decodeStrict(t, rec.Body.Bytes(), &page)
	for _, l := range page.Locks {
		if l.Namespace != "globex" {
			t.Errorf("globex's listing shows %s/%s", l.Namespace, l.Name)
		}
	}
	rec = e.do(get("/locks?kind=key", bearer(acmeKey)...))
	decodeStrict(t, rec.Body.Bytes(), &page)
	if len(page.Locks) != 3 {
		t.Errorf("acme's listing has %d key locks, want 3 (deploy, nightly, weekly): %s", len(page.Locks), rec.Body)
	}
}

func TestAnonymousOff(t *testing.T) {
	e := newAccessEnv(t, keysFile(nil, 0, 0))
	checkRecProblem(t, e.do(post(uuidPath(u1), "")), http.StatusUnauthorized, codeUnauthorized)
	if rec := e.do(post(uuidPath(u1), "", "Authorization", "Bearer "+acmeKey)); rec.Code != http.StatusCreated {
		t.Errorf("a key with anonymous access off: %d", rec.Code)
	}
}

func TestThrottling(t *testing.T) {
	e := newAccessEnv(t, keysFile(&keys.AnonymousPolicy{Plan: "developer"}, 1, 3))
	from := func(addr string, q req) *httptest.ResponseRecorder {
		r := httptest.NewRequest(q.method, "http://locklock.test"+q.path, nil)
		r.RemoteAddr = addr
		for i := 0; i+1 < len(q.hdr); i += 2 {
			r.Header.Add(q.hdr[i], q.hdr[i+1])
		}
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, r)
		return rec
	}
	// Three requests in the bucket, counting down; the fourth is refused.
	for i := range 3 {
		rec := from("192.0.2.1:1234", get(uuidPath(u1)))
		if rec.Code != http.StatusNotFound {
			t.Fatalf("request %d: %d", i, rec.Code)
		}
		if got := rec.Header().Get("RateLimit-Remaining"); got != strconv.Itoa(2-i) || rec.Header().Get("RateLimit-Limit") != "3" {
			t.Errorf("request %d: RateLimit-Limit %q Remaining %q", i, rec.Header().Get("RateLimit-Limit"), got)
		}
	}
	before := e.snapshot()
	rec := from("192.0.2.1:9999", post(uuidPath(u1), ""))
	checkRecProblem(t, rec, http.StatusTooManyRequests, codeRateLimited)
	if rec.Header().Get("Retry-After") != "1" || rec.Header().Get("RateLimit-Remaining") != "0" || rec.Header().Get("RateLimit-Reset") != "3" {
		t.Errorf("429 headers: Retry-After %q Remaining %q Reset %q", rec.Header().Get("Retry-After"), rec.Header().Get("RateLimit-Remaining"), rec.Header().Get("RateLimit-Reset"))
	}
	e.assertUnchanged(before)
	// Another address has its own bucket; a pro key has no limit at all.
	if rec := from("192.0.2.2:1", get(uuidPath(u1))); rec.Code != http.StatusNotFound {
		t.Errorf("another address: %d", rec.Code)
	}
	for range 10 {
		rec := from("192.0.2.1:1", get(uuidPath(u1), "Authorization", "Bearer "+acmeKey))
		if rec.Code != http.StatusNotFound || rec.Header().Get("RateLimit-Limit") != "" {
			t.Fatalf("pro key from a throttled address: %d, RateLimit-Limit %q", rec.Code, rec.Header().Get("RateLimit-Limit"))
		}
	}
	// A second later one token is back.
	e.clock.t = e.clock.t.Add(time.Second)
	if rec := from("192.0.2.1:1", get(uuidPath(u1))); rec.Code != http.StatusNotFound {
		t.Errorf("after a second: %d", rec.Code)
	}
}

// Semaphore routes are throttled like lock routes: a refused acquire takes
// no slot.
func TestThrottlingSemaphores(t *testing.T) {
	e := newAccessEnv(t, keysFile(&keys.AnonymousPolicy{Plan: "developer"}, 1, 1))
	if rec := e.do(post(semU1, `{"limit":2}`)); rec.Code != http.StatusCreated || rec.Header().Get("RateLimit-Remaining") != "0" {
		t.Fatalf("first acquire: %d, RateLimit-Remaining %q", rec.Code, rec.Header().Get("RateLimit-Remaining"))
	}
	locks, slots := e.snapshot(), e.slots()
	for _, q := range []req{post(semU1, `{"limit":2}`), get(semU1), del(semU1+"/Wq3x9Zt0Rr6uKp1LmN2b4A", "")} {
		rec := e.do(q)
		checkRecProblem(t, rec, http.StatusTooManyRequests, codeRateLimited)
		if rec.Header().Get("Retry-After") != "1" {
			t.Errorf("%s: Retry-After %q", q.method, rec.Header().Get("Retry-After"))
		}
	}
	e.assertUnchanged(locks)
	e.assertSlotsUnchanged(slots)
	if rec := e.do(get("/semaphores?kind=key", "Authorization", "Bearer "+acmeKey)); rec.Code != http.StatusOK {
		t.Errorf("a key's listing from the throttled address: %d", rec.Code)
	}
}

func TestKeysReloadTakesEffect(t *testing.T) {
	e := newAccessEnv(t, keysFile(&keys.AnonymousPolicy{Plan: "developer"}, 0, 0))
	newKey := "llk_new-after-reload"
	checkRecProblem(t, e.do(post(uuidPath(u1), "", "Authorization", "Bearer "+newKey)), http.StatusUnauthorized, codeUnauthorized)
	f := keysFile(&keys.AnonymousPolicy{Plan: "developer"}, 0, 0)
	f.Keys = append(f.Keys, keys.Key{ID: "new", Namespace: "newco", Plan: "pro", SHA256: keys.HashKey(newKey)})
	e.store.Replace(keys.NewIndex(f))
	if rec := e.do(post(uuidPath(u1), "", "Authorization", "Bearer "+newKey)); rec.Code != http.StatusCreated {
		t.Errorf("new key after the swap: %d %s", rec.Code, rec.Body)
	}
}

// snapshotAll is every lock of the namespaces these tests use.
func (e *accessEnv) snapshotAll() []locklock.Lock {
	var all []locklock.Lock
	for _, ns := range []string{"public", "acme", "globex", "devco"} {
		for _, kind := range []locklock.Kind{locklock.KindUUID, locklock.KindKey} {
			page, err := e.svc.List(e.t.Context(), locklock.ListRequest{Namespace: ns, Kind: kind, Limit: locklock.MaxListLimit})
			if err != nil {
				e.t.Fatal(err)
			}
			all = append(all, page.Locks...)
		}
	}
	return all
}
