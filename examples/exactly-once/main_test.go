package main

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/locklock/locklock/engines/memory"
	"github.com/locklock/locklock/locklock"
	"github.com/locklock/locklock/transport"
	"github.com/locklock/locklock/transport/client"
)

func newServer(t *testing.T) *httptest.Server {
	engine := memory.New()
	t.Cleanup(func() { engine.Close() })
	srv := httptest.NewServer(http.StripPrefix("/v1/api", transport.NewHandler(locklock.NewService(engine))))
	t.Cleanup(srv.Close)
	return srv
}

func newClient(t *testing.T, url string) *client.Client {
	c, err := client.New(url, client.WithRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestClaimOnce: the first claim of an event wins, every later one is a
// duplicate — also from another consumer, with a client of its own.
func TestClaimOnce(t *testing.T) {
	srv := newServer(t)
	consumers := []*client.Client{newClient(t, srv.URL), newClient(t, srv.URL)}
	const event = "6f1c3b4e-8a2d-4c5e-9f01-23456789abcd"
	for i, want := range []bool{true, false, false} {
		got, err := claim(t.Context(), consumers[i%2], event)
		if err != nil || got != want {
			t.Fatalf("claim %d: %v, %v; want %v", i, got, err, want)
		}
	}
	if first, err := claim(t.Context(), consumers[1], "0b7e2c1d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"); err != nil || !first {
		t.Errorf("another event: %v, %v; want its first claim", first, err)
	}
	l, err := consumers[0].Get(t.Context(), client.UUID(event))
	if err != nil || l.ExpiresIn < int64(dedupWindow.Seconds())-5 {
		t.Errorf("the claim: %+v, %v; want it held for %v", l, err, dedupWindow)
	}
}

// TestUnknownStaysOnTheQueue: when the server cannot be reached, no event
// is taken for a duplicate; each is reported and left on the queue.
func TestUnknownStaysOnTheQueue(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv.URL)
	srv.Close()
	const event = "6f1c3b4e-8a2d-4c5e-9f01-23456789abcd"
	if first, err := claim(t.Context(), c, event); err == nil || errors.Is(err, locklock.ErrHeld) || first {
		t.Fatalf("claim with the server down: %v, %v; want an error other than ErrHeld", first, err)
	}
	var out strings.Builder
	err := consume(t.Context(), &out, c, []string{event, event}, 2)
	if err == nil || !strings.Contains(err.Error(), "2 deliveries left on the queue") {
		t.Errorf("consume: %v, want 2 deliveries left on the queue", err)
	}
	if got := strings.Count(out.String(), "cannot claim "+event+", leaving it on the queue"); got != 2 {
		t.Errorf("output %q: %d deliveries left on the queue, want 2", out.String(), got)
	}
}
