package app_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/locklock/locklock/app"
	"github.com/locklock/locklock/transport"
)

// noRedirect reads a redirect as it is, without following it.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func getRaw(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := noRedirect.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func checkDashboardHeaders(t *testing.T, what string, h http.Header) {
	t.Helper()
	csp := h.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'self'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'", "base-uri 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("%s: Content-Security-Policy %q lacks %q", what, csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-") {
		t.Errorf("%s: Content-Security-Policy %q allows unsafe sources", what, csp)
	}
	if h.Get("X-Frame-Options") != "DENY" || h.Get("Referrer-Policy") != "no-referrer" || h.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("%s: X-Frame-Options %q, Referrer-Policy %q, X-Content-Type-Options %q",
			what, h.Get("X-Frame-Options"), h.Get("Referrer-Policy"), h.Get("X-Content-Type-Options"))
	}
}

// TestDashboard: the standalone server serves the dashboard at /ui/ on the
// API listener, with its headers, counted under one route label.
func TestDashboard(t *testing.T) {
	s := startApp(t, testConfig(t, app.EngineMemory))
	defer s.app.RequireStop()
	base := s.srv.URL()

	resp, body := getRaw(t, base+"/ui/")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `<script type="module" src="app.js">`) {
		t.Fatalf("GET /ui/: %d %.80q", resp.StatusCode, body)
	}
	checkDashboardHeaders(t, "GET /ui/", resp.Header)
	for _, file := range []string{"app.js", "api.js", "style.css"} {
		resp, _ := getRaw(t, base+"/ui/"+file)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET /ui/%s: %d", file, resp.StatusCode)
		}
		checkDashboardHeaders(t, "GET /ui/"+file, resp.Header)
	}
	resp, _ = getRaw(t, base+"/ui")
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/ui/" {
		t.Errorf("GET /ui: %d Location %q, want a redirect to /ui/", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, _ = getRaw(t, base+"/ui/missing.js")
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /ui/missing.js: %d", resp.StatusCode)
	}
	checkDashboardHeaders(t, "GET /ui/missing.js", resp.Header)
	// The API's own prefix has no dashboard.
	if resp, body := do(t, "GET", base+"/v1/api/ui/", ""); resp.StatusCode != http.StatusNotFound || body["code"] != "not_found" {
		t.Errorf("GET /v1/api/ui/: %d %v", resp.StatusCode, body)
	}
	if text := metricsText(t, base); !strings.Contains(text, `locklock_http_requests_total{code="200",method="GET",route="/ui/"}`) {
		t.Errorf("/metrics does not count the dashboard under route /ui/")
	}
}

// TestDashboardBesideOpsAddr: with a separate ops listener the dashboard
// stays on the API's, where the API it talks to is.
func TestDashboardBesideOpsAddr(t *testing.T) {
	cfg := testConfig(t, app.EngineMemory)
	cfg.OpsAddr = "127.0.0.1:0"
	s := startApp(t, cfg)
	defer s.app.RequireStop()
	if resp, _ := getRaw(t, s.srv.URL()+"/ui/"); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /ui/ on the API listener: %d", resp.StatusCode)
	}
	if resp, _ := getRaw(t, s.srv.OpsURL()+"/ui/"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /ui/ on the ops listener: %d, want 404", resp.StatusCode)
	}
}

// TestDashboardOff: Config.UI false (--ui=false) is a 404 problem, like any
// path the server does not serve.
func TestDashboardOff(t *testing.T) {
	cfg := testConfig(t, app.EngineMemory)
	cfg.UI = false
	s := startApp(t, cfg)
	defer s.app.RequireStop()
	for _, path := range []string{"/ui/", "/ui", "/ui/app.js"} {
		resp, body := do(t, "GET", s.srv.URL()+path, "")
		if resp.StatusCode != http.StatusNotFound || body["code"] != "not_found" {
			t.Errorf("GET %s with the dashboard off: %d %v, want 404 not_found", path, resp.StatusCode, body)
		}
		if resp.Header.Get("Content-Security-Policy") != "" {
			t.Errorf("GET %s with the dashboard off: answered by the dashboard", path)
		}
	}
	if !app.DefaultConfig().UI {
		t.Error("the dashboard is off by default")
	}
}

// TestMountedHandlerHasNoDashboard: an app that mounts the API handler gets
// the API alone; the dashboard is the standalone server's.
func TestMountedHandlerHasNoDashboard(t *testing.T) {
	s := startApp(t, testConfig(t, app.EngineMemory))
	defer s.app.RequireStop()
	mux := http.NewServeMux()
	mux.Handle("/", transport.NewHandler(s.svc, transport.WithPathPrefix("/v1/api"), transport.WithLogger(slog.New(slog.DiscardHandler))))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	if resp, _ := do(t, "GET", srv.URL+lockPath, ""); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("the mounted API does not answer: GET a free lock: %d, want 404 lock_not_found", resp.StatusCode)
	}
	for _, path := range []string{"/ui/", "/ui", "/ui/app.js", "/v1/api/ui/"} {
		resp, body := do(t, "GET", srv.URL+path, "")
		if resp.StatusCode != http.StatusNotFound || body["code"] != "not_found" || resp.Header.Get("Content-Security-Policy") != "" {
			t.Errorf("mounted handler, GET %s: %d %v, want the API's 404 not_found", path, resp.StatusCode, body)
		}
	}
}
