package client_test

import (
	"context"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
	"github.com/locklock/locklock/transport/client"
)

// Holders, metadata and lock-delay through the client (API.md §8).

func TestAcquireLabels(t *testing.T) {
	s := newServer(t)
	c := s.client(t)
	md := map[string]string{"addr": "10.0.0.7:8080", "role": "leader"}
	opt := client.WithMetadata(md)
	md["role"] = "changed after the option was made" // the option copied the map
	l, err := c.Acquire(t.Context(), client.UUID(u1), client.WithHolder("host-7:4242"), opt, client.WithLockDelay(1500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"addr": "10.0.0.7:8080", "role": "leader"}
	if l.Holder != "host-7:4242" || !maps.Equal(l.Metadata, want) || l.LockDelay != 2 {
		t.Errorf("lock %+v, want the holder, the metadata and a lock-delay of 2 (1.5 s rounded up)", l)
	}
	stored, _ := s.stored(t, locklock.DefaultNamespace, client.UUID(u1))
	if stored.Holder != "host-7:4242" || !maps.Equal(stored.Metadata, want) || stored.LockDelay != 2*time.Second {
		t.Errorf("server-side holder %q, metadata %v, lock-delay %v", stored.Holder, stored.Metadata, stored.LockDelay)
	}
	got, err := c.Get(t.Context(), client.UUID(u1))
	if err != nil || got.Holder != l.Holder || !maps.Equal(got.Metadata, want) || got.LockDelay != 2 {
		t.Errorf("Get %+v, %v", got, err)
	}

	// None of them: none shown; an empty holder or metadata is none.
	plain, err := c.Acquire(t.Context(), client.UUID(u2), client.WithHolder(""), client.WithMetadata(nil))
	if err != nil {
		t.Fatal(err)
	}
	if plain.Holder != "" || plain.Metadata != nil || plain.LockDelay != 0 {
		t.Errorf("lock %+v, want no holder, metadata or lock-delay", plain)
	}

	// Bad values: the server's 400, nothing taken; a negative delay fails here.
	for name, opt := range map[string]client.LockOption{
		"holder too long":     client.WithHolder(strings.Repeat("h", locklock.MaxHolderLen+1)),
		"bad metadata name":   client.WithMetadata(map[string]string{"a b": "v"}),
		"lock-delay over max": client.WithLockDelay(2 * locklock.DefaultMaxLockDelay),
		"negative lock-delay": client.WithLockDelay(-time.Second),
	} {
		if _, err := c.Acquire(t.Context(), client.UUID(u3), opt); !errors.Is(err, locklock.ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
	if _, ok := s.stored(t, locklock.DefaultNamespace, client.UUID(u3)); ok {
		t.Error("a refused acquire took the lock")
	}
}

// TestPatch: a leader publishes new metadata without changing its expiry
// or its fencing token; {} clears; no field refreshes by the default
// lifetime; Refresh keeps the labels.
func TestPatch(t *testing.T) {
	s := newServer(t)
	c := s.client(t)
	target := client.UUID(u1)
	l, err := c.Acquire(t.Context(), target, client.WithTTL(time.Minute), client.WithHolder("host-7:4242"),
		client.WithMetadata(map[string]string{"addr": "10.0.0.7:8080"}), client.WithLockDelay(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	secret := client.WithSecret(l.Secret)
	same := func(what string, got client.Lock, holder string, md map[string]string) {
		t.Helper()
		if got.FencingToken != l.FencingToken || !got.ExpiresAt.Equal(l.ExpiresAt) || got.LockDelay != 5 ||
			got.Holder != holder || !maps.Equal(got.Metadata, md) {
			t.Errorf("%s: %+v, want token %d, expiry %v, holder %q, metadata %v", what, got, l.FencingToken, l.ExpiresAt, holder, md)
		}
		if stored, _ := s.stored(t, locklock.DefaultNamespace, target); stored.Holder != holder || !maps.Equal(stored.Metadata, md) {
			t.Errorf("%s: server-side holder %q, metadata %v", what, stored.Holder, stored.Metadata)
		}
	}

	got, err := c.Patch(t.Context(), target, secret, client.WithMetadata(map[string]string{"addr": "10.0.0.8:8080"}))
	if err != nil {
		t.Fatal(err)
	}
	same("new metadata", got, "host-7:4242", map[string]string{"addr": "10.0.0.8:8080"})

	got, err = c.Patch(t.Context(), target, secret, client.WithHolder("host-8:1"))
	if err != nil {
		t.Fatal(err)
	}
	same("new holder", got, "host-8:1", map[string]string{"addr": "10.0.0.8:8080"})

	got, err = c.Patch(t.Context(), target, secret, client.WithMetadata(nil))
	if err != nil {
		t.Fatal(err)
	}
	same("metadata cleared", got, "host-8:1", nil)

	// Refresh takes no labels and keeps them.
	got, err = c.Refresh(t.Context(), target, secret, client.WithTTL(2*time.Minute), client.WithHolder("ignored"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Holder != "host-8:1" || got.FencingToken != l.FencingToken || got.ExpiresIn < 119 {
		t.Errorf("refresh: %+v", got)
	}

	// With a TTL the expiry moves; with nothing, by the default lifetime.
	got, err = c.Patch(t.Context(), target, secret, client.WithTTL(3*time.Minute), client.WithMetadata(map[string]string{"k": "v"}))
	if err != nil {
		t.Fatal(err)
	}
	if got.ExpiresIn < 179 || got.ExpiresIn > 180 || got.Metadata["k"] != "v" {
		t.Errorf("patch with a TTL: %+v", got)
	}
	if got, err = c.Patch(t.Context(), target, secret); err != nil || got.ExpiresAt.Sub(got.AcquiredAt) < locklock.DefaultTTL-time.Minute {
		t.Errorf("patch of nothing: %+v, %v; want the default lifetime", got, err)
	}

	// Refusals.
	if _, err := c.Patch(t.Context(), target, client.WithSecret("wrong"), client.WithHolder("x")); !errors.Is(err, locklock.ErrSecretMismatch) {
		t.Errorf("wrong secret: %v", err)
	}
	if _, err := c.Patch(t.Context(), target, secret, client.WithHolder("")); !errors.Is(err, locklock.ErrInvalidArgument) {
		t.Errorf("empty holder: %v, want ErrInvalidArgument (a holder cannot be removed)", err)
	}
	if _, err := c.Patch(t.Context(), client.UUID(u2), client.WithHolder("x")); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("no such lock: %v", err)
	}
	if _, err := c.Patch(t.Context(), client.UUID("nope")); !errors.Is(err, locklock.ErrInvalidUUID) {
		t.Errorf("bad target: %v", err)
	}
	if _, err := c.Patch(t.Context(), target, secret, client.WithTTL(-time.Second)); !errors.Is(err, locklock.ErrInvalidArgument) {
		t.Errorf("negative TTL: %v", err)
	}
}

// TestLockDelayedThroughTheClient: Acquire, Hold and Do report a lock-delay
// as ErrDelayed, like a held lock (no retry); the lost holder's own secret
// takes the lock back; a wait outlasts the delay.
func TestLockDelayedThroughTheClient(t *testing.T) {
	s := newServer(t, withManualClock())
	c := s.client(t)
	target := client.UUID(u1)
	lost, err := c.Acquire(t.Context(), target, client.WithTTL(5*time.Second), client.WithLockDelay(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	s.Clock.Advance(6 * time.Second)

	if _, err := c.Acquire(t.Context(), target); !errors.Is(err, locklock.ErrDelayed) || errors.Is(err, locklock.ErrHeld) {
		t.Errorf("Acquire: %v, want ErrDelayed", err)
	}
	if h, err := c.Hold(t.Context(), target, time.Minute); !errors.Is(err, locklock.ErrDelayed) || h != nil {
		t.Errorf("Hold: %v, %v; want ErrDelayed and no Held", h, err)
	}
	ran := false
	err = c.Do(t.Context(), target, func(context.Context, client.Lock) error { ran = true; return nil })
	if !errors.Is(err, locklock.ErrDelayed) || ran {
		t.Errorf("Do: %v (fn ran: %v), want ErrDelayed", err, ran)
	}

	// A wait keeps waiting through the delay (the server's long poll).
	done := make(chan error, 1)
	go func() {
		_, err := s.client(t).Acquire(context.Background(), target, client.WithWait(30*time.Second))
		done <- err
	}()
	waitFor(t, "the waiter", 10*time.Second, func() bool { return s.Svc.Waiters() == 1 })
	select {
	case err := <-done:
		t.Fatalf("the waiter returned during the delay: %v", err)
	case <-time.After(20 * time.Millisecond):
	}

	// The lost holder's secret passes the delay: a new term, a new token.
	back, err := c.Acquire(t.Context(), target, client.WithSecret(lost.Secret), client.WithTTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if !back.Created || back.FencingToken <= lost.FencingToken {
		t.Errorf("reclaimed %+v after %+v", back, lost)
	}
	if _, err := c.Release(t.Context(), target, client.WithSecret(lost.Secret)); err != nil {
		t.Fatal(err)
	}
	// Released by its holder: no delay, the waiter gets it.
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("the waiter: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiter did not get the released lock")
	}
}

// TestHoldLabels: Hold takes the lock with its holder and metadata, its
// refreshes keep them, and a Patch with the Held's secret publishes new
// metadata, which the next refresh shows in Lock().
func TestHoldLabels(t *testing.T) {
	s := newServer(t)
	c := s.client(t, client.WithAPIKey(s.ProKey))
	target := client.Key("leader")
	h, err := c.Hold(t.Context(), target, 3*time.Second, client.WithHolder("host-7:4242"),
		client.WithMetadata(map[string]string{"addr": "10.0.0.7:8080"}), client.WithLockDelay(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = h.Release(context.Background()) }()
	if l := h.Lock(); l.Holder != "host-7:4242" || l.Metadata["addr"] != "10.0.0.7:8080" || l.LockDelay != 1 {
		t.Errorf("held lock %+v", l)
	}
	l := h.Lock()
	p, err := c.Patch(t.Context(), l.Target(), client.WithSecret(l.Secret), client.WithMetadata(map[string]string{"addr": "10.0.0.8:8080"}))
	if err != nil {
		t.Fatal(err)
	}
	if p.FencingToken != l.FencingToken || p.Holder != "host-7:4242" {
		t.Errorf("patched %+v", p)
	}
	waitFor(t, "a refresh showing the new metadata", 10*time.Second, func() bool { return h.Lock().Metadata["addr"] == "10.0.0.8:8080" })
	if l := h.Lock(); l.Holder != "host-7:4242" || l.FencingToken != p.FencingToken || h.Lost() != nil {
		t.Errorf("after a refresh: %+v, lost %v", l, h.Lost())
	}
}
