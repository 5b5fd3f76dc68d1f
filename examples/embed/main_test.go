package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/locklock/locklock/engines/memory"
	"github.com/locklock/locklock/locklock"
)

func TestAcquireAndReleaseThroughTheApp(t *testing.T) {
	engine := memory.New()
	t.Cleanup(func() { engine.Close() })
	srv := httptest.NewServer(newMux(locklock.NewService(engine), slog.New(slog.DiscardHandler)))
	t.Cleanup(srv.Close)
	const lockURL = "/locks/lock/uuid/180da65c-cf80-4997-8574-0c0801817d6f"

	do := func(method, path, body string, wantStatus int) map[string]any {
		t.Helper()
		r, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("Locklock-Secret", "s3cret")
		resp, err := srv.Client().Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != wantStatus {
			t.Fatalf("%s %s: %s %s, want %d", method, path, resp.Status, data, wantStatus)
		}
		var out map[string]any
		_ = json.Unmarshal(data, &out)
		return out
	}

	if got := do(http.MethodGet, "/", "", http.StatusOK); got != nil {
		t.Errorf("hello page is JSON: %v", got)
	}
	acquired := do(http.MethodPost, lockURL, `{"expires_in":60}`, http.StatusCreated)
	if acquired["protected"] != true || acquired["expires_in"] != float64(60) {
		t.Errorf("acquired %v", acquired)
	}
	do(http.MethodPost, lockURL, "", http.StatusOK) // same secret: a retry
	released := do(http.MethodDelete, lockURL, "", http.StatusOK)
	if released["released"] != true {
		t.Errorf("released %v", released)
	}
	do(http.MethodDelete, lockURL, "", http.StatusNotFound)
}
