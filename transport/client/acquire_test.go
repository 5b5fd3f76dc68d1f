package client_test

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
	"github.com/locklock/locklock/transport/client"
)

func TestAcquireCreates(t *testing.T) {
	s := newServer(t)
	c := s.client(t)
	before := time.Now().Add(-time.Second)
	// Upper case is accepted and stored in lower case.
	l, err := c.Acquire(t.Context(), client.UUID(strings.ToUpper(u1)), client.WithTTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if !l.Created || !l.Protected || l.Kind != locklock.KindUUID || l.Name != u1 || l.Namespace != locklock.DefaultNamespace {
		t.Errorf("lock %+v", l)
	}
	if len(l.Secret) < 16 {
		t.Errorf("generated secret %q is too short to be random", l.Secret)
	}
	if l.FencingToken == 0 || l.ExpiresIn < 59 || l.ExpiresIn > 60 || l.ExpiresAt.Sub(l.AcquiredAt) != time.Minute {
		t.Errorf("token %d, expires_in %d, lifetime %v", l.FencingToken, l.ExpiresIn, l.ExpiresAt.Sub(l.AcquiredAt))
	}
	if l.AcquiredAt.Before(before) || l.AcquiredAt.After(time.Now().Add(time.Second)) {
		t.Errorf("AcquiredAt %v is not now", l.AcquiredAt)
	}
	if l.Target() != client.UUID(u1) {
		t.Errorf("Target() = %v", l.Target())
	}
	// The server holds it, guarded by the secret the client made.
	stored, ok := s.stored(t, locklock.DefaultNamespace, client.UUID(u1))
	if !ok || stored.Token != l.FencingToken || !stored.ExpiresAt.Equal(l.ExpiresAt) || !stored.Guard.Admits(l.Secret) {
		t.Errorf("server-side lock %+v (ok %v) does not match %+v", stored, ok, l)
	}

	// Each acquire makes a secret of its own.
	l2, err := c.Acquire(t.Context(), client.UUID(u2))
	if err != nil {
		t.Fatal(err)
	}
	if l2.Secret == l.Secret || l2.Secret == "" {
		t.Errorf("secrets %q and %q", l.Secret, l2.Secret)
	}
	if l2.ExpiresAt.Sub(l2.AcquiredAt) != locklock.DefaultTTL {
		t.Errorf("no WithTTL: lifetime %v, want the server's default %v", l2.ExpiresAt.Sub(l2.AcquiredAt), locklock.DefaultTTL)
	}

	// Another acquire of the held lock, from the same client, is refused.
	_, err = c.Acquire(t.Context(), client.UUID(u1))
	if !errors.Is(err, locklock.ErrHeld) {
		t.Fatalf("second acquire: %v, want ErrHeld", err)
	}
	// Without the secret, nobody else can release it.
	if _, err := s.client(t).Release(t.Context(), client.UUID(u1)); !errors.Is(err, locklock.ErrSecretMismatch) {
		t.Errorf("release without the secret: %v", err)
	}
}

// An acquire with the holder's secret is a retry: 200, the lock unchanged.
func TestAcquireSameSecret(t *testing.T) {
	s := newServer(t)
	c := s.client(t)
	first, err := c.Acquire(t.Context(), client.UUID(u1), client.WithSecret("s3cret"), client.WithTTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if !first.Created || first.Secret != "s3cret" {
		t.Fatalf("first acquire %+v", first)
	}
	again, err := s.client(t).Acquire(t.Context(), client.UUID(u1), client.WithSecret("s3cret"), client.WithTTL(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if again.Created || again.FencingToken != first.FencingToken || !again.ExpiresAt.Equal(first.ExpiresAt) || again.Secret != "s3cret" {
		t.Errorf("re-acquire %+v, want %+v unchanged and Created false", again, first)
	}
	if _, err := c.Acquire(t.Context(), client.UUID(u1), client.WithSecret("other")); !errors.Is(err, locklock.ErrHeld) {
		t.Errorf("another secret: %v, want ErrHeld", err)
	}
}

func TestAcquireUnprotected(t *testing.T) {
	s := newServer(t)
	l, err := s.client(t).Acquire(t.Context(), client.UUID(u1), client.Unprotected())
	if err != nil {
		t.Fatal(err)
	}
	if !l.Created || l.Protected || l.Secret != "" {
		t.Errorf("unprotected lock %+v", l)
	}
	if stored, _ := s.stored(t, locklock.DefaultNamespace, client.UUID(u1)); stored.Guard.Protected() {
		t.Error("the server keeps a guard for an unprotected lock")
	}
	// No secret is not "the same secret": a second unprotected acquire is refused.
	if _, err := s.client(t).Acquire(t.Context(), client.UUID(u1), client.Unprotected()); !errors.Is(err, locklock.ErrHeld) {
		t.Errorf("second unprotected acquire: %v, want ErrHeld", err)
	}
	// Anyone may release it, with no secret or any secret.
	rel, err := s.client(t).Release(t.Context(), client.UUID(u1))
	if err != nil {
		t.Fatal(err)
	}
	if rel.FencingToken != l.FencingToken || rel.Protected {
		t.Errorf("released %+v, want %+v", rel, l)
	}
	if _, ok := s.stored(t, locklock.DefaultNamespace, client.UUID(u1)); ok {
		t.Error("still held after release")
	}
}

// The API counts whole seconds; the client rounds up so that a lock lives at
// least as long as asked.
func TestAcquireTTLRounding(t *testing.T) {
	s := newServer(t)
	c := s.client(t)
	cases := []struct {
		ttl  time.Duration
		want time.Duration // lifetime on the server
	}{
		{time.Nanosecond, time.Second},
		{time.Second, time.Second},
		{1500 * time.Millisecond, 2 * time.Second},
		{2001 * time.Millisecond, 3 * time.Second},
		{59999 * time.Millisecond, time.Minute},
		{0, locklock.DefaultTTL},
	}
	for _, tc := range cases {
		t.Run(tc.ttl.String(), func(t *testing.T) {
			target := client.UUID(newUUID(t))
			l, err := c.Acquire(t.Context(), target, client.WithTTL(tc.ttl))
			if err != nil {
				t.Fatal(err)
			}
			stored, ok := s.stored(t, locklock.DefaultNamespace, target)
			if !ok {
				t.Fatal("not held")
			}
			if got := stored.ExpiresAt.Sub(stored.AcquiredAt); got != tc.want {
				t.Errorf("WithTTL(%v): lifetime %v, want %v", tc.ttl, got, tc.want)
			}
			if want := int64(tc.want / time.Second); l.ExpiresIn != want && l.ExpiresIn != want-1 {
				t.Errorf("ExpiresIn %d, want %d", l.ExpiresIn, want)
			}
		})
	}
}

// A negative duration is a mistake (a deadline already past), not a request
// for the server's 30-day default.
func TestAcquireNegativeDurations(t *testing.T) {
	s := newServer(t)
	c := s.client(t)
	for _, opt := range []client.LockOption{
		client.WithTTL(-time.Second), client.WithTTL(-time.Millisecond), client.WithTTL(-time.Hour),
		client.WithWait(-time.Second), client.WithWait(-time.Millisecond),
	} {
		if _, err := c.Acquire(t.Context(), client.UUID(u1), opt); !errors.Is(err, locklock.ErrInvalidArgument) {
			t.Errorf("acquire: %v, want ErrInvalidArgument", err)
		}
	}
	if _, err := c.Refresh(t.Context(), client.UUID(u1), client.WithTTL(-time.Millisecond)); !errors.Is(err, locklock.ErrInvalidArgument) {
		t.Errorf("refresh: %v, want ErrInvalidArgument", err)
	}
	if n := s.hits.Load(); n != 0 {
		t.Errorf("%d requests reached the server", n)
	}
}

func TestAcquireWait(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	holder, err := s.client(t).Acquire(t.Context(), client.UUID(u1), client.WithTTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		l   client.Lock
		err error
	}
	done := make(chan result, 1)
	go func() {
		l, err := s.client(t).Acquire(t.Context(), client.UUID(u1), client.WithWait(10*time.Second))
		done <- result{l, err}
	}()
	waitFor(t, "the waiter to queue", 5*time.Second, func() bool { return s.Svc.Waiters() == 1 })
	select {
	case r := <-done:
		t.Fatalf("the waiter returned while the lock was held: %+v %v", r.l, r.err)
	case <-time.After(50 * time.Millisecond):
	}
	start := time.Now()
	if _, err := s.client(t).Release(t.Context(), client.UUID(u1), client.WithSecret(holder.Secret)); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !r.l.Created || r.l.FencingToken <= holder.FencingToken || r.l.Secret == holder.Secret || r.l.Secret == "" {
		t.Errorf("waiter got %+v after holder %+v", r.l, holder)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the waiter took %v after the release", d)
	}
}

// A wait is rounded up to whole seconds, so even 1 ms waits a second.
func TestAcquireWaitTimesOut(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	holder, err := s.client(t).Acquire(t.Context(), client.UUID(u1), client.WithTTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = s.client(t).Acquire(t.Context(), client.UUID(u1), client.WithWait(time.Millisecond))
	if !errors.Is(err, locklock.ErrHeld) {
		t.Fatalf("%v, want ErrHeld", err)
	}
	if d := time.Since(start); d < 900*time.Millisecond || d > 5*time.Second {
		t.Errorf("a 1 ms wait took %v; want the 1 s it rounds up to", d)
	}
	if e := asError(t, err); !e.ExpiresAt.Equal(holder.ExpiresAt) {
		t.Errorf("ExpiresAt %v, want %v", e.ExpiresAt, holder.ExpiresAt)
	}
	if s.hits.Load() != 2 {
		t.Errorf("%d requests; a refused wait is not retried", s.hits.Load())
	}
}

// Custom names need a pro key; the lock lives in the key's namespace.
func TestKeyLocks(t *testing.T) {
	s := newServer(t)
	c := s.client(t, client.WithAPIKey(s.ProKey))
	names := []string{"deploy", "Deploy", "a.b_c-d:e~f", ".", "..", "~", "x:y", strings.Repeat("k", locklock.MaxNameLen)}
	locks := map[string]client.Lock{}
	for _, name := range names {
		l, err := c.Acquire(t.Context(), client.Key(name))
		if err != nil {
			t.Fatalf("%q: %v", name, err)
		}
		if !l.Created || l.Kind != locklock.KindKey || l.Name != name || l.Namespace != "acme" {
			t.Errorf("%q: lock %+v", name, l)
		}
		if _, ok := s.stored(t, "acme", client.Key(name)); !ok {
			t.Errorf("%q is not held in namespace acme", name)
		}
		locks[name] = l
	}
	for _, name := range names {
		got, err := c.Get(t.Context(), client.Key(name))
		if err != nil || got.FencingToken != locks[name].FencingToken {
			t.Errorf("get %q: %+v %v", name, got, err)
		}
		if _, err := c.Release(t.Context(), client.Key(name), client.WithSecret(locks[name].Secret)); err != nil {
			t.Errorf("release %q: %v", name, err)
		}
	}
	// The same UUID in two namespaces is two locks.
	if _, err := c.Acquire(t.Context(), client.UUID(u1)); err != nil {
		t.Fatal(err)
	}
	if l, err := s.client(t).Acquire(t.Context(), client.UUID(u1)); err != nil || l.Namespace != locklock.DefaultNamespace {
		t.Errorf("anonymous acquire of acme's UUID: %+v %v", l, err)
	}
}

// The secret is the caller's business: it never goes into JSON.
func TestLockMarshalHidesSecret(t *testing.T) {
	l := client.Lock{Namespace: "public", Kind: locklock.KindUUID, Name: u1, Secret: "top-secret-value", Created: true, Protected: true}
	b, err := json.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "top-secret-value") || strings.Contains(strings.ToLower(string(b)), "created") {
		t.Errorf("marshalled lock %s", b)
	}
}

// newUUID is a random version-4 UUID.
func newUUID(t *testing.T) string {
	t.Helper()
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
