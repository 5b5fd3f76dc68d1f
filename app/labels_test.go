package app_test

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/locklock/locklock/app"
)

// TestMaxLockDelay: Config.MaxLockDelay (--max-lock-delay) caps lock_delay,
// a lock-delay bars acquires with 409 lock_delayed, and /metrics counts the
// acquire outcome "delayed".
func TestMaxLockDelay(t *testing.T) {
	cfg := testConfig(t, app.EngineMemory)
	cfg.MaxLockDelay = 5 * time.Second
	s := startApp(t, cfg)
	defer s.app.RequireStop()
	base := s.srv.URL()
	resp, body := do(t, "POST", base+lockPath, `{"lock_delay":6}`)
	if detail, _ := body["detail"].(string); resp.StatusCode != http.StatusBadRequest || !strings.Contains(detail, "between 0 and 5") {
		t.Errorf("lock_delay over --max-lock-delay: %d %v", resp.StatusCode, body)
	}
	resp, body = do(t, "POST", base+lockPath, `{"expires_in":1,"lock_delay":5,"holder":"app-test"}`)
	if resp.StatusCode != http.StatusCreated || body["lock_delay"] != float64(5) || body["holder"] != "app-test" {
		t.Fatalf("acquire: %d %v", resp.StatusCode, body)
	}
	time.Sleep(time.Until(parseTime(t, body["expires_at"])) + 50*time.Millisecond)
	resp, body = do(t, "POST", base+lockPath, "")
	if resp.StatusCode != http.StatusConflict || body["code"] != "lock_delayed" || resp.Header.Get("Retry-After") == "" {
		t.Errorf("acquire during the lock-delay: %d %v", resp.StatusCode, body)
	}
	if text := metricsText(t, base); !strings.Contains(text, `locklock_acquires_total{outcome="delayed"} 1`) {
		t.Errorf("/metrics does not count the delayed acquire:\n%s", text)
	}

	cfg.MaxLockDelay = -time.Second
	if err := app.New(cfg, slog.New(slog.DiscardHandler)).Err(); err == nil || !strings.Contains(err.Error(), "--max-lock-delay") {
		t.Errorf("a negative --max-lock-delay: %v", err)
	}
}

func parseTime(t *testing.T, v any) time.Time {
	t.Helper()
	s, _ := v.(string)
	at, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("time %v: %v", v, err)
	}
	return at
}
