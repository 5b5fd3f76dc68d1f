package client_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
	"github.com/locklock/locklock/transport/client"
)

// A 503 that never reached the API is retried, the same request again.
func TestRetryAfter503(t *testing.T) {
	s := newServer(t)
	s.failNext(2, http.StatusServiceUnavailable, "", false)
	l, err := s.client(t).Acquire(t.Context(), client.UUID(u1), client.WithTTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if n := s.hits.Load(); n != 3 {
		t.Errorf("%d requests, want 3 (two 503s, then success)", n)
	}
	if !l.Created || l.Secret == "" {
		t.Errorf("lock %+v", l)
	}
	// The retries were the same request: same method, path and secret.
	reqs := s.requests()
	for _, r := range reqs {
		if r.Method != http.MethodPost || r.URL.Path != "/lock/uuid/"+u1 {
			t.Errorf("request %s %s", r.Method, r.URL.Path)
		}
	}
	if stored, ok := s.stored(t, locklock.DefaultNamespace, client.UUID(u1)); !ok || !stored.Guard.Admits(l.Secret) {
		t.Error("the lock is not held with the secret the client returned")
	}
}

// loseReplies lets the next n requests through to the API, then loses the
// answer: the connection is dropped (drop), or a 503 replaces it, as when
// storage committed but failed to say so.
func loseReplies(left *atomic.Int64, drop bool) serverOption {
	return withWrap(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if left.Add(-1) < 0 {
				next.ServeHTTP(w, r)
				return
			}
			next.ServeHTTP(httptest.NewRecorder(), r) // applied, answer lost
			if drop {
				conn, _, err := http.NewResponseController(w).Hijack()
				if err == nil {
					_ = conn.Close()
				}
				return
			}
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"title":"Service unavailable","status":503,"detail":"lost","code":"unavailable"}`))
		})
	})
}

// An acquire whose answer was lost is retried; the server then answers
// 200 (held with the same secret). With a secret the client made, the lock
// can only be this call's: it is reported as Created.
func TestAcquireLostReply(t *testing.T) {
	for _, drop := range []bool{false, true} {
		name := map[bool]string{false: "503", true: "dropped connection"}[drop]
		t.Run(name, func(t *testing.T) {
			var lose atomic.Int64
			lose.Store(1)
			s := newServer(t, loseReplies(&lose, drop))
			l, err := s.client(t).Acquire(t.Context(), client.UUID(u1))
			if err != nil {
				t.Fatal(err)
			}
			if n := s.hits.Load(); n != 2 {
				t.Errorf("%d requests, want 2", n)
			}
			stored, ok := s.stored(t, locklock.DefaultNamespace, client.UUID(u1))
			if !ok || stored.Token != l.FencingToken || !stored.Guard.Admits(l.Secret) {
				t.Fatalf("server holds %+v, client got %+v", stored, l)
			}
			if !l.Created {
				t.Error("Created is false, but nobody else knew the client-made secret: this call took the lock")
			}
		})
	}
	// With the caller's secret the client cannot tell: it may have been
	// the caller's before the call.
	var lose atomic.Int64
	lose.Store(1)
	s := newServer(t, loseReplies(&lose, false))
	l, err := s.client(t).Acquire(t.Context(), client.UUID(u1), client.WithSecret("mine"))
	if err != nil {
		t.Fatal(err)
	}
	if l.Created || l.Secret != "mine" {
		t.Errorf("with the caller's secret: %+v", l)
	}
}

// Which failures each call retries: anything for the idempotent calls; only
// failures that certainly did nothing (429) for release and an unprotected
// acquire, whose repetition could not tell its own success from a refusal.
func TestRetryPolicy(t *testing.T) {
	held := func(t *testing.T, s *testServer) client.Lock {
		l, err := s.client(t).Acquire(t.Context(), client.UUID(u1), client.WithTTL(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	ops := []struct {
		name  string
		setup bool // a lock is held first
		run   func(ctx context.Context, l client.Lock, c *client.Client) error
		// retried after a 503 problem / a plain 502 (a reply that may
		// have been lost after the change was made)
		retriesServerFailure bool
	}{
		{"acquire", false, func(ctx context.Context, _ client.Lock, c *client.Client) error {
			_, err := c.Acquire(ctx, client.UUID(u1))
			return err
		}, true},
		{"acquire with secret", false, func(ctx context.Context, _ client.Lock, c *client.Client) error {
			_, err := c.Acquire(ctx, client.UUID(u1), client.WithSecret("s"))
			return err
		}, true},
		{"acquire unprotected", false, func(ctx context.Context, _ client.Lock, c *client.Client) error {
			_, err := c.Acquire(ctx, client.UUID(u1), client.Unprotected())
			return err
		}, false},
		{"release", true, func(ctx context.Context, l client.Lock, c *client.Client) error {
			_, err := c.Release(ctx, l.Target(), client.WithSecret(l.Secret))
			return err
		}, false},
		{"refresh", true, func(ctx context.Context, l client.Lock, c *client.Client) error {
			_, err := c.Refresh(ctx, l.Target(), client.WithSecret(l.Secret), client.WithTTL(time.Minute))
			return err
		}, true},
		{"get", true, func(ctx context.Context, l client.Lock, c *client.Client) error {
			_, err := c.Get(ctx, l.Target())
			return err
		}, true},
		{"list", false, func(ctx context.Context, _ client.Lock, c *client.Client) error {
			_, err := c.List(ctx, client.ListOptions{})
			return err
		}, true},
	}
	failures := []struct {
		name       string
		status     int
		plain      bool
		retryAfter string
		always     bool // retried by every call
		sentinel   error
	}{
		{"503 problem", 503, false, "", false, locklock.ErrUnavailable},
		{"503 problem with Retry-After 0", 503, false, "0", false, locklock.ErrUnavailable},
		{"plain 502", 502, true, "", false, locklock.ErrUnavailable},
		{"plain 504", 504, true, "", false, locklock.ErrUnavailable},
		{"429 problem", 429, false, "0", true, locklock.ErrRateLimited},
	}
	for _, o := range ops {
		for _, f := range failures {
			t.Run(o.name+"/"+f.name, func(t *testing.T) {
				t.Parallel()
				s := newServer(t)
				var l client.Lock
				if o.setup {
					l = held(t, s)
				}
				before := s.hits.Load()
				s.failNext(1, f.status, f.retryAfter, f.plain)
				c := s.client(t) // anonymous, like the lock set up
				if o.name == "list" {
					c = s.client(t, client.WithAPIKey(s.ProKey))
				}
				err := o.run(t.Context(), l, c)
				retried := f.always || o.retriesServerFailure
				want := int64(1)
				if retried {
					want = 2
				}
				if got := s.hits.Load() - before; got != want {
					t.Errorf("%d requests, want %d", got, want)
				}
				if retried && err != nil {
					t.Errorf("retried, yet: %v", err)
				}
				if !retried {
					checkSentinel(t, err, f.sentinel)
					if e := asError(t, err); e.Status != f.status {
						t.Errorf("status %d, want %d", e.Status, f.status)
					}
				}
			})
		}
	}
}

// A lost answer to a release is not retried: the release did happen, and a
// retry would have reported ErrNotFound.
func TestReleaseNotRetriedAfterLostReply(t *testing.T) {
	for _, drop := range []bool{false, true} {
		var lose atomic.Int64
		s := newServer(t, loseReplies(&lose, drop))
		l, err := s.client(t).Acquire(t.Context(), client.UUID(u1))
		if err != nil {
			t.Fatal(err)
		}
		lose.Store(1) // the release's answer is lost
		_, err = s.client(t).Release(t.Context(), l.Target(), client.WithSecret(l.Secret))
		if err == nil || errors.Is(err, locklock.ErrNotFound) {
			t.Errorf("drop %v: release: %v; want the lost answer's error, not a retry's ErrNotFound", drop, err)
		}
		if n := s.hits.Load(); n != 2 {
			t.Errorf("drop %v: %d requests, want 2 (acquire, release)", drop, n)
		}
		if _, ok := s.stored(t, locklock.DefaultNamespace, l.Target()); ok {
			t.Errorf("drop %v: the release was not applied", drop)
		}
	}
}

func TestRetryLimit(t *testing.T) {
	cases := []struct {
		opts []client.Option
		want int64
	}{
		{[]client.Option{client.WithRetries(0)}, 1},
		{[]client.Option{client.WithRetries(-3)}, 1},
		{[]client.Option{client.WithRetries(1)}, 2},
		{[]client.Option{client.WithRetries(3)}, 4},
		{nil, 6}, // the default: 5 retries
	}
	for _, tc := range cases {
		s := newServer(t)
		s.failNext(100, http.StatusServiceUnavailable, "", false)
		_, err := s.client(t, tc.opts...).Get(t.Context(), client.UUID(u1))
		checkSentinel(t, err, locklock.ErrUnavailable)
		if e := asError(t, err); e.Status != 503 || e.Code != "unavailable" {
			t.Errorf("last error %+v", e)
		}
		if n := s.hits.Load(); n != tc.want {
			t.Errorf("%d requests, want %d", n, tc.want)
		}
	}
}

// The backoff grows (doubling, with jitter) up to its cap.
func TestBackoffGrows(t *testing.T) {
	s := newServer(t)
	s.failNext(100, http.StatusServiceUnavailable, "", false)
	c, err := client.New(s.URL, client.WithRetries(4), client.WithBackoff(40*time.Millisecond, 100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = c.Get(t.Context(), client.UUID(u1))
	d := time.Since(start)
	checkSentinel(t, err, locklock.ErrUnavailable)
	// Delays 40, 80, 100, 100 ms, each at least half that with jitter.
	if min, max := 160*time.Millisecond, 2*time.Second; d < min || d > max {
		t.Errorf("4 retries took %v; want between %v and %v", d, min, max)
	}
}

// The server's Retry-After, longer than the backoff, is waited for: a real
// rate limiter's bucket has refilled by then.
func TestRateLimitedRetryWaits(t *testing.T) {
	t.Parallel()
	s := newServer(t, withAnonRate(1, 1))
	c := s.client(t)
	if _, err := c.Get(t.Context(), client.UUID(u1)); !errors.Is(err, locklock.ErrNotFound) {
		t.Fatal(err)
	}
	start := time.Now()
	l, err := c.Acquire(t.Context(), client.UUID(u1), client.Unprotected()) // 429 is retried even here
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Errorf("retried after %v, before the server's Retry-After of 1 s", d)
	}
	if !l.Created || s.hits.Load() != 3 {
		t.Errorf("lock %+v after %d requests (want get, 429, acquire)", l, s.hits.Load())
	}
}

// A retry that cannot be made before the context's deadline is not waited
// for: the call returns the refusal at once.
func TestRetryAfterBeyondDeadline(t *testing.T) {
	s := newServer(t, withAnonRate(0.1, 1))
	c := s.client(t)
	if _, err := c.Get(t.Context(), client.UUID(u1)); !errors.Is(err, locklock.ErrNotFound) {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	start := time.Now()
	_, err := c.Acquire(ctx, client.UUID(u1))
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("returned after %v; the 10 s Retry-After cannot fit in a 3 s deadline", d)
	}
	checkSentinel(t, err, locklock.ErrRateLimited)
	if e := asError(t, err); e.RetryAfter != 10*time.Second {
		t.Errorf("RetryAfter %v", e.RetryAfter)
	}
	if n := s.hits.Load(); n != 2 {
		t.Errorf("%d requests, want 2", n)
	}
}

// Cancelling the context ends the wait between retries, and a request in
// flight, promptly.
func TestCancelStopsRetries(t *testing.T) {
	t.Run("between retries", func(t *testing.T) {
		s := newServer(t)
		s.failNext(100, http.StatusServiceUnavailable, "30", false)
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(100*time.Millisecond, cancel)
		start := time.Now()
		_, err := s.client(t).Get(ctx, client.UUID(u1))
		if d := time.Since(start); d > time.Second {
			t.Errorf("returned %v after the call, cancelled at 100 ms", d)
		}
		checkSentinel(t, err, locklock.ErrUnavailable)
		if n := s.hits.Load(); n != 1 {
			t.Errorf("%d requests, want 1", n)
		}
	})
	t.Run("in flight", func(t *testing.T) {
		s := newServer(t)
		unfreeze := s.freeze()
		defer unfreeze()
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(100*time.Millisecond, cancel)
		start := time.Now()
		_, err := s.client(t).Refresh(ctx, client.UUID(u1), client.WithSecret("s"))
		if d := time.Since(start); d > time.Second {
			t.Errorf("returned %v after the call, cancelled at 100 ms", d)
		}
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%v, want context.Canceled", err)
		}
		if n := s.hits.Load(); n != 1 {
			t.Errorf("%d requests, want 1 (no retry after cancellation)", n)
		}
	})
	t.Run("deadline in flight", func(t *testing.T) {
		s := newServer(t)
		unfreeze := s.freeze()
		defer unfreeze()
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		_, err := s.client(t).Get(ctx, client.UUID(u1))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%v, want context.DeadlineExceeded", err)
		}
		if n := s.hits.Load(); n != 1 {
			t.Errorf("%d requests, want 1", n)
		}
	})
}

// A refused connection never reached the server, so even a release or an
// unprotected acquire is retried; the call ends with the dial error.
func TestRefusedConnectionRetried(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	ops := map[string]func(ctx context.Context, c *client.Client) error{
		"release": func(ctx context.Context, c *client.Client) error {
			_, err := c.Release(ctx, client.UUID(u1), client.WithSecret("s"))
			return err
		},
		"acquire unprotected": func(ctx context.Context, c *client.Client) error {
			_, err := c.Acquire(ctx, client.UUID(u1), client.Unprotected())
			return err
		},
		"get": func(ctx context.Context, c *client.Client) error {
			_, err := c.Get(ctx, client.UUID(u1))
			return err
		},
	}
	for name, op := range ops {
		t.Run(name, func(t *testing.T) {
			var dials atomic.Int64
			tr := &http.Transport{DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
				dials.Add(1)
				return (&net.Dialer{}).DialContext(ctx, network, a)
			}}
			t.Cleanup(tr.CloseIdleConnections)
			c, err := client.New("http://"+addr, client.WithHTTPClient(&http.Client{Transport: tr}),
				client.WithRetries(3), client.WithBackoff(time.Millisecond, 5*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			err = op(t.Context(), c)
			if n := dials.Load(); n != 4 {
				t.Errorf("%d dials, want 4 (1 + 3 retries)", n)
			}
			var op *net.OpError
			if !errors.As(err, &op) || op.Op != "dial" || !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("%v, want the refused dial", err)
			}
			var e *client.Error
			if errors.As(err, &e) {
				t.Errorf("a network failure as a server error: %+v", e)
			}
		})
	}
}
