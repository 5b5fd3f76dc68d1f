package client_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
	"github.com/locklock/locklock/transport/client"
)

// sentinels are the core errors a client error may match; each error must
// match exactly the one it is about, and none of the others.
var sentinels = []error{
	locklock.ErrHeld, locklock.ErrDelayed, locklock.ErrNotFound, locklock.ErrSecretMismatch,
	locklock.ErrUnauthorized, locklock.ErrForbidden, locklock.ErrRateLimited,
	locklock.ErrUnavailable, locklock.ErrInvalidUUID, locklock.ErrInvalidName,
	locklock.ErrInvalidArgument,
	locklock.ErrSemaphoreFull, locklock.ErrLimitMismatch, locklock.ErrSemaphoreNotFound, locklock.ErrSlotNotFound,
}

// checkSentinel asserts that err matches want (nil: none) and no other
// sentinel.
func checkSentinel(t *testing.T, err, want error) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want %v", want)
	}
	for _, s := range sentinels {
		if got := errors.Is(err, s); got != (s == want) {
			t.Errorf("errors.Is(%v, %q) = %v, want %v", err, s, got, s == want)
		}
	}
}

func TestErrorMapping(t *testing.T) {
	target := client.UUID(u1)
	cases := []struct {
		name   string
		opts   []serverOption
		run    func(t *testing.T, s *testServer) error
		want   error // the sentinel; nil: none
		status int
		code   string
		check  func(t *testing.T, e *client.Error)
	}{
		{
			name: "held", want: locklock.ErrHeld, status: 409, code: "lock_held",
			run: func(t *testing.T, s *testServer) error {
				holder, err := s.client(t).Acquire(t.Context(), target, client.WithTTL(time.Minute))
				if err != nil {
					t.Fatal(err)
				}
				_, err = s.client(t).Acquire(t.Context(), target)
				e := asError(t, err)
				if !e.ExpiresAt.Equal(holder.ExpiresAt) {
					t.Errorf("ExpiresAt %v, want the holder's %v", e.ExpiresAt, holder.ExpiresAt)
				}
				return err
			},
			check: func(t *testing.T, e *client.Error) {
				if e.RetryAfter <= 58*time.Second || e.RetryAfter > time.Minute {
					t.Errorf("RetryAfter %v, want the ~60 s the holder has left", e.RetryAfter)
				}
			},
		},
		{
			name: "delayed", want: locklock.ErrDelayed, status: 409, code: "lock_delayed",
			opts: []serverOption{withManualClock()},
			run: func(t *testing.T, s *testServer) error {
				lost, err := s.client(t).Acquire(t.Context(), target, client.WithTTL(5*time.Second), client.WithLockDelay(10*time.Second))
				if err != nil {
					t.Fatal(err)
				}
				s.Clock.Advance(5500 * time.Millisecond)
				c := s.client(t)
				before := s.hits.Load()
				_, err = c.Acquire(t.Context(), target)
				if n := s.hits.Load() - before; n != 1 {
					t.Errorf("%d requests for a delayed acquire, want 1: it is not retried", n)
				}
				if e := asError(t, err); !e.DelayedUntil.Equal(lost.ExpiresAt.Add(10 * time.Second)) {
					t.Errorf("DelayedUntil %v, want the expiry %v plus 10 s", e.DelayedUntil, lost.ExpiresAt)
				}
				return err
			},
			check: func(t *testing.T, e *client.Error) {
				if e.RetryAfter != 10*time.Second {
					t.Errorf("RetryAfter %v, want 10s (9.5 s left, rounded up)", e.RetryAfter)
				}
			},
		},
		{
			name: "get during a lock-delay", want: locklock.ErrNotFound, status: 404, code: "lock_not_found",
			opts: []serverOption{withManualClock()},
			run: func(t *testing.T, s *testServer) error {
				lost, err := s.client(t).Acquire(t.Context(), target, client.WithTTL(5*time.Second), client.WithLockDelay(10*time.Second))
				if err != nil {
					t.Fatal(err)
				}
				s.Clock.Advance(6 * time.Second)
				_, err = s.client(t).Get(t.Context(), target)
				if e := asError(t, err); !e.DelayedUntil.Equal(lost.ExpiresAt.Add(10 * time.Second)) {
					t.Errorf("DelayedUntil %v, want the expiry %v plus 10 s", e.DelayedUntil, lost.ExpiresAt)
				}
				return err
			},
		},
		{
			name: "get unknown", want: locklock.ErrNotFound, status: 404, code: "lock_not_found",
			run: func(t *testing.T, s *testServer) error {
				_, err := s.client(t).Get(t.Context(), target)
				return err
			},
		},
		{
			name: "release unknown", want: locklock.ErrNotFound, status: 404, code: "lock_not_found",
			run: func(t *testing.T, s *testServer) error {
				_, err := s.client(t).Release(t.Context(), target, client.WithSecret("s"))
				return err
			},
		},
		{
			name: "refresh unknown", want: locklock.ErrNotFound, status: 404, code: "lock_not_found",
			run: func(t *testing.T, s *testServer) error {
				_, err := s.client(t).Refresh(t.Context(), target, client.WithSecret("s"))
				return err
			},
		},
		{
			name: "wrong secret", want: locklock.ErrSecretMismatch, status: 403, code: "secret_mismatch",
			run: func(t *testing.T, s *testServer) error {
				if _, err := s.client(t).Acquire(t.Context(), target); err != nil {
					t.Fatal(err)
				}
				_, err := s.client(t).Release(t.Context(), target, client.WithSecret("wrong"))
				if _, ok := s.stored(t, locklock.DefaultNamespace, target); !ok {
					t.Error("a refused release freed the lock")
				}
				return err
			},
		},
		{
			name: "missing secret", want: locklock.ErrSecretMismatch, status: 403, code: "secret_mismatch",
			run: func(t *testing.T, s *testServer) error {
				if _, err := s.client(t).Acquire(t.Context(), target); err != nil {
					t.Fatal(err)
				}
				_, err := s.client(t).Refresh(t.Context(), target)
				return err
			},
		},
		{
			name: "anonymous list", want: locklock.ErrUnauthorized, status: 401, code: "unauthorized",
			run: func(t *testing.T, s *testServer) error {
				_, err := s.client(t).List(t.Context(), client.ListOptions{})
				return err
			},
		},
		{
			name: "anonymous custom name", want: locklock.ErrUnauthorized, status: 401, code: "unauthorized",
			run: func(t *testing.T, s *testServer) error {
				_, err := s.client(t).Acquire(t.Context(), client.Key("deploy"))
				return err
			},
		},
		{
			name: "unknown API key", want: locklock.ErrUnauthorized, status: 401, code: "unauthorized",
			run: func(t *testing.T, s *testServer) error {
				_, err := s.client(t, client.WithAPIKey("llk_not-a-key")).Acquire(t.Context(), target)
				return err
			},
		},
		{
			name: "anonymous access off", want: locklock.ErrUnauthorized, status: 401, code: "unauthorized",
			opts: []serverOption{withAnonymousOff()},
			run: func(t *testing.T, s *testServer) error {
				_, err := s.client(t).Acquire(t.Context(), target)
				return err
			},
		},
		{
			name: "developer plan, custom name", want: locklock.ErrForbidden, status: 403, code: "forbidden",
			run: func(t *testing.T, s *testServer) error {
				_, err := s.client(t, client.WithAPIKey(s.DevKey)).Acquire(t.Context(), client.Key("deploy"))
				return err
			},
		},
		{
			name: "rate limited", want: locklock.ErrRateLimited, status: 429, code: "rate_limited",
			opts: []serverOption{withAnonRate(0.1, 1)},
			run: func(t *testing.T, s *testServer) error {
				c := s.client(t, client.WithRetries(0))
				if _, err := c.Get(t.Context(), target); !errors.Is(err, locklock.ErrNotFound) {
					t.Fatalf("first request: %v", err)
				}
				_, err := c.Acquire(t.Context(), target)
				if _, ok := s.stored(t, locklock.DefaultNamespace, target); ok {
					t.Error("a throttled acquire took the lock")
				}
				return err
			},
			check: func(t *testing.T, e *client.Error) {
				if e.RetryAfter != 10*time.Second {
					t.Errorf("RetryAfter %v, want 10s (one token at 0.1/s)", e.RetryAfter)
				}
			},
		},
		{
			name: "storage down", want: locklock.ErrUnavailable, status: 503, code: "unavailable",
			run: func(t *testing.T, s *testServer) error {
				if err := s.Engine.Close(); err != nil {
					t.Fatal(err)
				}
				_, err := s.client(t, client.WithRetries(0)).Get(t.Context(), target)
				return err
			},
			check: func(t *testing.T, e *client.Error) {
				if e.RetryAfter != time.Second {
					t.Errorf("RetryAfter %v, want 1s", e.RetryAfter)
				}
			},
		},
		{
			name: "ttl over the server's maximum", want: locklock.ErrInvalidArgument, status: 400, code: "invalid_body",
			run: func(t *testing.T, s *testServer) error {
				_, err := s.client(t).Acquire(t.Context(), target, client.WithTTL(400*24*time.Hour))
				return err
			},
		},
		{
			name: "wait over the server's maximum", want: locklock.ErrInvalidArgument, status: 400, code: "invalid_body",
			run: func(t *testing.T, s *testServer) error {
				_, err := s.client(t).Acquire(t.Context(), target, client.WithWait(2*time.Minute))
				return err
			},
		},
		{
			name: "secret too long", want: locklock.ErrInvalidArgument, status: 400, code: "invalid_body",
			run: func(t *testing.T, s *testServer) error {
				_, err := s.client(t).Acquire(t.Context(), target, client.WithSecret(strings.Repeat("s", locklock.MaxSecretLen+1)))
				return err
			},
		},
		{
			name: "list of an unknown kind", want: locklock.ErrInvalidArgument, status: 400, code: "invalid_body",
			run: func(t *testing.T, s *testServer) error {
				_, err := s.client(t, client.WithAPIKey(s.ProKey)).List(t.Context(), client.ListOptions{Kind: "lease"})
				return err
			},
		},
		{
			name: "internal error", want: nil, status: 500, code: "internal",
			run: func(t *testing.T, s *testServer) error {
				s.failNext(1, 500, "", false)
				_, err := s.client(t).Get(t.Context(), target)
				return err
			},
		},
		{
			name: "plain 502 from a proxy", want: locklock.ErrUnavailable, status: 502, code: "",
			run: func(t *testing.T, s *testServer) error {
				s.failNext(1, 502, "", true)
				_, err := s.client(t, client.WithRetries(0)).Get(t.Context(), target)
				return err
			},
			check: func(t *testing.T, e *client.Error) {
				if e.Detail != "502 Bad Gateway from the proxy" {
					t.Errorf("Detail %q, want the body, trimmed", e.Detail)
				}
				if msg := e.Error(); !strings.Contains(msg, "502") || !strings.Contains(msg, "Bad Gateway from the proxy") {
					t.Errorf("Error() = %q", msg)
				}
			},
		},
		{
			name: "plain 504 from a proxy", want: locklock.ErrUnavailable, status: 504, code: "",
			run: func(t *testing.T, s *testServer) error {
				s.failNext(1, 504, "", true)
				_, err := s.client(t, client.WithRetries(0)).Get(t.Context(), target)
				return err
			},
		},
		{
			name: "plain 429 with an HTTP-date Retry-After", want: locklock.ErrRateLimited, status: 429, code: "",
			run: func(t *testing.T, s *testServer) error {
				s.failNext(1, 429, time.Now().Add(3*time.Second).UTC().Format(http.TimeFormat), true)
				_, err := s.client(t, client.WithRetries(0)).Get(t.Context(), target)
				return err
			},
			check: func(t *testing.T, e *client.Error) {
				if e.RetryAfter < time.Second || e.RetryAfter > 3*time.Second {
					t.Errorf("RetryAfter %v, want about 2-3 s", e.RetryAfter)
				}
			},
		},
		{
			// A proxy's 404 is not the API's: it must not say the lock is gone.
			name: "plain 404 (wrong base URL)", want: nil, status: 404, code: "",
			run: func(t *testing.T, s *testServer) error {
				c, err := client.New(s.URL + "/elsewhere")
				if err != nil {
					t.Fatal(err)
				}
				_, err = c.Get(t.Context(), target)
				return err
			},
		},
		{
			// Nor is the API's own 404 for an unknown route.
			name: "unknown route", want: nil, status: 404, code: "not_found",
			run: func(t *testing.T, s *testServer) error {
				c, err := client.New(s.URL + "/v1/api/v2")
				if err != nil {
					t.Fatal(err)
				}
				_, err = c.Release(t.Context(), target)
				return err
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t, tc.opts...)
			err := tc.run(t, s)
			checkSentinel(t, err, tc.want)
			e := asError(t, err)
			if e.Status != tc.status || e.Code != tc.code {
				t.Errorf("Status %d Code %q, want %d %q", e.Status, e.Code, tc.status, tc.code)
			}
			if tc.code != "" && (e.Title == "" || e.Detail == "") {
				t.Errorf("problem without title or detail: %+v", e)
			}
			if e.Detail != "" && e.Error() != e.Detail {
				t.Errorf("Error() = %q, want the detail %q", e.Error(), e.Detail)
			}
			if tc.code != "lock_held" && !e.ExpiresAt.IsZero() {
				t.Errorf("ExpiresAt %v outside a lock_held", e.ExpiresAt)
			}
			if tc.code != "lock_delayed" && tc.name != "get during a lock-delay" && !e.DelayedUntil.IsZero() {
				t.Errorf("DelayedUntil %v outside a lock-delay", e.DelayedUntil)
			}
			if tc.check != nil {
				tc.check(t, e)
			}
		})
	}
}

// Names that break the API's rules fail in the client, before any request.
func TestClientSideValidation(t *testing.T) {
	s := newServer(t)
	c := s.client(t)
	ops := map[string]func(ctx context.Context, tg client.Target) error{
		"Acquire": func(ctx context.Context, tg client.Target) error { _, err := c.Acquire(ctx, tg); return err },
		"Release": func(ctx context.Context, tg client.Target) error {
			_, err := c.Release(ctx, tg, client.WithSecret("s"))
			return err
		},
		"Refresh": func(ctx context.Context, tg client.Target) error { _, err := c.Refresh(ctx, tg); return err },
		"Get":     func(ctx context.Context, tg client.Target) error { _, err := c.Get(ctx, tg); return err },
		"Hold": func(ctx context.Context, tg client.Target) error {
			h, err := c.Hold(ctx, tg, time.Second)
			if h != nil {
				t.Errorf("Hold returned a Held with error %v", err)
			}
			return err
		},
		"Do": func(ctx context.Context, tg client.Target) error {
			return c.Do(ctx, tg, func(context.Context, client.Lock) error {
				t.Error("fn ran for an invalid target")
				return nil
			})
		},
	}
	targets := []struct {
		target client.Target
		want   error
	}{
		{client.UUID("nope"), locklock.ErrInvalidUUID},
		{client.UUID(""), locklock.ErrInvalidUUID},
		{client.UUID(u1 + "0"), locklock.ErrInvalidUUID},
		{client.UUID("{" + u1 + "}"), locklock.ErrInvalidUUID},
		{client.UUID(strings.ReplaceAll(u1, "-", "")), locklock.ErrInvalidUUID},
		{client.UUID(u1[:35] + "g"), locklock.ErrInvalidUUID},
		{client.Key(""), locklock.ErrInvalidName},
		{client.Key("two words"), locklock.ErrInvalidName},
		{client.Key("a/b"), locklock.ErrInvalidName},
		{client.Key("a?b"), locklock.ErrInvalidName},
		{client.Key("ünïcode"), locklock.ErrInvalidName},
		{client.Key(strings.Repeat("k", locklock.MaxNameLen+1)), locklock.ErrInvalidName},
		{client.Target{Kind: "lease", Name: "x"}, locklock.ErrInvalidArgument},
		{client.Target{}, locklock.ErrInvalidArgument},
	}
	for name, op := range ops {
		for _, tc := range targets {
			t.Run(name+"/"+tc.target.String(), func(t *testing.T) {
				err := op(t.Context(), tc.target)
				checkSentinel(t, err, tc.want)
				var e *client.Error
				if errors.As(err, &e) {
					t.Errorf("got a server error %v; want a client-side one", e)
				}
			})
		}
	}
	if n := s.hits.Load(); n != 0 {
		t.Errorf("%d requests reached the server", n)
	}
}

func TestParseTarget(t *testing.T) {
	cases := []struct {
		in   string
		want client.Target
		err  error
	}{
		{"uuid/" + u1, client.UUID(u1), nil},
		{"uuid/" + strings.ToUpper(u1), client.UUID(strings.ToUpper(u1)), nil},
		{"key/nightly-report", client.Key("nightly-report"), nil},
		{"key/a.b_c-d:e~f", client.Key("a.b_c-d:e~f"), nil},
		{"key/" + strings.Repeat("k", locklock.MaxNameLen), client.Key(strings.Repeat("k", locklock.MaxNameLen)), nil},
		{"key/a/b", client.Target{}, locklock.ErrInvalidName},
		{"key/", client.Target{}, locklock.ErrInvalidName},
		{"uuid/nope", client.Target{}, locklock.ErrInvalidUUID},
		{u1, client.Target{}, locklock.ErrInvalidArgument},
		{"lease/x", client.Target{}, locklock.ErrInvalidArgument},
		{"UUID/" + u1, client.Target{}, locklock.ErrInvalidArgument},
		{"", client.Target{}, locklock.ErrInvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got, err := client.ParseTarget(tc.in)
			if tc.err != nil {
				checkSentinel(t, err, tc.err)
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseTarget = %+v, %v; want %+v", got, err, tc.want)
			}
			if got.String() != tc.in {
				t.Errorf("String() = %q, want %q", got.String(), tc.in)
			}
		})
	}
}

func TestErrorString(t *testing.T) {
	cases := []struct {
		err  client.Error
		want string
	}{
		{client.Error{Status: 409, Code: "lock_held", Title: "Lock is held", Detail: "lock x is held until noon"}, "lock x is held until noon"},
		{client.Error{Status: 409, Code: "lock_held", Title: "Lock is held"}, "Lock is held"},
		{client.Error{Status: 502, Detail: "bad gateway"}, "bad gateway"},
		{client.Error{Status: 504}, "504 Gateway Timeout"},
	}
	for _, tc := range cases {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
	// A code the client does not know (a newer server) matches no
	// sentinel, even with a status that byStatus knows.
	err := error(&client.Error{Status: 503, Code: "brand_new"})
	checkSentinel(t, err, nil)
}
