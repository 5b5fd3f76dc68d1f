package client_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
	"github.com/locklock/locklock/transport/client"
)

// Refreshes keep a slot alive well past its TTL; Release ends the context
// without a loss and frees the slot.
func TestSemaphoreHoldKeepsSlotAlive(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	target := client.UUID(u1)
	sem := s.client(t).Semaphore(target, 3)
	h, err := sem.Hold(t.Context(), time.Second, client.WithWeight(2), client.WithHolder("w"))
	if err != nil {
		t.Fatal(err)
	}
	first := h.Slot()
	if !first.Created || first.Secret == "" || first.Weight != 2 || first.Holder != "w" || (first.ExpiresIn != 1 && first.ExpiresIn != 0) {
		t.Errorf("held slot %+v", first)
	}
	if !h.ValidUntil().After(time.Now()) || h.ValidUntil().After(first.ExpiresAt.Add(time.Millisecond)) {
		t.Errorf("ValidUntil %v, server expiry %v", h.ValidUntil(), first.ExpiresAt)
	}

	alive(t, h, 2500*time.Millisecond)

	stored, ok := s.storedSlot(t, locklock.DefaultNamespace, target, first.ID)
	if !ok || stored.Token != first.FencingToken || !stored.Guard.Admits(first.Secret) {
		t.Fatalf("2.5 TTLs later: server-side %+v (held %v)", stored, ok)
	}
	if _, err := s.client(t).Semaphore(target, 3).Acquire(t.Context(), client.WithWeight(2)); !errors.Is(err, locklock.ErrSemaphoreFull) {
		t.Errorf("another weight 2: %v, want ErrSemaphoreFull", err)
	}
	now := h.Slot()
	if now.ID != first.ID || now.FencingToken != first.FencingToken || !now.ExpiresAt.After(first.ExpiresAt) || now.Secret != first.Secret || !now.Created {
		t.Errorf("Slot() %+v after refreshes, first %+v", now, first)
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
	if h.Lost() != nil {
		t.Errorf("after Release: Lost() %v", h.Lost())
	}
	if _, ok := s.storedSlot(t, locklock.DefaultNamespace, target, first.ID); ok {
		t.Error("the slot is held after Release")
	}
	n := s.patches()
	time.Sleep(400 * time.Millisecond)
	if s.patches() != n {
		t.Error("refreshes went on after Release")
	}
	if err := h.Release(t.Context()); !errors.Is(err, locklock.ErrSlotNotFound) {
		t.Errorf("second Release: %v, want ErrSlotNotFound", err)
	}
}

// TestSemaphoreHoldNoticesRelease: a HeldSlot watches its semaphore, so
// its slot released by someone else ends the Context at once — long before
// the next refresh, 10 s away — while the other slots' events (here
// another HeldSlot's, released the same way) leave it alone.
func TestSemaphoreHoldNoticesRelease(t *testing.T) {
	s := newServer(t)
	sem := s.client(t).Semaphore(client.UUID(u1), 2)
	h1, err := sem.Hold(t.Context(), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer h1.Release(context.Background())
	h2, err := sem.Hold(t.Context(), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Release(context.Background())
	// Let both streams connect, so that h1 sees h2's release as an event.
	time.Sleep(200 * time.Millisecond)
	other := s.client(t).Semaphore(client.UUID(u1), 2)
	start := time.Now()
	if _, err := other.Release(t.Context(), client.Slot{ID: h2.Slot().ID}, client.WithSecret(h2.Slot().Secret)); err != nil {
		t.Fatal(err)
	}
	ended(t, h2, 5*time.Second)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("noticed after %v", d)
	}
	cause := context.Cause(h2.Context())
	if !errors.Is(cause, client.ErrLost) || !errors.Is(cause, locklock.ErrSlotNotFound) ||
		!strings.Contains(cause.Error(), "released by someone else") || !strings.Contains(cause.Error(), h2.Slot().ID) {
		t.Errorf("cause %v, want ErrLost saying slot %s was released", cause, h2.Slot().ID)
	}
	if !errors.Is(h2.Lost(), client.ErrLost) {
		t.Errorf("Lost() = %v", h2.Lost())
	}
	alive(t, h1, 300*time.Millisecond)
	if err := h1.Release(t.Context()); err != nil {
		t.Errorf("h1's release: %v", err)
	}
	if err := h2.Release(t.Context()); !errors.Is(err, locklock.ErrSlotNotFound) {
		t.Errorf("h2's release after the loss: %v, want ErrSlotNotFound", err)
	}
}

// TestSemaphoreHoldNoticesExpiry: a slot that expires on the server (its
// clock run ahead) ends the Context as soon as the server reports it,
// long before the next refresh.
func TestSemaphoreHoldNoticesExpiry(t *testing.T) {
	s := newServer(t, withManualClock())
	sem := s.client(t).Semaphore(client.UUID(u1), 2)
	h, err := sem.Hold(t.Context(), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Release(context.Background())
	other, err := sem.Acquire(t.Context(), client.WithTTL(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the watch connects
	start := time.Now()
	s.Clock.Advance(31 * time.Second)
	// The memory engine reports an expiry when it next looks at the
	// semaphore (the server's sweeper, which the test server does not run,
	// looks every second).
	st, err := sem.Get(t.Context())
	if err != nil || len(st.Slots) != 1 || st.Slots[0].ID != other.ID {
		t.Fatalf("after the expiry: %+v %v", st, err)
	}
	ended(t, h, 5*time.Second)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("noticed after %v", d)
	}
	cause := context.Cause(h.Context())
	if !errors.Is(cause, client.ErrLost) || !errors.Is(cause, locklock.ErrSlotNotFound) || !strings.Contains(cause.Error(), "expired") {
		t.Errorf("cause %v, want ErrLost saying the slot expired", cause)
	}
}

// TestSemaphoreHoldStateSaysGone: a watch that connects after the slot
// went learns it from the state: ours is not among the slots.
func TestSemaphoreHoldStateSaysGone(t *testing.T) {
	var cut atomic.Bool
	cut.Store(true) // streams fail (503) until the slot is gone
	s := newServer(t, withWrap(func(h http.Handler) http.Handler { return withStreamsRefused(h, &cut) }))
	sem := s.client(t).Semaphore(client.UUID(u1), 3)
	h, err := sem.Hold(t.Context(), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Release(context.Background())
	if _, err := sem.Acquire(t.Context()); err != nil { // the semaphore lives on
		t.Fatal(err)
	}
	if _, err := sem.Release(t.Context(), h.Slot()); err != nil {
		t.Fatal(err)
	}
	alive(t, h, 100*time.Millisecond) // nobody has told it yet
	cut.Store(false)
	ended(t, h, 5*time.Second)
	if cause := context.Cause(h.Context()); !errors.Is(cause, client.ErrLost) || !strings.Contains(cause.Error(), "not held any more") {
		t.Errorf("cause %v, want ErrLost from the state", cause)
	}
}

// withStreamsRefused answers event streams 503 while cut is set.
func withStreamsRefused(next http.Handler, cut *atomic.Bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if cut.Load() && strings.HasSuffix(r.URL.Path, "/events") {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"title":"Service unavailable","status":503,"detail":"cut","code":"unavailable"}`))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// A Hold with the secret of a live slot takes that slot over (a retry) and
// refreshes it at once: it may have had little time left.
func TestSemaphoreHoldOwnSlot(t *testing.T) {
	s := newServer(t)
	sem := s.client(t).Semaphore(client.UUID(u1), 2)
	sl, err := sem.Acquire(t.Context(), client.WithSecret("mine"), client.WithTTL(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	before := s.patches()
	h, err := sem.Hold(t.Context(), time.Minute, client.WithSecret("mine"))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Release(context.Background())
	got := h.Slot()
	if got.ID != sl.ID || got.Created || got.Secret != "mine" || got.ExpiresIn < 58 {
		t.Errorf("held %+v, want slot %s refreshed to a minute", got, sl.ID)
	}
	if s.patches() != before+1 {
		t.Errorf("%d refreshes, want 1 right after the acquire", s.patches()-before)
	}
}

func TestSemaphoreHoldFull(t *testing.T) {
	s := newServer(t)
	sem := s.client(t).Semaphore(client.UUID(u1), 2)
	if _, err := sem.Acquire(t.Context(), client.WithWeight(2)); err != nil {
		t.Fatal(err)
	}
	h, err := sem.Hold(t.Context(), time.Second)
	if !errors.Is(err, locklock.ErrSemaphoreFull) || h != nil {
		t.Errorf("Hold on a full semaphore: %v, %v", h, err)
	}
	_, err = s.client(t).Semaphore(client.UUID(u1), 3).Hold(t.Context(), time.Second)
	if !errors.Is(err, locklock.ErrLimitMismatch) {
		t.Errorf("Hold with another limit: %v", err)
	}
}

// TestSemaphoreDoLimitsConcurrency: many Dos on a semaphore of limit 2
// (waiting for room) run at most two at once, and each frees its slot.
func TestSemaphoreDoLimitsConcurrency(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	target := client.UUID(u1)
	var running, most, ran atomic.Int32
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			sem := s.client(t).Semaphore(target, 2)
			err := sem.Do(t.Context(), func(ctx context.Context, sl client.Slot) error {
				n := running.Add(1)
				defer running.Add(-1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				ran.Add(1)
				if !sl.Created || sl.Secret == "" || sl.Weight != 1 || ctx.Err() != nil {
					t.Errorf("fn got %+v (ctx %v)", sl, ctx.Err())
				}
				stored, ok := s.storedSlot(t, locklock.DefaultNamespace, target, sl.ID)
				if !ok || stored.ExpiresAt.Sub(stored.AcquiredAt) != client.DefaultHoldTTL {
					t.Errorf("server-side %+v (held %v), want a lifetime of DefaultHoldTTL", stored, ok)
				}
				time.Sleep(150 * time.Millisecond)
				return nil
			}, client.WithWait(30*time.Second))
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if ran.Load() != 6 || most.Load() != 2 {
		t.Errorf("%d ran, at most %d at once; want 6, at most 2 (and 2 at some point)", ran.Load(), most.Load())
	}
	if _, err := s.client(t).Semaphore(target, 2).Get(t.Context()); !errors.Is(err, locklock.ErrSemaphoreNotFound) {
		t.Errorf("after the Dos: %v, want every slot freed", err)
	}
}

// Do returns fn's error, or ErrLost when the slot went while fn ran; a
// panic frees the slot on its way up.
func TestSemaphoreDoErrors(t *testing.T) {
	s := newServer(t)
	target := client.UUID(u1)
	sem := s.client(t).Semaphore(target, 1)
	gone := func(what string) {
		t.Helper()
		if _, err := sem.Get(t.Context()); !errors.Is(err, locklock.ErrSemaphoreNotFound) {
			t.Errorf("%s: %v, want the slot freed", what, err)
		}
	}
	errFn := errors.New("render failed")
	if err := sem.Do(t.Context(), func(context.Context, client.Slot) error { return errFn }); !errors.Is(err, errFn) {
		t.Errorf("Do: %v, want fn's error", err)
	}
	gone("after fn's error")

	err := sem.Do(t.Context(), func(ctx context.Context, sl client.Slot) error {
		if _, err := s.client(t).Semaphore(target, 1).Release(t.Context(), sl); err != nil {
			t.Error(err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(3 * time.Second):
			t.Error("fn's context is live after the slot was released")
		}
		return nil
	}, client.WithTTL(30*time.Second))
	if !errors.Is(err, client.ErrLost) || !errors.Is(err, locklock.ErrSlotNotFound) {
		t.Errorf("Do after the slot went: %v, want ErrLost", err)
	}

	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recovered %v, want fn's panic", r)
			}
		}()
		_ = sem.Do(t.Context(), func(context.Context, client.Slot) error { panic("boom") })
	}()
	gone("after fn panicked")

	// Full: fn never runs.
	if _, err := sem.Acquire(t.Context()); err != nil {
		t.Fatal(err)
	}
	err = sem.Do(t.Context(), func(context.Context, client.Slot) error {
		t.Error("fn ran without a slot")
		return nil
	})
	if !errors.Is(err, locklock.ErrSemaphoreFull) {
		t.Errorf("Do on a full semaphore: %v", err)
	}
}
