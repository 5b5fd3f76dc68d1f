package transport

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
)

// openAPIDoc is the OpenAPI 3.1 document of the API, written by hand;
// openapi_test.go keeps it true to the routes and the responses.
//
//go:embed openapi.json
var openAPIDoc []byte

// openAPIETag is a strong validator of openAPIDoc.
var openAPIETag = func() string {
	sum := sha256.Sum256(openAPIDoc)
	return `"` + hex.EncodeToString(sum[:16]) + `"`
}()

// OpenAPI returns the OpenAPI 3.1 document of the API that NewHandler
// serves (a copy; the handler serves it at /openapi.json).
func OpenAPI() []byte { return bytes.Clone(openAPIDoc) }

// serveOpenAPI serves GET and HEAD /openapi.json. The document is public and
// static, so it asks for no API key and is not throttled: a client must be
// able to read how to authenticate before it can. It may be cached, but
// revalidated (no-cache), since an upgraded server serves a new one.
func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("ETag", openAPIETag)
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	if etagMatches(r.Header.Values("If-None-Match"), openAPIETag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	// application/json rather than application/openapi+json: browsers and
	// tools display and accept it without configuration.
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(openAPIDoc)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(openAPIDoc)
	}
}

// etagMatches is If-None-Match's weak comparison (RFC 9110 §13.1.2) of the
// header's entity tags, or "*", against etag.
func etagMatches(values []string, etag string) bool {
	for _, v := range values {
		for _, tag := range strings.Split(v, ",") {
			tag = strings.TrimSpace(tag)
			if tag == "*" || strings.TrimPrefix(tag, "W/") == etag {
				return true
			}
		}
	}
	return false
}
