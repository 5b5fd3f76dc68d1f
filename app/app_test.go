package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/goleak"

	"github.com/locklock/locklock/app"
	"github.com/locklock/locklock/internal/etcdtest"
	"github.com/locklock/locklock/locklock"
	"github.com/locklock/locklock/transport/client"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const lockPath = client.APIPrefix + "/lock/uuid/180da65c-cf80-4997-8574-0c0801817d6f"

func testConfig(t *testing.T, engine string) app.Config {
	cfg := app.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.Engine = engine
	cfg.DataDir = t.TempDir()
	return cfg
}

type started struct {
	app *fxtest.App
	srv *app.Server
	svc *locklock.Service
}

func startApp(t *testing.T, cfg app.Config) started {
	t.Helper()
	var s started
	s.app = fxtest.New(t,
		fx.Supply(cfg, slog.New(slog.DiscardHandler)),
		fx.NopLogger,
		app.Modules(),
		fx.Populate(&s.srv, &s.svc),
	)
	s.app.RequireStart()
	return s
}

func do(t *testing.T, method, url, body string) (*http.Response, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp, out
}

func TestAppServesTheAPI(t *testing.T) {
	for _, engine := range []string{app.EngineMemory, app.EngineBadger, app.EngineEtcd} {
		t.Run(engine, func(t *testing.T) {
			cfg := testConfig(t, engine)
			if engine == app.EngineEtcd {
				cfg.EtcdEndpoints = etcdtest.Endpoints(t)
				cfg.Etcd.Prefix = fmt.Sprintf("/locklock-app-test/%d/", time.Now().UnixNano())
			}
			s := startApp(t, cfg)
			base := s.srv.URL()
			if resp, _ := do(t, "GET", base+"/healthz", ""); resp.StatusCode != 200 {
				t.Errorf("healthz: %d", resp.StatusCode)
			}
			if resp, _ := do(t, "GET", base+"/readyz", ""); resp.StatusCode != 200 {
				t.Errorf("readyz: %d", resp.StatusCode)
			}
			resp, body := do(t, "POST", base+lockPath, `{"secret":"s","expires_in":60}`)
			if resp.StatusCode != http.StatusCreated || body["expires_in"] != float64(60) {
				t.Fatalf("acquire: %d %v", resp.StatusCode, body)
			}
			if resp, _ := do(t, "POST", base+lockPath, ""); resp.StatusCode != http.StatusConflict {
				t.Errorf("second acquire: %d, want 409", resp.StatusCode)
			}
			if resp, _ := do(t, "DELETE", base+lockPath, `{"secret":"s"}`); resp.StatusCode != http.StatusOK {
				t.Errorf("release: %d", resp.StatusCode)
			}
			if resp, body := do(t, "GET", base+"/lock/uuid/x", ""); resp.StatusCode != 404 || body["code"] != "not_found" {
				t.Errorf("API route outside the prefix: %d %v, want a not_found problem", resp.StatusCode, body)
			}
			s.app.RequireStop()
		})
	}
}

func TestBusyPortFailsStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := testConfig(t, app.EngineMemory)
	cfg.Addr = ln.Addr().String()
	a := fx.New(fx.Supply(cfg, slog.New(slog.DiscardHandler)), fx.NopLogger, app.Modules(), fx.Invoke(func(*app.Server) {}))
	err = a.Start(t.Context())
	var setting *app.SettingError
	if !errors.As(err, &setting) || setting.Flag != "--addr" || setting.Value != cfg.Addr || !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("start on a busy port: %v, want an --addr SettingError for EADDRINUSE", err)
	}
	_ = a.Stop(t.Context())
}

func TestInvalidConfigFailsStart(t *testing.T) {
	cfg := testConfig(t, "sqlite")
	a := app.New(cfg, slog.New(slog.DiscardHandler))
	if err := a.Err(); err == nil || !strings.Contains(err.Error(), "unknown --engine") {
		t.Fatalf("app.New with a bad engine: %v", err)
	}
}

// TestStopAnswersWaiters: stopping the app (what SIGTERM does) answers a
// pending long-poll acquire with 503 instead of holding the drain up.
func TestStopAnswersWaiters(t *testing.T) {
	s := startApp(t, testConfig(t, app.EngineMemory))
	if resp, _ := do(t, "POST", s.srv.URL()+lockPath, ""); resp.StatusCode != 201 {
		t.Fatalf("acquire: %d", resp.StatusCode)
	}
	type result struct {
		resp *http.Response
		body map[string]any
	}
	got := make(chan result, 1)
	go func() {
		resp, body := do(t, "POST", s.srv.URL()+lockPath, `{"wait":60}`)
		got <- result{resp, body}
	}()
	for s.svc.Waiters() == 0 {
		time.Sleep(time.Millisecond)
	}
	stopped := make(chan error, 1)
	start := time.Now()
	go func() { stopped <- s.app.Stop(context.Background()) }()
	select {
	case r := <-got:
		if r.resp.StatusCode != http.StatusServiceUnavailable || r.body["code"] != "unavailable" || r.resp.Header.Get("Retry-After") == "" {
			t.Errorf("waiter during stop: %d %v, want 503 unavailable with Retry-After", r.resp.StatusCode, r.body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiter was not answered during stop")
	}
	if err := <-stopped; err != nil {
		t.Fatalf("stop: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stop took %v", d)
	}
}
