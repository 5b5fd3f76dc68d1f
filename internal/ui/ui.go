// Package ui serves Locklock's dashboard (API.md §11): one page of
// hand-written HTML, CSS and JavaScript, embedded in the binary, that reads
// the API with the visitor's key. The standalone server mounts it at Path
// beside the API; a handler mounted inside another app does not include it.
package ui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/locklock/locklock/internal/abbrev"
)

// Path is where the standalone server serves the dashboard; a request for
// Path without its trailing slash is redirected to it.
const Path = "/ui/"

// The page's files. go:embed needs a package-level variable; it is read
// only, once per Handler.
//
//go:embed static
var static embed.FS

// ContentSecurityPolicy lets the page load its own files and talk to its own
// origin, nothing else: no inline script or style (a holder that slipped
// through as markup could run nothing), no framing (clickjacking of the
// "Force release" button), no <base> or form posts elsewhere, and DOM sinks
// such as innerHTML refused outright (Trusted Types with no policy).
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; " +
	"frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'"

// securityHeaders go on every answer of the handler, errors included.
var securityHeaders = [][2]string{
	{"Content-Security-Policy", ContentSecurityPolicy},
	{"X-Frame-Options", "DENY"},
	{"Referrer-Policy", "no-referrer"},
	{"X-Content-Type-Options", "nosniff"},
	{"Cross-Origin-Opener-Policy", "same-origin"},
	{"Cross-Origin-Resource-Policy", "same-origin"},
	{"Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()"},
}

// asset is one embedded file, ready to serve.
type asset struct {
	body        []byte
	contentType string
	etag        string
}

// contentTypes are set explicitly rather than from the system's MIME table,
// which varies by machine: a module script served as anything but
// JavaScript does not run.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
}

type handler struct {
	assets map[string]asset // by name under Path: "index.html", "app.js", …
	start  time.Time        // Last-Modified of every file: the binary's
}

// Handler serves the dashboard's files under Path: GET and HEAD only, each
// with a strict Content-Security-Policy and the other headers of API.md
// §11. Files are revalidated by ETag on every load (Cache-Control:
// no-cache), so a new binary's page is seen at once, and an unchanged one
// costs a 304.
func Handler() http.Handler {
	h := &handler{assets: map[string]asset{}, start: time.Now()}
	err := fs.WalkDir(static, "static", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := static.ReadFile(name)
		if err != nil {
			return err
		}
		ct, ok := contentTypes[path.Ext(name)]
		if !ok {
			return fmt.Errorf("ui: no content type for %s", name)
		}
		sum := sha256.Sum256(body)
		h.assets[strings.TrimPrefix(name, "static/")] = asset{
			body:        body,
			contentType: ct,
			etag:        `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`,
		}
		return nil
	})
	if err != nil {
		// The files are compiled in: only a broken build gets here, and
		// every test of the package would see it.
		panic(err)
	}
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	for _, kv := range securityHeaders {
		hdr.Set(kv[0], kv[1])
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		problem(w, r, http.StatusMethodNotAllowed, "method_not_allowed", "Method not allowed",
			"the dashboard answers GET and HEAD only")
		return
	}
	if r.URL.Path == strings.TrimSuffix(Path, "/") {
		hdr.Set("Location", Path)
		hdr.Set("Cache-Control", "no-cache")
		w.WriteHeader(http.StatusMovedPermanently)
		return
	}
	name, ok := strings.CutPrefix(r.URL.Path, Path)
	if name == "" {
		name = "index.html"
	}
	a, found := h.assets[name]
	if !ok || !found {
		problem(w, r, http.StatusNotFound, "not_found", "Not found", fmt.Sprintf("the dashboard has no file %q", abbrev.String(name)))
		return
	}
	hdr.Set("Content-Type", a.contentType)
	hdr.Set("ETag", a.etag)
	hdr.Set("Cache-Control", "no-cache")
	// ServeContent answers If-None-Match with 304, HEAD without a body,
	// and Range requests.
	http.ServeContent(w, r, name, h.start, bytes.NewReader(a.body))
}

// problem answers in API.md §4's format, as the rest of the server does.
func problem(w http.ResponseWriter, r *http.Request, status int, code, title, detail string) {
	body, _ := json.Marshal(map[string]any{
		"type": "urn:locklock:error:" + code, "title": title, "status": status, "detail": detail, "code": code,
	})
	hdr := w.Header()
	hdr.Set("Content-Type", "application/problem+json")
	hdr.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(append(body, '\n'))
	}
}
