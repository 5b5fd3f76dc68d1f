package ui_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/locklock/locklock/internal/ui"
)

func serve(t *testing.T, h http.Handler, method, path string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// checkSecurityHeaders: every answer, errors too, carries the headers of
// API.md §11, and the policy allows nothing inline and nothing elsewhere.
func checkSecurityHeaders(t *testing.T, what string, hdr http.Header) {
	t.Helper()
	csp := hdr.Get("Content-Security-Policy")
	directives := map[string]string{}
	for _, d := range strings.Split(csp, ";") {
		name, value, _ := strings.Cut(strings.TrimSpace(d), " ")
		directives[name] = value
	}
	want := map[string]string{
		"default-src":     "'self'",
		"script-src":      "'self'",
		"style-src":       "'self'",
		"img-src":         "'self'",
		"connect-src":     "'self'",
		"object-src":      "'none'",
		"base-uri":        "'none'",
		"form-action":     "'none'",
		"frame-ancestors": "'none'",
	}
	for name, value := range want {
		if directives[name] != value {
			t.Errorf("%s: CSP %s = %q, want %q (policy %q)", what, name, directives[name], value, csp)
		}
	}
	if strings.Contains(csp, "unsafe-") || strings.Contains(csp, "*") || strings.Contains(csp, "http") {
		t.Errorf("%s: CSP allows more than this origin: %q", what, csp)
	}
	for name, value := range map[string]string{
		"X-Frame-Options":        "DENY",
		"Referrer-Policy":        "no-referrer",
		"X-Content-Type-Options": "nosniff",
	} {
		if got := hdr.Get(name); got != value {
			t.Errorf("%s: %s = %q, want %q", what, name, got, value)
		}
	}
}

func TestFiles(t *testing.T) {
	h := ui.Handler()
	for _, tc := range []struct {
		path, contentType, contains string
	}{
		{"/ui/", "text/html; charset=utf-8", `<script type="module" src="app.js">`},
		{"/ui/index.html", "text/html; charset=utf-8", "<title>Locklock</title>"},
		{"/ui/app.js", "text/javascript; charset=utf-8", "textContent"},
		{"/ui/api.js", "text/javascript; charset=utf-8", "class SSEParser"},
		{"/ui/style.css", "text/css; charset=utf-8", "prefers-color-scheme: dark"},
		{"/ui/icon.svg", "image/svg+xml", "<svg"},
	} {
		rec := serve(t, h, "GET", tc.path, nil)
		if rec.Code != http.StatusOK {
			t.Errorf("GET %s: %d", tc.path, rec.Code)
			continue
		}
		checkSecurityHeaders(t, "GET "+tc.path, rec.Header())
		if got := rec.Header().Get("Content-Type"); got != tc.contentType {
			t.Errorf("GET %s: Content-Type %q, want %q", tc.path, got, tc.contentType)
		}
		if got := rec.Header().Get("Cache-Control"); got != "no-cache" {
			t.Errorf("GET %s: Cache-Control %q, want no-cache (revalidated by ETag)", tc.path, got)
		}
		if !strings.Contains(rec.Body.String(), tc.contains) {
			t.Errorf("GET %s: body lacks %q", tc.path, tc.contains)
		}
		etag := rec.Header().Get("ETag")
		if etag == "" {
			t.Errorf("GET %s: no ETag", tc.path)
			continue
		}
		if again := serve(t, h, "GET", tc.path, map[string]string{"If-None-Match": etag}); again.Code != http.StatusNotModified || again.Body.Len() != 0 {
			t.Errorf("GET %s with its ETag: %d (%d bytes), want 304 without a body", tc.path, again.Code, again.Body.Len())
		}
	}
}

// pageFiles are the dashboard's scripts and style sheet, read from the
// directory the handler embeds, so that a module added to the page is
// checked without being listed here.
func pageFiles(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir("static")
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, e := range entries {
		if ext := filepath.Ext(e.Name()); ext == ".js" || ext == ".css" {
			paths = append(paths, ui.Path+e.Name())
		}
	}
	if len(paths) < 3 {
		t.Fatalf("static/ has only %v", paths)
	}
	return paths
}

// TestPageIsSelfContained: the page loads nothing from anywhere else and
// has no inline script, inline style or markup sink for the CSP to refuse.
func TestPageIsSelfContained(t *testing.T) {
	h := ui.Handler()
	for _, path := range append([]string{"/ui/"}, pageFiles(t)...) {
		body := serve(t, h, "GET", path, nil).Body.String()
		bad := []string{"http://", "https://", "//cdn", "innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "style=", "<style", "onclick=", "onload="}
		if strings.HasSuffix(path, ".css") {
			bad = append(bad, "@import", "url(")
		}
		for _, bad := range bad {
			if strings.Contains(body, bad) {
				t.Errorf("%s contains %q", path, bad)
			}
		}
	}
	index := serve(t, h, "GET", "/ui/", nil).Body.String()
	if n := strings.Count(index, "<script"); n != 1 || !strings.Contains(index, `<script type="module" src="app.js"></script>`) {
		t.Errorf("index.html has %d script elements; want only the external app.js", n)
	}
}

// TestModulesResolve: every module the page imports, from app.js down,
// is served, as JavaScript (a module served as anything else does not
// run), and is imported by a relative path, which the CSP allows.
func TestModulesResolve(t *testing.T) {
	h := ui.Handler()
	importRE := regexp.MustCompile(`(?m)^import\b[^;]*?\bfrom\s+'([^']+)';`)
	seen := map[string]bool{}
	queue := []string{"app.js"}
	for len(queue) > 0 {
		name := queue[0]
		queue = queue[1:]
		if seen[name] {
			continue
		}
		seen[name] = true
		rec := serve(t, h, "GET", ui.Path+name, nil)
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "text/javascript; charset=utf-8" {
			t.Errorf("GET %s%s: %d %q, want 200 text/javascript", ui.Path, name, rec.Code, rec.Header().Get("Content-Type"))
			continue
		}
		for _, m := range importRE.FindAllStringSubmatch(rec.Body.String(), -1) {
			spec, ok := strings.CutPrefix(m[1], "./")
			if !ok || strings.Contains(spec, "/") {
				t.Errorf("%s imports %q, want ./name.js beside it", name, m[1])
				continue
			}
			queue = append(queue, spec)
		}
	}
	// Every script in static/ is reached from app.js: none is left over.
	for _, path := range pageFiles(t) {
		if name := strings.TrimPrefix(path, ui.Path); strings.HasSuffix(name, ".js") && !seen[name] {
			t.Errorf("%s is not imported by app.js or its imports", name)
		}
	}
	if len(seen) < 3 {
		t.Errorf("app.js reaches only %v", seen)
	}
}

func TestHead(t *testing.T) {
	rec := serve(t, ui.Handler(), "HEAD", "/ui/", nil)
	if rec.Code != http.StatusOK || rec.Body.Len() != 0 || rec.Header().Get("Content-Length") == "" {
		t.Errorf("HEAD /ui/: %d, %d bytes, Content-Length %q", rec.Code, rec.Body.Len(), rec.Header().Get("Content-Length"))
	}
	checkSecurityHeaders(t, "HEAD /ui/", rec.Header())
}

func TestRedirect(t *testing.T) {
	rec := serve(t, ui.Handler(), "GET", "/ui", nil)
	if rec.Code != http.StatusMovedPermanently || rec.Header().Get("Location") != "/ui/" {
		t.Errorf("GET /ui: %d Location %q, want 301 to /ui/", rec.Code, rec.Header().Get("Location"))
	}
	checkSecurityHeaders(t, "GET /ui", rec.Header())
}

func problemCode(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type %q, want application/problem+json", ct)
	}
	var p struct {
		Code   string `json:"code"`
		Status int    `json:"status"`
		Title  string `json:"title"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatalf("problem body %q: %v", rec.Body.String(), err)
	}
	if p.Status != rec.Code || p.Title == "" {
		t.Errorf("problem %+v for status %d", p, rec.Code)
	}
	return p.Code
}

func TestUnknownFilesAre404(t *testing.T) {
	h := ui.Handler()
	for _, path := range []string{
		"/ui/nope.js", "/ui/static/index.html", "/ui/../ui/app.js", "/ui/app.js/", "/ui/APP.JS",
		"/ui/index.html/x", "/ui//app.js", "/ui/" + strings.Repeat("x", 500), "/uix", "/v1/api/ui/",
	} {
		rec := serve(t, h, "GET", path, nil)
		if rec.Code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, rec.Code)
			continue
		}
		checkSecurityHeaders(t, "GET "+path, rec.Header())
		if code := problemCode(t, rec); code != "not_found" {
			t.Errorf("GET %s: code %q", path, code)
		}
		if len(rec.Body.String()) > 400 {
			t.Errorf("GET %s: the problem quotes the path at length: %d bytes", path, rec.Body.Len())
		}
	}
}

func TestOnlyGetAndHead(t *testing.T) {
	h := ui.Handler()
	for _, method := range []string{"POST", "PUT", "PATCH", "DELETE", "OPTIONS"} {
		rec := serve(t, h, method, "/ui/", nil)
		if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("%s /ui/: %d Allow %q, want 405 with Allow: GET, HEAD", method, rec.Code, rec.Header().Get("Allow"))
			continue
		}
		checkSecurityHeaders(t, method+" /ui/", rec.Header())
		if code := problemCode(t, rec); code != "method_not_allowed" {
			t.Errorf("%s /ui/: code %q", method, code)
		}
	}
}

// TestRealServer: through a real listener, as a browser sees it.
func TestRealServer(t *testing.T) {
	srv := httptest.NewServer(ui.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/ui")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/ui/" || !strings.Contains(string(body), "Locklock") {
		t.Errorf("GET /ui (following the redirect): %d at %s", resp.StatusCode, resp.Request.URL)
	}
	checkSecurityHeaders(t, "GET /ui/", resp.Header)
}
