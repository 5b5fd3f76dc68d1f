package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
	"github.com/locklock/locklock/transport/client"
)

// stillOne fails unless the server keeps exactly one event stream open
// for d.
func stillOne(t *testing.T, s *testServer, d time.Duration) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if n := s.Svc.Watchers(); n != 1 {
			t.Fatalf("%d event streams open, want the one they share", n)
		}
	}
}

// revokedAtOnce revokes h's slot with an operator's key and checks that h
// ends at once (its TTL is far longer), saying so.
func revokedAtOnce(t *testing.T, ops *client.Semaphore, h *client.HeldSlot) {
	t.Helper()
	start := time.Now()
	if _, err := ops.Release(t.Context(), client.Slot{ID: h.Slot().ID}, client.Forced()); err != nil {
		t.Fatal(err)
	}
	if d := ended(t, h, 5*time.Second).Sub(start); d > 2*time.Second {
		t.Errorf("noticed after %v", d)
	}
	if cause := context.Cause(h.Context()); !errors.Is(cause, client.ErrLost) || !errors.Is(cause, locklock.ErrSlotNotFound) ||
		!strings.Contains(cause.Error(), "revoked by an operator") || !strings.Contains(cause.Error(), h.Slot().ID) {
		t.Errorf("cause %v, want ErrLost saying slot %s was revoked", cause, h.Slot().ID)
	}
}

// TestSemaphoreHoldsShareOneStream: 20 HeldSlots of one semaphore, taken
// at once from one Client, open one stream; each still ends at once when
// its own slot is revoked or released by someone else while the others
// stay held; the stream closes with the last of them, and a later Hold
// opens a fresh one.
func TestSemaphoreHoldsShareOneStream(t *testing.T) {
	s := newServer(t)
	pro := s.client(t, client.WithAPIKey(s.ProKey))
	target := client.Key("render-farm")
	ops := s.client(t, client.WithAPIKey(s.OpsKey)).Semaphore(target, 20)
	sem := pro.Semaphore(target, 20)
	hs := make([]*client.HeldSlot, 20)
	var wg sync.WaitGroup
	for i := range hs {
		wg.Go(func() {
			h, err := sem.Hold(t.Context(), time.Minute, client.WithHolder(fmt.Sprint("worker-", i)))
			if err != nil {
				t.Error(err)
				return
			}
			hs[i] = h
			t.Cleanup(func() { _ = h.Release(context.Background()) })
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	waitWatching(t, s, 1)
	stillOne(t, s, 200*time.Millisecond)

	revokedAtOnce(t, ops, hs[3])
	start := time.Now()
	other := s.client(t, client.WithAPIKey(s.ProKey)).Semaphore(target, 20)
	if _, err := other.Release(t.Context(), client.Slot{ID: hs[7].Slot().ID}, client.WithSecret(hs[7].Slot().Secret)); err != nil {
		t.Fatal(err)
	}
	if d := ended(t, hs[7], 5*time.Second).Sub(start); d > 2*time.Second {
		t.Errorf("noticed after %v", d)
	}
	if cause := context.Cause(hs[7].Context()); !errors.Is(cause, client.ErrLost) || !strings.Contains(cause.Error(), "released by someone else") {
		t.Errorf("cause %v, want ErrLost saying the slot was released", cause)
	}
	time.Sleep(300 * time.Millisecond) // room for a wrong end to show
	for i, h := range hs {
		if i != 3 && i != 7 && (h.Context().Err() != nil || h.Lost() != nil) {
			t.Errorf("HeldSlot %d ended with the others: %v", i, context.Cause(h.Context()))
		}
	}
	stillOne(t, s, 50*time.Millisecond)

	for i, h := range hs {
		if i != 3 && i != 7 {
			wg.Go(func() {
				if err := h.Release(t.Context()); err != nil || h.Lost() != nil {
					t.Errorf("release %d: %v (lost %v)", i, err, h.Lost())
				}
			})
		}
	}
	wg.Wait()
	if err := hs[3].Release(t.Context()); !errors.Is(err, locklock.ErrSlotNotFound) {
		t.Errorf("release of the revoked slot: %v, want ErrSlotNotFound", err)
	}
	waitWatching(t, s, 0)

	h, err := sem.Hold(t.Context(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Release(context.Background())
	waitWatching(t, s, 1)
	revokedAtOnce(t, ops, h)
	waitWatching(t, s, 0)
}

// TestSemaphoreHoldsBeyondStreamCap: with two streams allowed per key,
// five HeldSlots of one semaphore need one, and each hears of its loss at
// once; a stream apiece would have been refused from the third on.
func TestSemaphoreHoldsBeyondStreamCap(t *testing.T) {
	s := newServer(t, withServiceOptions(locklock.WithMaxWatchersPerCaller(2)))
	target := client.Key("pool")
	sem := s.client(t, client.WithAPIKey(s.ProKey)).Semaphore(target, 5)
	var hs []*client.HeldSlot
	for range 5 {
		h, err := sem.Hold(t.Context(), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Release(context.Background())
		hs = append(hs, h)
	}
	waitWatching(t, s, 1)
	revokedAtOnce(t, s.client(t, client.WithAPIKey(s.OpsKey)).Semaphore(target, 5), hs[4])
	for i, h := range hs[:4] {
		if h.Lost() != nil {
			t.Errorf("HeldSlot %d: %v", i, h.Lost())
		}
	}
}

// TestSemaphoreHoldsChurn: many goroutines take and free slots of one
// semaphore through one Client, the shared stream opening and closing
// under them; none is lost, and no stream is left open.
func TestSemaphoreHoldsChurn(t *testing.T) {
	s := newServer(t)
	c := s.client(t)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			sem := c.Semaphore(client.UUID(u1), 8)
			for i := range 8 {
				if g%2 == 0 {
					err := sem.Do(t.Context(), func(ctx context.Context, _ client.Slot) error {
						time.Sleep(time.Duration(i) * time.Millisecond)
						return ctx.Err()
					}, client.WithTTL(time.Minute))
					if err != nil {
						t.Error(err)
					}
					continue
				}
				h, err := sem.Hold(t.Context(), time.Minute)
				if err != nil {
					t.Error(err)
					continue
				}
				if err := h.Release(t.Context()); err != nil || h.Lost() != nil {
					t.Errorf("release: %v (lost %v)", err, h.Lost())
				}
			}
		})
	}
	wg.Wait()
	waitWatching(t, s, 0)
}

// TestSemaphoreHoldSlowReaderCutOff: a share of the stream whose reader
// does not read is cut off when its backlog is full; the stream and the
// other HeldSlots go on, and it gets what was queued, then the cut.
func TestSemaphoreHoldSlowReaderCutOff(t *testing.T) {
	s := newServer(t)
	c := s.client(t, client.WithAPIKey(s.ProKey))
	client.SetSlotBacklog(c, 4)
	target := client.Key("pool")
	sem := c.Semaphore(target, 3)
	h, err := sem.Hold(t.Context(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Release(context.Background())
	sent := time.Now()
	stuck, err := sem.Acquire(t.Context(), client.WithTTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second) // bounds the reads below
	defer cancel()
	r := client.JoinSlotFeed(ctx, c, target, stuck, sent, time.Now(), func() {})
	defer r.Close()
	waitWatching(t, s, 1)
	for range 10 { // ten events for the reader that does not read
		if _, err := sem.Refresh(t.Context(), stuck, client.WithSecret(stuck.Secret), client.WithTTL(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	// Told after the refreshes: the stream went past the stuck reader.
	revokedAtOnce(t, s.client(t, client.WithAPIKey(s.OpsKey)).Semaphore(target, 3), h)

	got := 0
	for {
		ev, err := r.Next()
		if err != nil {
			if !errors.Is(err, client.ErrSlowSubscriber) {
				t.Errorf("the stuck reader's end: %v, want ErrSlowSubscriber", err)
			}
			break
		}
		if ev.Type != client.EventState && (ev.Slot == nil || ev.Slot.ID != stuck.ID) {
			t.Errorf("the stuck reader got %+v, not its slot's", ev)
		}
		got++
	}
	if got == 0 || got > 4 {
		t.Errorf("the stuck reader got %d events, want its backlog of at most 4", got)
	}
	r.Close()
	waitWatching(t, s, 0) // h's watcher left when it was lost, r now
}

// TestSemaphoreHoldCutOffRefreshes: a HeldSlot cut off from the stream
// leaves it, and still finds its loss, at the next refresh.
func TestSemaphoreHoldCutOffRefreshes(t *testing.T) {
	s := newServer(t)
	sem := s.client(t).Semaphore(client.UUID(u1), 3)
	h, err := sem.Hold(t.Context(), 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Release(context.Background())
	waitWatching(t, s, 1)
	client.CutSlotWatch(h)
	waitWatching(t, s, 0)
	if _, err := s.client(t).Semaphore(client.UUID(u1), 3).Release(t.Context(), h.Slot(), client.WithSecret(h.Slot().Secret)); err != nil {
		t.Fatal(err)
	}
	ended(t, h, 3*time.Second)
	if cause := context.Cause(h.Context()); !errors.Is(cause, client.ErrLost) || !errors.Is(cause, locklock.ErrSlotNotFound) ||
		strings.Contains(cause.Error(), "released by someone else") {
		t.Errorf("cause %v, want the refresh's ErrSlotNotFound", cause)
	}
}

// TestSemaphoreHoldStreamRefused: a stream the server refuses for good
// ends for every HeldSlot on it (they go on with refreshes), and a later
// Hold opens a fresh one.
func TestSemaphoreHoldStreamRefused(t *testing.T) {
	var refuse atomic.Bool
	refuse.Store(true)
	s := newServer(t, withWrap(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if refuse.Load() && strings.HasSuffix(r.URL.Path, "/events") {
				w.Header().Set("Content-Type", "application/problem+json")
				w.WriteHeader(http.StatusForbidden)
				_, _ = w.Write([]byte(`{"title":"Forbidden","status":403,"detail":"no","code":"forbidden"}`))
				return
			}
			next.ServeHTTP(w, r)
		})
	}))
	c := s.client(t, client.WithAPIKey(s.ProKey))
	target := client.Key("pool")
	sem := c.Semaphore(target, 3)
	h, err := sem.Hold(t.Context(), 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Release(context.Background())
	sent := time.Now()
	sl, err := sem.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	r := client.JoinSlotFeed(t.Context(), c, target, sl, sent, time.Now(), func() {})
	defer r.Close()
	if _, err := r.Next(); !errors.Is(err, locklock.ErrForbidden) {
		t.Fatalf("a reader of the refused stream: %v, want its end (ErrForbidden)", err)
	}
	alive(t, h, 1500*time.Millisecond) // refreshed

	// r has not left the stream that ended: it is out of use all the same.
	refuse.Store(false)
	h2, err := sem.Hold(t.Context(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Release(context.Background())
	waitWatching(t, s, 1)
	revokedAtOnce(t, s.client(t, client.WithAPIKey(s.OpsKey)).Semaphore(target, 3), h2)
	if h.Lost() != nil {
		t.Errorf("the first HeldSlot: %v", h.Lost())
	}
}
