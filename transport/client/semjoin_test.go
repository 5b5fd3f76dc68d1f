package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
	"github.com/locklock/locklock/transport/client"
)

// A HeldSlot that joins a shared stream already running has missed what
// the stream told before. These tests put the end of its slot, or its
// acquire, where that matters (see slotKnowledge.judge).

// TestSemaphoreHoldJoinsAfterItsSlotEnded: the slot is revoked after its
// acquire, and the shared stream tells of it, before the acquire's answer
// reaches the HeldSlot. It ends at once, from what the stream told — not
// a third of its TTL later, at the first refresh.
func TestSemaphoreHoldJoinsAfterItsSlotEnded(t *testing.T) {
	target := client.Key("pool")
	var (
		delay atomic.Bool
		pro   atomic.Pointer[client.Client]
		ops   atomic.Pointer[client.Client]
	)
	s := newServer(t, withWrap(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !delay.Load() || r.Method != http.MethodPost {
				next.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			var sl struct {
				ID    string `json:"slot"`
				Token uint64 `json:"fencing_token"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &sl); err != nil || sl.ID == "" {
				t.Errorf("acquire's answer %s: %v", rec.Body, err)
			} else if _, err := ops.Load().Semaphore(target, 3).Release(r.Context(), client.Slot{ID: sl.ID}, client.Forced()); err != nil {
				t.Error(err)
			}
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(2 * time.Millisecond) {
				open, synced, live, maxToken := client.SlotFeedKnows(pro.Load(), target)
				if open && synced && !live[sl.ID] && maxToken >= sl.Token {
					break
				}
				if time.Now().After(deadline) {
					t.Error("the shared stream did not tell of the revoke")
					break
				}
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			_, _ = w.Write(rec.Body.Bytes())
		})
	}))
	pro.Store(s.client(t, client.WithAPIKey(s.ProKey)))
	ops.Store(s.client(t, client.WithAPIKey(s.OpsKey)))
	sem := pro.Load().Semaphore(target, 3)
	h1, err := sem.Hold(t.Context(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer h1.Release(context.Background())
	waitFor(t, "the shared stream's state", 5*time.Second, func() bool {
		_, synced, _, _ := client.SlotFeedKnows(pro.Load(), target)
		return synced
	})
	delay.Store(true)
	before := s.patches()
	h2, err := sem.Hold(t.Context(), time.Minute)
	delay.Store(false)
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Release(context.Background())
	ended(t, h2, 2*time.Second)
	if cause := context.Cause(h2.Context()); !errors.Is(cause, client.ErrLost) || !errors.Is(cause, locklock.ErrSlotNotFound) ||
		!strings.Contains(cause.Error(), "is not held any more") {
		t.Errorf("cause %v, want ErrLost: not held any more", cause)
	}
	if n := s.patches() - before; n != 0 {
		t.Errorf("%d refreshes: the stream had told already", n)
	}
	alive(t, h1, 200*time.Millisecond)
	stillOne(t, s, 50*time.Millisecond)
}

// gatedEvents holds event streams back while its gate is shut: before the
// handler (before the server reads the state), or, with afterState, when
// the handler starts its answer (the state read).
type gatedEvents struct {
	afterState bool
	shut       atomic.Bool
	entered    chan struct{} // a stream is held
	gate       chan struct{} // closed: let them go
}

func newGatedEvents(afterState bool) *gatedEvents {
	g := &gatedEvents{afterState: afterState, entered: make(chan struct{}, 8), gate: make(chan struct{})}
	g.shut.Store(true)
	return g
}

func (g *gatedEvents) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.shut.Load() || !strings.HasSuffix(r.URL.Path, "/events") {
			next.ServeHTTP(w, r)
			return
		}
		if g.afterState {
			next.ServeHTTP(&heldAnswer{ResponseWriter: w, g: g, done: r.Context().Done()}, r)
			return
		}
		g.hold(r.Context().Done())
		next.ServeHTTP(w, r)
	})
}

func (g *gatedEvents) hold(done <-chan struct{}) {
	g.entered <- struct{}{}
	select {
	case <-g.gate:
	case <-done:
	}
}

func (g *gatedEvents) open() {
	g.shut.Store(false)
	close(g.gate)
}

// heldAnswer holds the answer's header back: the handler has read the
// stream's state by then.
type heldAnswer struct {
	http.ResponseWriter
	g    *gatedEvents
	done <-chan struct{}
}

func (h *heldAnswer) WriteHeader(code int) {
	h.g.hold(h.done)
	h.ResponseWriter.WriteHeader(code)
}

// Unwrap lets the handler's ResponseController flush.
func (h *heldAnswer) Unwrap() http.ResponseWriter { return h.ResponseWriter }

// waitEntered waits for the gate to hold a stream.
func (g *gatedEvents) waitEntered(t *testing.T) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("no event stream came")
	}
}

// TestSemaphoreHoldStateReadBeforeItsAcquire: the shared stream's state is
// read before the slot is acquired, and arrives after: the state lacks the
// slot, yet it is held (its acquire follows in the stream). The HeldSlot
// is not ended; it is refreshed once to be sure, and still hears of its
// loss at once.
func TestSemaphoreHoldStateReadBeforeItsAcquire(t *testing.T) {
	g := newGatedEvents(true)
	s := newServer(t, withWrap(g.wrap))
	target := client.Key("pool")
	sem := s.client(t, client.WithAPIKey(s.ProKey)).Semaphore(target, 3)
	h1, err := sem.Hold(t.Context(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer h1.Release(context.Background())
	g.waitEntered(t)
	before := s.patches()
	h2, err := sem.Hold(t.Context(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Release(context.Background())
	g.open()
	alive(t, h2, 500*time.Millisecond)
	waitFor(t, "the refresh that settles the doubt", 5*time.Second, func() bool { return s.patches() > before })
	if n := s.patches() - before; n != 1 || h2.Lost() != nil || h1.Lost() != nil {
		t.Errorf("%d refreshes, want 1; lost: %v, %v", n, h2.Lost(), h1.Lost())
	}
	stillOne(t, s, 50*time.Millisecond)
	revokedAtOnce(t, s.client(t, client.WithAPIKey(s.OpsKey)).Semaphore(target, 3), h2)
	alive(t, h1, 100*time.Millisecond)
}

// TestSemaphoreHoldEndedBeforeTheState: the shared stream's connection is
// asked for before the slot is acquired, and its state read after the
// slot came and went: nothing in the stream will ever name the slot. The
// HeldSlot is refreshed at once, which finds it gone.
func TestSemaphoreHoldEndedBeforeTheState(t *testing.T) {
	g := newGatedEvents(false)
	s := newServer(t, withWrap(g.wrap))
	target := client.Key("pool")
	sem := s.client(t, client.WithAPIKey(s.ProKey)).Semaphore(target, 3)
	h1, err := sem.Hold(t.Context(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer h1.Release(context.Background())
	g.waitEntered(t)
	h2, err := sem.Hold(t.Context(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Release(context.Background())
	if _, err := s.client(t, client.WithAPIKey(s.OpsKey)).Semaphore(target, 3).Release(t.Context(), client.Slot{ID: h2.Slot().ID}, client.Forced()); err != nil {
		t.Fatal(err)
	}
	alive(t, h2, 100*time.Millisecond) // nobody has told it yet
	start := time.Now()
	g.open()
	if d := ended(t, h2, 5*time.Second).Sub(start); d > 2*time.Second {
		t.Errorf("noticed after %v", d)
	}
	if cause := context.Cause(h2.Context()); !errors.Is(cause, client.ErrLost) || !errors.Is(cause, locklock.ErrSlotNotFound) {
		t.Errorf("cause %v, want the refresh's ErrSlotNotFound", cause)
	}
	alive(t, h1, 200*time.Millisecond)
}
