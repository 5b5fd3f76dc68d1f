package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/locklock/locklock/engines/memory"
	"github.com/locklock/locklock/internal/keyauth"
	"github.com/locklock/locklock/internal/keys"
	"github.com/locklock/locklock/locklock"
	"github.com/locklock/locklock/transport"
	"github.com/locklock/locklock/transport/client"
	"github.com/locklock/locklock/transport/ratelimit"
)

const (
	u1 = "180da65c-cf80-4997-8574-0c0801817d6f"
	u2 = "28e5a3c1-0b7e-4c43-9d4e-7a7b9e2f6a11"
	u3 = "3f1c2b4a-5d6e-4f70-8a9b-0c1d2e3f4a5b"
)

// testServer is the real API handler (memory engine, Service, key
// authentication, rate limiter) in an httptest server under /v1/api, behind
// a front that counts requests and can inject failures or freeze.
type testServer struct {
	URL    string // the server's root; client.New adds /v1/api
	Engine *memory.Engine
	Svc    *locklock.Service
	ProKey string // namespace acme, plan pro (custom names)
	DevKey string // namespace devco, plan developer (UUID locks only)
	OpsKey string // namespace acme, plan ops (an operator: forced releases)
	// Clock is the Service's clock with withManualClock; nil otherwise.
	Clock *locklock.ManualClock

	srv   *httptest.Server
	api   http.Handler
	hits  atomic.Int64          // requests that reached the front
	fault atomic.Pointer[fault] // the failure to inject, if any
	mu    sync.Mutex
	seenR []*http.Request // requests as received (headers only)

	frozenMu sync.Mutex
	frozen   chan struct{} // non-nil: requests wait until it is closed or they end
	stopped  chan struct{} // closed at cleanup, so nothing stays frozen
}

// fault answers the next n requests itself, without passing them on.
type fault struct {
	n          atomic.Int64
	status     int
	retryAfter string
	plain      bool // a text/plain body, as a proxy would send, not a problem
}

type serverConfig struct {
	anonRate  float64
	anonBurst int
	anonOff   bool
	wrap      func(http.Handler) http.Handler // around the API handler, inside the front
	mount     string                          // the API's prefix; default /v1/api
	clock     *locklock.ManualClock
	svcOpts   []locklock.Option
}

type serverOption func(*serverConfig)

// withAnonRate throttles anonymous callers (per client address) and the
// developer plan's keys.
func withAnonRate(rate float64, burst int) serverOption {
	return func(c *serverConfig) { c.anonRate, c.anonBurst = rate, burst }
}

func withWrap(w func(http.Handler) http.Handler) serverOption {
	return func(c *serverConfig) { c.wrap = w }
}

func withMount(prefix string) serverOption { return func(c *serverConfig) { c.mount = prefix } }

// withManualClock gives the Service a manual clock (testServer.Clock), so
// that a test can let locks expire and lock-delays run without sleeping.
func withManualClock() serverOption {
	return func(c *serverConfig) { c.clock = locklock.NewManualClock(time.Now().UTC().Truncate(time.Millisecond)) }
}

// withServiceOptions passes options (caps, say) to the Service.
func withServiceOptions(opts ...locklock.Option) serverOption {
	return func(c *serverConfig) { c.svcOpts = append(c.svcOpts, opts...) }
}

// withAnonymousOff refuses every request without an API key (401).
func withAnonymousOff() serverOption { return func(c *serverConfig) { c.anonOff = true } }

func newServer(t *testing.T, opts ...serverOption) *testServer {
	t.Helper()
	cfg := serverConfig{mount: client.APIPrefix}
	for _, o := range opts {
		o(&cfg)
	}
	proKey, err := keys.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	devKey, err := keys.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	opsKey, err := keys.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	file := keys.Default()
	file.Plans[keys.PlanDeveloper] = keys.Plan{Rate: cfg.anonRate, Burst: cfg.anonBurst}
	if cfg.anonOff {
		file.Anonymous = nil
	}
	file.Keys = []keys.Key{
		{ID: "acme-ci", Namespace: "acme", Plan: keys.PlanPro, SHA256: keys.HashKey(proKey)},
		{ID: "devco", Namespace: "devco", Plan: keys.PlanDeveloper, SHA256: keys.HashKey(devKey)},
		{ID: "acme-oncall", Namespace: "acme", Plan: "ops", SHA256: keys.HashKey(opsKey)},
	}
	file.Plans["ops"] = keys.Plan{CustomNames: true, Operator: true}
	if err := file.Validate(); err != nil {
		t.Fatal(err)
	}
	engine := memory.New()
	svcOpts := cfg.svcOpts
	if cfg.clock != nil {
		svcOpts = append(svcOpts, locklock.WithClock(cfg.clock))
	}
	svc := locklock.NewService(engine, svcOpts...)
	var api http.Handler = transport.NewHandler(svc,
		transport.WithAuthenticator(keyAuthenticator(keyauth.Access{Keys: keys.NewStore(keys.NewIndex(file))})),
		transport.WithRateLimiter(ratelimit.New()),
	)
	if cfg.wrap != nil {
		api = cfg.wrap(api)
	}
	s := &testServer{
		Engine:  engine,
		Svc:     svc,
		ProKey:  proKey,
		DevKey:  devKey,
		OpsKey:  opsKey,
		Clock:   cfg.clock,
		api:     api,
		stopped: make(chan struct{}),
	}
	// No ServeMux: it would redirect paths such as /lock/key/.. to their
	// cleaned form, as the standalone server (app) does not.
	s.srv = httptest.NewServer(http.StripPrefix(cfg.mount, http.HandlerFunc(s.serve)))
	s.URL = s.srv.URL
	t.Cleanup(func() {
		close(s.stopped)
		svc.StopWatching() // open event streams would hold Close up
		s.srv.Close()
		_ = engine.Close()
	})
	return s
}

func (s *testServer) serve(w http.ResponseWriter, r *http.Request) {
	s.hits.Add(1)
	s.mu.Lock()
	s.seenR = append(s.seenR, &http.Request{Method: r.Method, URL: r.URL, Header: r.Header.Clone(), Host: r.Host})
	s.mu.Unlock()
	if f := s.fault.Load(); f != nil && f.n.Add(-1) >= 0 {
		if f.retryAfter != "" {
			w.Header().Set("Retry-After", f.retryAfter)
		}
		if f.plain {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(f.status)
			fmt.Fprintf(w, "  %d %s from the proxy\n", f.status, http.StatusText(f.status))
			return
		}
		code := map[int]string{503: "unavailable", 429: "rate_limited", 500: "internal"}[f.status]
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(f.status)
		fmt.Fprintf(w, `{"type":"urn:locklock:error:%s","title":"injected","status":%d,"detail":"injected failure","code":%q}`, code, f.status, code)
		return
	}
	s.frozenMu.Lock()
	frozen := s.frozen
	s.frozenMu.Unlock()
	if frozen != nil {
		select {
		case <-frozen:
		case <-r.Context().Done():
			return
		case <-s.stopped:
			return
		}
	}
	s.api.ServeHTTP(w, r)
}

// failNext makes the next n requests fail with status (a problem body, or a
// plain-text one), never reaching the API.
func (s *testServer) failNext(n int, status int, retryAfter string, plain bool) {
	f := &fault{status: status, retryAfter: retryAfter, plain: plain}
	f.n.Store(int64(n))
	s.fault.Store(f)
}

// freeze makes the server stop answering: requests wait until unfreeze (or
// until the client gives up on them).
func (s *testServer) freeze() (unfreeze func()) {
	ch := make(chan struct{})
	s.frozenMu.Lock()
	s.frozen = ch
	s.frozenMu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.frozenMu.Lock()
			s.frozen = nil
			s.frozenMu.Unlock()
			close(ch)
		})
	}
}

// requests returns copies of the requests received so far.
func (s *testServer) requests() []*http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*http.Request(nil), s.seenR...)
}

// client is a client of s with short backoffs, so retry tests stay fast.
func (s *testServer) client(t *testing.T, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(s.URL, append([]client.Option{client.WithBackoff(5*time.Millisecond, 20*time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// stored is the lock as the server holds it (ns "public" for anonymous).
func (s *testServer) stored(t *testing.T, ns string, target client.Target) (locklock.Lock, bool) {
	t.Helper()
	id, err := locklock.NewID(ns, target.Kind, target.Name)
	if err != nil {
		t.Fatal(err)
	}
	l, err := s.Svc.Get(context.Background(), id)
	if errors.Is(err, locklock.ErrNotFound) {
		return locklock.Lock{}, false
	}
	if err != nil {
		t.Fatalf("server-side get %s: %v", id, err)
	}
	return l, true
}

// asError asserts that err is a *client.Error and returns it.
func asError(t *testing.T, err error) *client.Error {
	t.Helper()
	var e *client.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *client.Error", err, err)
	}
	return e
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// keyAuthenticator is what app hands transport: the keys file's
// authenticator, its Caller converted to transport's.
func keyAuthenticator(a keyauth.Access) func(*http.Request) (transport.Caller, error) {
	auth := keyauth.New(a)
	return func(r *http.Request) (transport.Caller, error) {
		c, err := auth(r)
		return transport.Caller(c), err
	}
}
