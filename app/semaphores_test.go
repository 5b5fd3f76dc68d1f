package app_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/locklock/locklock/app"
	"github.com/locklock/locklock/engines/badger"
	"github.com/locklock/locklock/engines/etcd"
	"github.com/locklock/locklock/internal/etcdtest"
	"github.com/locklock/locklock/locklock"
	"github.com/locklock/locklock/transport/client"
)

// semaphoreEngines are the engines whose type stores semaphores: the
// standalone server must serve them through its metrics wrapper.
func semaphoreEngines() []string {
	engines := []string{app.EngineMemory}
	if _, ok := any((*badger.Engine)(nil)).(locklock.SemaphoreEngine); ok {
		engines = append(engines, app.EngineBadger)
	}
	if _, ok := any((*etcd.Engine)(nil)).(locklock.SemaphoreEngine); ok {
		engines = append(engines, app.EngineEtcd)
	}
	return engines
}

// TestAppServesSemaphores: a real server (the app's engine, wrapped for
// metrics) takes, shows, refuses and releases slots, and /metrics counts
// them.
func TestAppServesSemaphores(t *testing.T) {
	for _, engine := range semaphoreEngines() {
		t.Run(engine, func(t *testing.T) {
			cfg := testConfig(t, engine)
			if engine == app.EngineEtcd {
				cfg.EtcdEndpoints = etcdtest.Endpoints(t)
				cfg.Etcd.Prefix = fmt.Sprintf("/locklock-app-sem-test/%d/", time.Now().UnixNano())
			}
			s := startApp(t, cfg)
			defer s.app.RequireStop()
			sem := s.srv.URL() + client.APIPrefix + "/semaphore/uuid/6ba7b810-9dad-11d1-80b4-00c04fd430c8"

			resp, body := do(t, "POST", sem, `{"limit":2,"weight":2,"secret":"s","expires_in":60,"holder":"app-test"}`)
			slot, _ := body["slot"].(string)
			if resp.StatusCode != http.StatusCreated || body["limit"] != float64(2) || body["weight"] != float64(2) || body["holder"] != "app-test" || len(slot) != locklock.SlotIDLen {
				t.Fatalf("acquire: %d %v", resp.StatusCode, body)
			}
			if resp, body := do(t, "POST", sem, `{"limit":2,"secret":"s"}`); resp.StatusCode != http.StatusOK || body["slot"] != slot {
				t.Errorf("retry: %d %v", resp.StatusCode, body)
			}
			resp, body = do(t, "POST", sem, `{"limit":2}`)
			if resp.StatusCode != http.StatusConflict || body["code"] != "semaphore_full" || body["in_use"] != float64(2) || resp.Header.Get("Retry-After") == "" {
				t.Errorf("full: %d %v", resp.StatusCode, body)
			}
			if resp, body := do(t, "POST", sem, `{"limit":3}`); resp.StatusCode != http.StatusConflict || body["code"] != "limit_mismatch" {
				t.Errorf("another limit: %d %v", resp.StatusCode, body)
			}
			if resp, body := do(t, "GET", sem, ""); resp.StatusCode != http.StatusOK || body["in_use"] != float64(2) {
				t.Errorf("inspect: %d %v", resp.StatusCode, body)
			}
			if resp, body := do(t, "PATCH", sem+"/"+slot, `{"secret":"s","expires_in":30}`); resp.StatusCode != http.StatusOK || body["expires_in"] != float64(30) {
				t.Errorf("refresh: %d %v", resp.StatusCode, body)
			}
			if resp, body := do(t, "DELETE", sem+"/"+slot, `{"secret":"s"}`); resp.StatusCode != http.StatusOK || body["released"] != true {
				t.Errorf("release: %d %v", resp.StatusCode, body)
			}
			if resp, body := do(t, "GET", sem, ""); resp.StatusCode != http.StatusNotFound || body["code"] != "semaphore_not_found" {
				t.Errorf("after the release: %d %v", resp.StatusCode, body)
			}

			text := metricsText(t, s.srv.URL())
			for _, want := range []string{
				`locklock_semaphore_acquires_total{outcome="granted"} 1`,
				`locklock_semaphore_acquires_total{outcome="reacquired"} 1`,
				`locklock_semaphore_acquires_total{outcome="full"} 1`,
				`locklock_semaphore_acquires_total{outcome="limit_mismatch"} 1`,
				`locklock_semaphore_acquires_total{outcome="waited"} 0`,
				`locklock_semaphore_releases_total 1`,
				`locklock_engine_operation_duration_seconds_count{op="try_acquire_slot",result="ok"} 2`,
				`locklock_engine_operation_duration_seconds_count{op="release_slot",result="ok"} 1`,
				`locklock_http_requests_total{code="201",method="POST",route="/v1/api/semaphore/uuid/{uuid}"} 1`,
				`locklock_http_requests_total{code="200",method="DELETE",route="/v1/api/semaphore/uuid/{uuid}/{slot}"} 1`,
			} {
				if !strings.Contains(text, want) {
					t.Errorf("/metrics lacks %s", want)
				}
			}
			for _, leak := range []string{"6ba7b810", slot} {
				if strings.Contains(text, leak) {
					t.Errorf("/metrics shows %q", leak)
				}
			}
		})
	}
}
