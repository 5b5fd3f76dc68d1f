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

// patches counts the refreshes the server received.
func (s *testServer) patches() int {
	n := 0
	for _, r := range s.requests() {
		if r.Method == http.MethodPatch {
			n++
		}
	}
	return n
}

// holding is a Held or a HeldSlot.
type holding interface{ Context() context.Context }

// alive fails the test if the Held's (or HeldSlot's) context ends within d.
func alive(t *testing.T, h holding, d time.Duration) {
	t.Helper()
	select {
	case <-h.Context().Done():
		t.Fatalf("the Held's context ended: %v", context.Cause(h.Context()))
	case <-time.After(d):
	}
}

// ended waits up to d for the Held's (or HeldSlot's) context to end and
// returns when it did.
func ended(t *testing.T, h holding, d time.Duration) time.Time {
	t.Helper()
	select {
	case <-h.Context().Done():
		return time.Now()
	case <-time.After(d):
		t.Fatalf("the Held's context is still live after %v", d)
		return time.Time{}
	}
}

// Refreshes keep a lock alive well past its TTL; Release ends the context
// without a loss and frees the lock.
func TestHoldKeepsLockAlive(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	target := client.UUID(u1)
	h, err := s.client(t).Hold(t.Context(), target, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	first := h.Lock()
	if !first.Created || first.Secret == "" || (first.ExpiresIn != 1 && first.ExpiresIn != 0) {
		t.Errorf("held lock %+v", first)
	}
	if !h.ValidUntil().After(time.Now()) || h.ValidUntil().After(first.ExpiresAt.Add(time.Millisecond)) {
		t.Errorf("ValidUntil %v, server expiry %v: the client must not believe in more than the server gave", h.ValidUntil(), first.ExpiresAt)
	}

	alive(t, h, 2500*time.Millisecond)

	other := s.client(t)
	got, err := other.Get(t.Context(), target)
	if err != nil {
		t.Fatalf("2.5 TTLs later: %v", err)
	}
	if got.FencingToken != first.FencingToken {
		t.Errorf("token %d, want %d", got.FencingToken, first.FencingToken)
	}
	if _, err := other.Acquire(t.Context(), target); !errors.Is(err, locklock.ErrHeld) {
		t.Errorf("another acquire: %v, want ErrHeld", err)
	}
	now := h.Lock()
	if now.FencingToken != first.FencingToken || !now.ExpiresAt.After(first.ExpiresAt) || now.Secret != first.Secret {
		t.Errorf("Lock() %+v after refreshes, first %+v", now, first)
	}
	if !h.ValidUntil().After(time.Now()) {
		t.Errorf("ValidUntil %v is past", h.ValidUntil())
	}
	if n := s.patches(); n < 5 || n > 10 {
		t.Errorf("%d refreshes in 2.5 s; want one every third of the TTL", n)
	}
	if h.Lost() != nil {
		t.Errorf("Lost() = %v", h.Lost())
	}

	if err := h.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.Context().Done():
	default:
		t.Fatal("Release left the context live")
	}
	if h.Lost() != nil || errors.Is(context.Cause(h.Context()), client.ErrLost) {
		t.Errorf("after Release: Lost() %v, cause %v", h.Lost(), context.Cause(h.Context()))
	}
	if _, err := other.Get(t.Context(), target); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("after Release: %v", err)
	}
	// No refresh after Release.
	n := s.patches()
	time.Sleep(400 * time.Millisecond)
	if s.patches() != n {
		t.Error("refreshes went on after Release")
	}
	if err := h.Release(t.Context()); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("second Release: %v, want ErrNotFound", err)
	}
}

// When the server stops answering, the context ends with ErrLost before the
// lock can lapse on the server.
func TestHoldServerFrozen(t *testing.T) {
	cases := []struct {
		name   string
		ttl    time.Duration
		margin time.Duration
	}{
		{"default margin", time.Second, 0},
		{"small margin", 2 * time.Second, 150 * time.Millisecond}, // default: 400 ms; 150 ms leaves room for a loaded machine's timer and scheduling delays
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t)
			target := client.UUID(u1)
			var opts []client.LockOption
			if tc.margin > 0 {
				opts = append(opts, client.WithSafetyMargin(tc.margin))
			}
			h, err := s.client(t).Hold(t.Context(), target, tc.ttl, opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Release(context.Background())
			waitFor(t, "a refresh", 2*tc.ttl, func() bool { return s.patches() >= 1 })
			unfreeze := s.freeze()
			defer unfreeze()

			at := ended(t, h, 2*tc.ttl)
			stored, ok := s.stored(t, locklock.DefaultNamespace, target)
			if !ok {
				t.Fatalf("the context ended at %v, after the lock had expired on the server", at)
			}
			if !at.Before(stored.ExpiresAt) {
				t.Errorf("the context ended at %v, not before the lock's expiry %v", at, stored.ExpiresAt)
			}
			if stored.Token != h.Lock().FencingToken || !stored.ExpiresAt.Equal(h.Lock().ExpiresAt) {
				t.Errorf("Lock() %+v is not the last confirmed lock %+v", h.Lock(), stored)
			}
			if h.ValidUntil().After(stored.ExpiresAt.Add(time.Millisecond)) {
				t.Errorf("ValidUntil %v is after the server's expiry %v", h.ValidUntil(), stored.ExpiresAt)
			}
			cause := context.Cause(h.Context())
			if !errors.Is(cause, client.ErrLost) || h.Lost() == nil || !errors.Is(h.Lost(), client.ErrLost) {
				t.Errorf("cause %v, Lost() %v; want ErrLost", cause, h.Lost())
			}
			unfreeze()
			if err := h.Release(t.Context()); err != nil && !errors.Is(err, locklock.ErrNotFound) {
				t.Errorf("release after the loss: %v", err)
			}
		})
	}
}

// When the lock is taken from under it, the context ends with ErrLost and
// the server's reason, at the next refresh.
func TestHoldLockTakenAway(t *testing.T) {
	cases := []struct {
		name    string
		reacq   bool  // someone else takes it after the release
		want    error // in the cause
		release error // from Held.Release afterwards
	}{
		{"released", false, locklock.ErrNotFound, locklock.ErrNotFound},
		// Any of lostToAnother's causes, whichever notices first.
		{"taken", true, nil, locklock.ErrSecretMismatch},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t)
			target := client.UUID(u1)
			h, err := s.client(t).Hold(t.Context(), target, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			other := s.client(t)
			if _, err := other.Release(t.Context(), target, client.WithSecret(h.Lock().Secret)); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			var thief client.Lock
			if tc.reacq {
				if thief, err = other.Acquire(t.Context(), target, client.WithTTL(time.Minute)); err != nil {
					t.Fatal(err)
				}
			}
			ended(t, h, 2*time.Second)
			if d := time.Since(start); d > time.Second {
				t.Errorf("noticed after %v; a refresh is due every 667 ms", d)
			}
			cause := context.Cause(h.Context())
			switch {
			case !errors.Is(cause, client.ErrLost):
				t.Errorf("cause %v, want ErrLost", cause)
			case tc.want != nil && !errors.Is(cause, tc.want):
				t.Errorf("cause %v, want %v", cause, tc.want)
			case tc.want == nil && !lostToAnother(cause):
				t.Errorf("cause %v, want not found, held or secret mismatch", cause)
			}
			if err := h.Release(t.Context()); !errors.Is(err, tc.release) {
				t.Errorf("Release: %v, want %v", err, tc.release)
			}
			if tc.reacq {
				if got, err := other.Get(t.Context(), target); err != nil || got.FencingToken != thief.FencingToken {
					t.Errorf("the new holder's lock: %+v %v", got, err)
				}
			}
		})
	}
}

// Re-holding a lock already held with the same secret must not trust the
// old lock's remaining life beyond what the server said: Hold refreshes it
// to the full TTL, so the context never outlives the lock.
func TestHoldOwnLockAboutToLapse(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	target := client.UUID(u1)
	c := s.client(t)
	l, err := c.Acquire(t.Context(), target, client.WithTTL(time.Second), client.WithSecret("mine"))
	if err != nil {
		t.Fatal(err)
	}
	h, err := c.Hold(t.Context(), target, 6*time.Second, client.WithSecret("mine"))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Release(context.Background())
	if h.Lock().Created || h.Lock().FencingToken != l.FencingToken || h.Lock().Secret != "mine" {
		t.Errorf("re-held lock %+v", h.Lock())
	}
	time.Sleep(1500 * time.Millisecond) // the first acquire's second is over
	stored, ok := s.stored(t, locklock.DefaultNamespace, target)
	if h.Context().Err() == nil && !ok {
		t.Fatal("the Held's context is live, but the lock has expired on the server")
	}
	if !ok || stored.Token != l.FencingToken {
		t.Fatalf("the lock was not kept: %+v (held %v), context %v", stored, ok, context.Cause(h.Context()))
	}
	if h.Lost() != nil {
		t.Errorf("Lost() = %v", h.Lost())
	}
	if d := time.Until(stored.ExpiresAt); d < 3*time.Second {
		t.Errorf("the lock expires in %v; Hold asked for 6 s", d)
	}
}

// A Hold that waited longer than its TTL for the lock still holds it: the
// wait does not count against the new lock's life.
func TestHoldAfterLongWait(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	target := client.UUID(u1)
	holder, err := s.client(t).Acquire(t.Context(), target, client.WithTTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		h   *client.Held
		err error
	}
	done := make(chan result, 1)
	go func() {
		h, err := s.client(t).Hold(t.Context(), target, time.Second, client.WithWait(10*time.Second))
		done <- result{h, err}
	}()
	waitFor(t, "the Hold to wait", 5*time.Second, func() bool { return s.Svc.Waiters() == 1 })
	time.Sleep(1100 * time.Millisecond)
	if _, err := s.client(t).Release(t.Context(), target, client.WithSecret(holder.Secret)); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	h := r.h
	defer h.Release(context.Background())
	alive(t, h, 500*time.Millisecond)
	stored, ok := s.stored(t, locklock.DefaultNamespace, target)
	if !ok || stored.Token != h.Lock().FencingToken || stored.Token <= holder.FencingToken {
		t.Errorf("server %+v (held %v), Held %+v", stored, ok, h.Lock())
	}
}

// Cancelling Hold's context stops the refreshing but is not a loss; the
// lock stays until released or expired.
func TestHoldParentCancelled(t *testing.T) {
	s := newServer(t)
	target := client.UUID(u1)
	ctx, cancel := context.WithCancel(t.Context())
	h, err := s.client(t).Hold(ctx, target, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	ended(t, h, time.Second)
	if h.Lost() != nil || !errors.Is(context.Cause(h.Context()), context.Canceled) {
		t.Errorf("Lost() %v, cause %v", h.Lost(), context.Cause(h.Context()))
	}
	if _, ok := s.stored(t, locklock.DefaultNamespace, target); !ok {
		t.Fatal("the lock went with the context")
	}
	if err := h.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.stored(t, locklock.DefaultNamespace, target); ok {
		t.Error("Release left the lock held")
	}
}

func TestHoldOptions(t *testing.T) {
	s := newServer(t)
	c := s.client(t)
	cases := []struct {
		ttl      time.Duration
		margin   time.Duration
		ok       bool
		lifetime time.Duration // on the server, when ok
	}{
		{time.Second, 700 * time.Millisecond, false, 0},
		{time.Second, 667 * time.Millisecond, false, 0},
		{time.Second, 666 * time.Millisecond, true, time.Second},
		{time.Second, -time.Millisecond, false, 0},
		{3 * time.Second, 2 * time.Second, false, 0},
		{3 * time.Second, 1999 * time.Millisecond, true, 3 * time.Second},
		{0, 0, false, 0},
		{-time.Second, 0, false, 0},
		{500 * time.Millisecond, 0, true, time.Second},
		{1500 * time.Millisecond, 0, true, 2 * time.Second},
	}
	for _, tc := range cases {
		before := s.hits.Load()
		var opts []client.LockOption
		if tc.margin != 0 {
			opts = append(opts, client.WithSafetyMargin(tc.margin))
		}
		target := client.UUID(newUUID(t))
		h, err := c.Hold(t.Context(), target, tc.ttl, opts...)
		if !tc.ok {
			if !errors.Is(err, locklock.ErrInvalidArgument) || h != nil {
				t.Errorf("Hold(ttl %v, margin %v) = %v, %v; want ErrInvalidArgument", tc.ttl, tc.margin, h, err)
			}
			if s.hits.Load() != before {
				t.Errorf("Hold(ttl %v, margin %v) made a request", tc.ttl, tc.margin)
			}
			continue
		}
		if err != nil {
			t.Errorf("Hold(ttl %v, margin %v): %v", tc.ttl, tc.margin, err)
			continue
		}
		stored, _ := s.stored(t, locklock.DefaultNamespace, target)
		if got := stored.ExpiresAt.Sub(stored.AcquiredAt); got != tc.lifetime {
			t.Errorf("Hold(ttl %v): lifetime %v, want %v", tc.ttl, got, tc.lifetime)
		}
		if err := h.Release(t.Context()); err != nil {
			t.Error(err)
		}
	}
}

func TestHoldHeld(t *testing.T) {
	s := newServer(t)
	if _, err := s.client(t).Acquire(t.Context(), client.UUID(u1)); err != nil {
		t.Fatal(err)
	}
	h, err := s.client(t).Hold(t.Context(), client.UUID(u1), time.Second)
	if !errors.Is(err, locklock.ErrHeld) || h != nil {
		t.Errorf("Hold of a held lock: %v, %v", h, err)
	}
}

// An unprotected lock can be refreshed by anyone, so after a stray release
// and someone else's acquire the refresh succeeds — on the other holder's
// lock. Hold must see the changed fencing token and end with ErrLost.
func TestHoldUnprotectedTakenOver(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	target := client.UUID(u1)
	h, err := s.client(t).Hold(t.Context(), target, 2*time.Second, client.Unprotected())
	if err != nil {
		t.Fatal(err)
	}
	ours := h.Lock().FencingToken
	other := s.client(t)
	if _, err := other.Release(t.Context(), target); err != nil {
		t.Fatal(err)
	}
	thief, err := other.Acquire(t.Context(), target, client.Unprotected(), client.WithTTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	ended(t, h, 2*time.Second)
	if cause := context.Cause(h.Context()); !errors.Is(cause, client.ErrLost) {
		t.Errorf("cause %v, want ErrLost", cause)
	}
	if got := h.Lock().FencingToken; got != ours || got == thief.FencingToken {
		t.Errorf("Held.Lock() token %d, want ours %d (not the new holder's %d)", got, ours, thief.FencingToken)
	}
}

// TestHoldNoticesLossAtOnce: Hold watches its lock, so a loss the server
// reports ends the Context at once — long before the next refresh (10 s
// away with a 30 s TTL).
func TestHoldNoticesLossAtOnce(t *testing.T) {
	s := newServer(t)
	for _, takeOver := range []bool{false, true} {
		target := client.UUID(u2)
		h, err := s.client(t).Hold(t.Context(), target, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		other := s.client(t)
		start := time.Now()
		if _, err := other.Release(t.Context(), target, client.WithSecret(h.Lock().Secret)); err != nil {
			t.Fatal(err)
		}
		if takeOver {
			if _, err := other.Acquire(t.Context(), target); err != nil {
				t.Fatal(err)
			}
		}
		ended(t, h, 5*time.Second)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("noticed after %v", d)
		}
		cause := context.Cause(h.Context())
		// The watch connects in the background: it sees the release, or
		// (connecting after it) a lock that is not held, or held by
		// another.
		released := errors.Is(cause, locklock.ErrNotFound) &&
			(strings.Contains(cause.Error(), "released by someone else") || strings.Contains(cause.Error(), "not held any more"))
		takenOver := takeOver && errors.Is(cause, locklock.ErrHeld) && strings.Contains(cause.Error(), "passed to another holder")
		if !errors.Is(cause, client.ErrLost) || !released && !takenOver {
			t.Errorf("cause %v, want ErrLost saying it was released (or taken over)", cause)
		}
		_ = h.Release(t.Context())
		if takeOver {
			if _, err := other.Release(t.Context(), target, client.Unprotected()); err != nil && !errors.Is(err, locklock.ErrSecretMismatch) {
				t.Log(err)
			}
		}
	}
}
