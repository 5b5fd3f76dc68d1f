package main

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestDashboardFlag: `locklock serve` serves the dashboard at /ui/ unless
// --ui=false or LOCKLOCK_UI=false says not to.
func TestDashboardFlag(t *testing.T) {
	c := &http.Client{Timeout: 5 * time.Second}
	root := func(srv *serverProcess) string { return strings.TrimSuffix(srv.base, "/v1/api") }

	on := startServer(t, "--engine", "memory")
	code, body := get(t, c, root(on)+"/ui/")
	if code != http.StatusOK || !strings.Contains(body, "<title>Locklock</title>") {
		t.Errorf("GET /ui/ by default: %d %.60q", code, body)
	}

	off := startServer(t, "--engine", "memory", "--ui=false")
	if code, body := get(t, c, root(off)+"/ui/"); code != http.StatusNotFound || !strings.Contains(body, `"not_found"`) {
		t.Errorf("GET /ui/ with --ui=false: %d %.60q, want 404 not_found", code, body)
	}

	t.Setenv("LOCKLOCK_UI", "false")
	offByEnv := startServer(t, "--engine", "memory")
	if code, _ := get(t, c, root(offByEnv)+"/ui/"); code != http.StatusNotFound {
		t.Errorf("GET /ui/ with LOCKLOCK_UI=false: %d, want 404", code)
	}
}
