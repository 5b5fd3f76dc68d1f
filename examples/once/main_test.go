package main

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/locklock/locklock/engines/memory"
	"github.com/locklock/locklock/locklock"
	"github.com/locklock/locklock/transport"
)

// TestClaimOnce: the first claim of an event wins, every later one is a
// duplicate — also from another consumer.
func TestClaimOnce(t *testing.T) {
	engine := memory.New()
	defer engine.Close()
	srv := httptest.NewServer(http.StripPrefix("/v1/api", transport.NewHandler(locklock.NewService(engine))))
	defer srv.Close()
	base := srv.URL + "/v1/api"
	event := "6f1c3b4e-8a2d-4c5e-9f01-23456789abcd"
	for i, want := range []bool{true, false, false} {
		got, err := claim(t.Context(), srv.Client(), base, event)
		if err != nil || got != want {
			t.Fatalf("claim %d: %v, %v; want %v", i, got, err, want)
		}
	}
	if first, err := claim(t.Context(), srv.Client(), base, "0b7e2c1d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"); err != nil || !first {
		t.Errorf("another event: %v, %v; want its first claim", first, err)
	}
}
