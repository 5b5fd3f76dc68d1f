//go:build linux

package app_test

import (
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/locklock/locklock/app"
	"github.com/locklock/locklock/internal/logbuf"
	"github.com/locklock/locklock/internal/tmpfs"
	"github.com/locklock/locklock/transport/client"
)

// TestServerLowOnSpace runs the server with Badger on a 100 MiB tmpfs,
// fills it to between the two reserves and checks what a client and an
// operator see: acquires 503 unavailable with a detail that says why,
// reads and releases served, /readyz still 200 and saying what is refused,
// the metrics too; and acquires accepted again once space is freed.
func TestServerLowOnSpace(t *testing.T) {
	mnt := tmpfs.Mount(t, "100m")
	cfg := testConfig(t, app.EngineBadger)
	cfg.DataDir = filepath.Join(mnt, "data")
	var logs logbuf.Buffer
	var srv *app.Server
	a := fxtest.New(t,
		fx.Supply(cfg, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))),
		fx.NopLogger,
		app.Modules(),
		fx.Populate(&srv),
	)
	a.RequireStart()
	t.Cleanup(a.RequireStop)
	base := srv.URL()

	storage := func() map[string]any {
		t.Helper()
		resp, body := do(t, "GET", base+"/readyz", "")
		st, _ := body["storage"].(map[string]any)
		if resp.StatusCode != http.StatusOK || body["status"] != "ok" || st == nil {
			t.Fatalf("readyz: %d %v, want 200 ok with storage", resp.StatusCode, body)
		}
		return st
	}
	st := storage()
	if st["writes_refused"] != false || st["releases_refused"] != false || st["free_bytes"].(float64) < st["write_reserve_bytes"].(float64) {
		t.Fatalf("readyz storage on an empty tmpfs: %v", st)
	}
	if resp, _ := do(t, "POST", base+lockPath, `{"secret":"s"}`); resp.StatusCode != http.StatusCreated {
		t.Fatalf("acquire: %d", resp.StatusCode)
	}

	// Leave free space halfway between the two reserves.
	free, write, release := st["free_bytes"].(float64), st["write_reserve_bytes"].(float64), st["release_reserve_bytes"].(float64)
	filler := filepath.Join(mnt, "filler")
	if err := tmpfs.Fill(filler, int64(free-(write+release)/2)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond) // past the engine's 100 ms measurement

	other := client.APIPrefix + "/lock/uuid/2b1c9f0e-4a57-4b8e-9d4e-6c1f0a7d3e21"
	resp, body := do(t, "POST", base+other, "")
	if resp.StatusCode != http.StatusServiceUnavailable || body["code"] != "unavailable" || resp.Header.Get("Retry-After") == "" ||
		!strings.Contains(body["detail"].(string), "disk is nearly full") {
		t.Errorf("acquire with the disk nearly full: %d %v (Retry-After %q), want 503 unavailable saying the disk is nearly full",
			resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	if resp, body := do(t, "PATCH", base+lockPath, `{"secret":"s","expires_in":60}`); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("refresh with the disk nearly full: %d %v, want 503", resp.StatusCode, body)
	}
	if resp, _ := do(t, "GET", base+lockPath, ""); resp.StatusCode != http.StatusOK {
		t.Errorf("get with the disk nearly full: %d, want 200", resp.StatusCode)
	}
	if st := storage(); st["writes_refused"] != true || st["releases_refused"] != false {
		t.Errorf("readyz storage with the disk nearly full: %v, want writes refused, releases not", st)
	}
	scrape := metricsText(t, base)
	for _, want := range []string{"locklock_storage_writes_refused 1", "locklock_storage_releases_refused 0", "locklock_storage_free_bytes ", `locklock_storage_reserve_bytes{ops="writes"} `} {
		if !strings.Contains(scrape, want) {
			t.Errorf("metrics with the disk nearly full lack %q", want)
		}
	}
	if resp, _ := do(t, "DELETE", base+lockPath, `{"secret":"s"}`); resp.StatusCode != http.StatusOK {
		t.Errorf("release with the disk nearly full: %d, want 200", resp.StatusCode)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond)
	if resp, body := do(t, "POST", base+other, ""); resp.StatusCode != http.StatusCreated {
		t.Errorf("acquire after space was freed: %d %v, want 201", resp.StatusCode, body)
	}
	if !strings.Contains(metricsText(t, base), "locklock_storage_writes_refused 0") {
		t.Error("metrics after space was freed: writes still refused")
	}

	// One warn line for the state, none per refused request.
	log := logs.String()
	if n := strings.Count(log, `level=WARN msg="data directory low on free space`); n != 1 {
		t.Errorf("%d warnings about low space, want 1; log:\n%s", n, log)
	}
	if n := strings.Count(log, `level=INFO msg="data directory has free space again`); n != 1 {
		t.Errorf("%d lines about space coming back, want 1; log:\n%s", n, log)
	}
	if strings.Contains(log, "level=WARN msg=\"request not served\"") {
		t.Errorf("a warning per refused request; log:\n%s", log)
	}
}

func metricsText(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}
