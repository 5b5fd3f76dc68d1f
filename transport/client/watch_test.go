package client_test

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
	"github.com/locklock/locklock/transport"
	"github.com/locklock/locklock/transport/client"
)

// next reads one event within a few seconds.
func next(t *testing.T, s *client.Stream) client.Event {
	t.Helper()
	type result struct {
		ev  client.Event
		err error
	}
	ch := make(chan result, 1)
	go func() { ev, err := s.Next(); ch <- result{ev, err} }()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("Next: %v", r.err)
		}
		return r.ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10 s")
		return client.Event{}
	}
}

func wantEvent(t *testing.T, ev client.Event, typ string) {
	t.Helper()
	if ev.Type != typ {
		t.Fatalf("event %+v, want %s", ev, typ)
	}
}

// TestWatchResumesAfterADrop: a lock's stream starts with its state, sees
// the changes, and after its connection is cut resumes with exactly the
// events it missed.
func TestWatchResumesAfterADrop(t *testing.T) {
	s := newServer(t)
	c := s.client(t, client.WithBackoff(10*time.Millisecond, 50*time.Millisecond))
	w := c.Watch(t.Context(), client.UUID(u1))
	t.Cleanup(w.Close)
	ev := next(t, w)
	if ev.Type != client.EventState || ev.Lock != nil || ev.ID == "" {
		t.Fatalf("first event %+v, want the state of a free lock", ev)
	}
	l, err := c.Acquire(t.Context(), client.UUID(u1))
	if err != nil {
		t.Fatal(err)
	}
	ev = next(t, w)
	if ev.Type != "acquired" || ev.Lock == nil || ev.Lock.FencingToken != l.FencingToken || ev.At.IsZero() {
		t.Fatalf("after acquire: %+v", ev)
	}
	s.srv.CloseClientConnections()
	c = s.client(t) // a client whose connections were not just cut
	if _, err := c.Release(t.Context(), client.UUID(u1), client.WithSecret(l.Secret)); err != nil {
		t.Fatal(err)
	}
	again, err := c.Acquire(t.Context(), client.UUID(u1))
	if err != nil {
		t.Fatal(err)
	}
	wantEvent(t, next(t, w), "released")
	ev = next(t, w)
	if ev.Type != "acquired" || ev.Lock.FencingToken != again.FencingToken {
		t.Fatalf("after the drop: %+v, want the second acquisition", ev)
	}
}

// TestWatchReportsReset: a stream the server cannot resume — here a new
// server process, whose positions are not the old one's — is reset; the
// client reports the reset, then starts afresh with the state. A stream
// the server refuses for good returns the error.
func TestWatchReportsReset(t *testing.T) {
	var restarted atomic.Pointer[http.Handler]
	s := newServer(t, withWrap(func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if next := restarted.Load(); next != nil {
				h = *next
			}
			h.ServeHTTP(w, r)
		})
	}))
	c := s.client(t, client.WithBackoff(10*time.Millisecond, 50*time.Millisecond))
	w := c.Watch(t.Context(), client.UUID(u1))
	t.Cleanup(w.Close)
	wantEvent(t, next(t, w), client.EventState)
	l, err := c.Acquire(t.Context(), client.UUID(u1))
	if err != nil {
		t.Fatal(err)
	}
	wantEvent(t, next(t, w), "acquired")

	// The same storage behind a new Service: a restarted server.
	svc := locklock.NewService(s.Engine)
	t.Cleanup(svc.StopWatching)
	var h http.Handler = transport.NewHandler(svc)
	restarted.Store(&h)
	s.srv.CloseClientConnections()
	wantEvent(t, next(t, w), client.EventReset)
	ev := next(t, w)
	if ev.Type != client.EventState || ev.Lock == nil || ev.Lock.FencingToken != l.FencingToken {
		t.Fatalf("after the reset: %+v, want the state with the held lock", ev)
	}

	anon := s.client(t)
	if _, err := anon.WatchNamespace(t.Context(), client.WatchOptions{}).Next(); !errors.Is(err, locklock.ErrUnauthorized) {
		t.Fatalf("anonymous namespace stream: %v, want ErrUnauthorized", err)
	}
}

// TestWatchNamespace: a key's namespace stream starts with ready and sees
// its namespace's locks only.
func TestWatchNamespace(t *testing.T) {
	s := newServer(t)
	acme := s.client(t, client.WithAPIKey(s.ProKey))
	devco := s.client(t, client.WithAPIKey(s.DevKey))
	w := acme.WatchNamespace(t.Context(), client.WatchOptions{Kind: locklock.KindKey, Prefix: "jobs."})
	t.Cleanup(w.Close)
	wantEvent(t, next(t, w), client.EventReady)
	if _, err := devco.Acquire(t.Context(), client.UUID(u1)); err != nil {
		t.Fatal(err)
	}
	if _, err := acme.Acquire(t.Context(), client.Key("other")); err != nil {
		t.Fatal(err)
	}
	if _, err := acme.Acquire(t.Context(), client.Key("jobs.1")); err != nil {
		t.Fatal(err)
	}
	ev := next(t, w)
	if ev.Type != "acquired" || ev.Lock.Namespace != "acme" || ev.Lock.Name != "jobs.1" {
		t.Fatalf("acme's jobs. stream: %+v", ev)
	}
}

// TestWatchEndsWithItsContext: Next returns the context's error once it
// ends, and Close ends a stream.
func TestWatchEndsWithItsContext(t *testing.T) {
	s := newServer(t)
	c := s.client(t)
	ctx, cancel := context.WithCancel(t.Context())
	w := c.Watch(ctx, client.UUID(u1))
	next(t, w)
	cancel()
	if _, err := w.Next(); !errors.Is(err, context.Canceled) {
		t.Fatalf("after cancel: %v", err)
	}
	w2 := c.Watch(t.Context(), client.UUID(u1))
	next(t, w2)
	w2.Close()
	if _, err := w2.Next(); !errors.Is(err, context.Canceled) {
		t.Fatalf("after Close: %v", err)
	}
}

// TestWatchCloseFromAnotherGoroutine: Close ends a Next that is waiting for
// an event in another goroutine, as its documentation promises — under the
// race detector too (the connection Next opened is closed, not raced for).
func TestWatchCloseFromAnotherGoroutine(t *testing.T) {
	s := newServer(t)
	w := s.client(t).Watch(t.Context(), client.UUID(u1))
	ended := make(chan error, 1)
	go func() {
		for {
			if _, err := w.Next(); err != nil {
				ended <- err
				return
			}
		}
	}()
	waitWatching(t, s, 1) // Next has connected and waits for the next event
	w.Close()
	select {
	case err := <-ended:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Next after Close: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Next still waiting 5 s after Close")
	}
}
