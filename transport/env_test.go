package transport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/locklock/locklock/engines/memory"
	"github.com/locklock/locklock/locklock"
)

const (
	u1 = "180da65c-cf80-4997-8574-0c0801817d6f"
	u2 = "28e5a3c1-0b7e-4c43-9d4e-7a7b9e2f6a11"
)

var start = time.Date(2026, 11, 26, 15, 4, 5, 123e6, time.UTC)

// Test callers, chosen by the Authorization header.
const (
	proKey    = "Bearer pro"    // namespace acme, custom names
	devKey    = "Bearer dev"    // namespace devco, UUID locks only
	bannedKey = "Bearer banned" // locklock.ErrForbidden
	badKey    = "Bearer bad"    // locklock.ErrUnauthorized
	brokenKey = "Bearer broken" // an authenticator bug: bad namespace
)

func testAuth(r *http.Request) (Caller, error) {
	switch r.Header.Get("Authorization") {
	case "":
		return AnonymousCaller(), nil
	case proKey:
		return Caller{Namespace: "acme", CustomNames: true}, nil
	case devKey:
		return Caller{Namespace: "devco"}, nil
	case bannedKey:
		return Caller{}, fmt.Errorf("%w: key revoked", locklock.ErrForbidden)
	case brokenKey:
		return Caller{Namespace: "Not A Namespace"}, nil
	default:
		return Caller{}, fmt.Errorf("%w: unknown API key", locklock.ErrUnauthorized)
	}
}

// spyEngine is the real memory engine, telling the test when an acquire
// found the lock held or in its lock-delay, or a slot did not fit (so a
// waiter is known to be waiting), and failing on demand.
type spyEngine struct {
	*memory.Engine
	held    chan struct{}
	full    chan struct{}
	failGet error
}

func (s *spyEngine) TryAcquireSlot(ctx context.Context, cand locklock.Slot, now time.Time, same func(locklock.Slot) bool) (locklock.Slot, bool, error) {
	got, created, err := s.Engine.TryAcquireSlot(ctx, cand, now, same)
	if errors.Is(err, locklock.ErrSemaphoreFull) {
		select {
		case s.full <- struct{}{}:
		default:
		}
	}
	return got, created, err
}

func (s *spyEngine) TryAcquire(ctx context.Context, l locklock.Lock, now time.Time) (locklock.Lock, error) {
	got, err := s.Engine.TryAcquire(ctx, l, now)
	if errors.Is(err, locklock.ErrHeld) || errors.Is(err, locklock.ErrDelayed) {
		select {
		case s.held <- struct{}{}:
		default:
		}
	}
	return got, err
}

func (s *spyEngine) Get(ctx context.Context, id locklock.ID, now time.Time) (locklock.Lock, error) {
	if s.failGet != nil {
		return locklock.Lock{}, s.failGet
	}
	return s.Engine.Get(ctx, id, now)
}

type env struct {
	t      *testing.T
	engine *spyEngine
	clock  *locklock.ManualClock
	svc    *locklock.Service
	h      http.Handler
}

func newEnv(t *testing.T, opts ...Option) *env {
	t.Helper()
	return newEnvWith(t, nil, opts...)
}

// newEnvWith is newEnv with options for the Service too.
func newEnvWith(t *testing.T, svcOpts []locklock.Option, opts ...Option) *env {
	t.Helper()
	eng := &spyEngine{Engine: memory.New(), held: make(chan struct{}, 1), full: make(chan struct{}, 1)}
	t.Cleanup(func() { _ = eng.Close() })
	clock := locklock.NewManualClock(start)
	svc := locklock.NewService(eng, append([]locklock.Option{locklock.WithClock(clock)}, svcOpts...)...)
	h := NewHandler(svc, append([]Option{WithAuthenticator(testAuth)}, opts...)...)
	return &env{t: t, engine: eng, clock: clock, svc: svc, h: h}
}

// req is one HTTP request; hdr holds name/value pairs.
type req struct {
	method, path, body string
	hdr                []string
}

func (e *env) do(q req) *httptest.ResponseRecorder {
	e.t.Helper()
	r := httptest.NewRequest(q.method, "http://locklock.test"+q.path, strings.NewReader(q.body))
	for i := 0; i+1 < len(q.hdr); i += 2 {
		if q.hdr[i] == "Host" { // net/http keeps it in r.Host, not the header map
			r.Host = q.hdr[i+1]
			continue
		}
		r.Header.Add(q.hdr[i], q.hdr[i+1])
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, r)
	return rec
}

// must runs a request that has to succeed and returns its lock object.
func (e *env) must(q req) lockJSON {
	e.t.Helper()
	rec := e.do(q)
	if rec.Code/100 != 2 {
		e.t.Fatalf("%s %s: status %d: %s", q.method, q.path, rec.Code, rec.Body)
	}
	var l lockJSON
	if q.method == http.MethodDelete {
		var rel releasedJSON
		decodeStrict(e.t, rec.Body.Bytes(), &rel)
		return rel.Lock
	}
	decodeStrict(e.t, rec.Body.Bytes(), &l)
	return l
}

// snapshot is every live lock of every test namespace, as stored.
func (e *env) snapshot() []locklock.Lock {
	e.t.Helper()
	var all []locklock.Lock
	for _, ns := range []string{"public", "acme", "devco"} {
		for _, kind := range []locklock.Kind{locklock.KindUUID, locklock.KindKey} {
			page, err := e.svc.List(context.Background(), locklock.ListRequest{Namespace: ns, Kind: kind, Limit: locklock.MaxListLimit})
			if err != nil {
				e.t.Fatalf("snapshot: %v", err)
			}
			for _, l := range page.Locks {
				l.ObservedAt = time.Time{}
				all = append(all, l)
			}
		}
	}
	return all
}

func (e *env) assertUnchanged(before []locklock.Lock) {
	e.t.Helper()
	if after := e.snapshot(); !reflect.DeepEqual(before, after) {
		e.t.Errorf("a rejected request changed locks:\nbefore %v\nafter  %v", before, after)
	}
}

// get reads a lock straight from the Service.
func (e *env) get(ns string, kind locklock.Kind, name string) (locklock.Lock, error) {
	e.t.Helper()
	id, err := locklock.NewID(ns, kind, name)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.svc.Get(context.Background(), id)
}

// decodeStrict decodes JSON, failing on fields v does not have.
func decodeStrict(t *testing.T, data []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode %T from %s: %v", v, data, err)
	}
}

// checkProblem asserts a valid RFC 9457 problem with the status and code.
func checkProblem(t *testing.T, status int, header http.Header, body []byte, wantStatus int, wantCode string) problem {
	t.Helper()
	if status != wantStatus {
		t.Errorf("status %d, want %d; body %s", status, wantStatus, body)
	}
	if ct := header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type %q, want application/problem+json", ct)
	}
	var p problem
	decodeStrict(t, body, &p)
	if p.Code != wantCode || p.Status != wantStatus || p.Type != "urn:locklock:error:"+wantCode ||
		p.Title == "" || p.Title != codeInfo[wantCode].title || p.Detail == "" {
		t.Errorf("problem %+v, want code %s status %d", p, wantCode, wantStatus)
	}
	if p.ExpiresAt != "" && wantCode != codeLockHeld {
		t.Errorf("expires_at %q on a %s problem", p.ExpiresAt, wantCode)
	}
	if p.DelayedUntil != "" && wantCode != codeLockDelayed && wantCode != codeLockNotFound {
		t.Errorf("delayed_until %q on a %s problem", p.DelayedUntil, wantCode)
	}
	if (p.Limit != nil) != (wantCode == codeSemaphoreFull || wantCode == codeLimitMismatch) {
		t.Errorf("limit %v on a %s problem", p.Limit, wantCode)
	}
	if (p.InUse != nil) != (wantCode == codeSemaphoreFull) {
		t.Errorf("in_use %v on a %s problem", p.InUse, wantCode)
	}
	return p
}

func checkRecProblem(t *testing.T, rec *httptest.ResponseRecorder, wantStatus int, wantCode string) problem {
	t.Helper()
	return checkProblem(t, rec.Code, rec.Header(), rec.Body.Bytes(), wantStatus, wantCode)
}

func checkResponseProblem(t *testing.T, resp *http.Response, wantStatus int, wantCode string) problem {
	t.Helper()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return checkProblem(t, resp.StatusCode, resp.Header, body, wantStatus, wantCode)
}
