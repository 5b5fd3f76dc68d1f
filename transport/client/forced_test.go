package client_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
	"github.com/locklock/locklock/transport/client"
)

// waitWatching waits until the server has exactly n event streams open: a Held's
// stream connects in the background, and a loss it should hear of as an
// event must come after it is there.
func waitWatching(t *testing.T, s *testServer, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.Svc.Watchers() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d event streams open after 5 s, want %d", s.Svc.Watchers(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestForcedRelease: an operator's client ends a lock and a slot without
// their secrets (Forced); an ordinary key's Forced release is refused with
// ErrForbidden and changes nothing.
func TestForcedRelease(t *testing.T) {
	s := newServer(t)
	pro := s.client(t, client.WithAPIKey(s.ProKey))
	ops := s.client(t, client.WithAPIKey(s.OpsKey))
	target := client.Key("stuck-job")
	held, err := pro.Acquire(t.Context(), target, client.WithHolder("ci-7"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pro.Release(t.Context(), target, client.Forced()); !errors.Is(err, locklock.ErrForbidden) {
		t.Fatalf("a forced release by an ordinary key: %v, want ErrForbidden", err)
	}
	got, err := ops.Release(t.Context(), target, client.Forced())
	if err != nil || got.FencingToken != held.FencingToken || got.Holder != "ci-7" {
		t.Fatalf("the operator's forced release = %+v, %v; want the lock as it was", got, err)
	}
	if _, err := pro.Get(t.Context(), target); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("get after the forced release: %v, want ErrNotFound", err)
	}

	sem := pro.Semaphore(client.Key("pool"), 1)
	sl, err := sem.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ops.Semaphore(client.Key("pool"), 1).Release(t.Context(), client.Slot{ID: sl.ID}, client.Forced()); err != nil {
		t.Fatalf("the operator's forced release of a slot: %v", err)
	}
	if _, err := sem.Acquire(t.Context()); err != nil {
		t.Errorf("acquire after the forced slot release: %v", err)
	}
}

// TestHoldReportsRevoked: a Held whose lock an operator revokes ends at
// once, its cause saying so; a HeldSlot likewise.
func TestHoldReportsRevoked(t *testing.T) {
	s := newServer(t)
	pro := s.client(t, client.WithAPIKey(s.ProKey))
	ops := s.client(t, client.WithAPIKey(s.OpsKey))

	h, err := pro.Hold(t.Context(), client.Key("leader"), 30*time.Second, client.WithLockDelay(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	waitWatching(t, s, 1)
	if _, err := ops.Release(t.Context(), client.Key("leader"), client.Forced()); err != nil {
		t.Fatal(err)
	}
	ended(t, h, 5*time.Second)
	cause := context.Cause(h.Context())
	if !errors.Is(cause, client.ErrLost) || !errors.Is(cause, locklock.ErrNotFound) || !strings.Contains(cause.Error(), "revoked by an operator") {
		t.Errorf("the Held's cause %v, want ErrLost saying an operator revoked it", cause)
	}
	// Its own secret cannot take it back during the revoke's lock-delay.
	if _, err := pro.Acquire(t.Context(), client.Key("leader"), client.WithSecret(h.Lock().Secret)); !errors.Is(err, locklock.ErrDelayed) {
		t.Errorf("the lost holder's acquire: %v, want ErrDelayed", err)
	}

	waitWatching(t, s, 0) // the lock's stream ends with its Held
	sem := pro.Semaphore(client.Key("workers"), 2)
	hs, err := sem.Hold(t.Context(), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	waitWatching(t, s, 1)
	if _, err := ops.Semaphore(client.Key("workers"), 2).Release(t.Context(), client.Slot{ID: hs.Slot().ID}, client.Forced()); err != nil {
		t.Fatal(err)
	}
	ended(t, hs, 5*time.Second)
	if cause := context.Cause(hs.Context()); !errors.Is(cause, client.ErrLost) || !strings.Contains(cause.Error(), "revoked by an operator") {
		t.Errorf("the HeldSlot's cause %v, want ErrLost saying an operator revoked it", cause)
	}
}
