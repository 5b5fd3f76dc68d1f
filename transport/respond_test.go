package transport

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
)

// TestContentLength: over a real connection every answer carries an exact
// Content-Length and none is chunked — short ones counted by net/http,
// long ones (a page of 1000 locks) and HEAD answers by us.
func TestContentLength(t *testing.T) {
	e := newEnv(t)
	srv := httptest.NewServer(e.h)
	t.Cleanup(srv.Close)
	for i := range 1000 {
		if rec := e.do(post(keyPath(fmt.Sprintf("k%04d", i)), "", "Authorization", proKey)); rec.Code != http.StatusCreated {
			t.Fatalf("acquire: %d %s", rec.Code, rec.Body)
		}
	}
	do := func(method, path string) (*http.Response, []byte) {
		t.Helper()
		r, _ := http.NewRequest(method, srv.URL+path, nil)
		r.Header.Set("Authorization", proKey)
		resp, err := srv.Client().Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.TransferEncoding) > 0 {
			t.Errorf("%s %s: Transfer-Encoding %v", method, path, resp.TransferEncoding)
		}
		return resp, body
	}
	for _, c := range []struct{ method, path string }{
		{http.MethodPost, uuidPath(u1)},
		{http.MethodGet, uuidPath(u1)},
		{http.MethodDelete, uuidPath(u1)},
		{http.MethodGet, uuidPath("nope")},             // a problem
		{http.MethodGet, "/locks?kind=key&limit=1000"}, // ~190 KB
		{http.MethodGet, "/openapi.json"},
	} {
		resp, body := do(c.method, c.path)
		if resp.ContentLength != int64(len(body)) || len(body) == 0 {
			t.Errorf("%s %s: Content-Length %d, body %d bytes", c.method, c.path, resp.ContentLength, len(body))
		}
		if c.method != http.MethodGet {
			continue
		}
		head, hbody := do(http.MethodHead, c.path)
		if got := head.Header.Get("Content-Length"); got != strconv.Itoa(len(body)) || len(hbody) != 0 {
			t.Errorf("HEAD %s: Content-Length %q, body %d bytes; GET had %d bytes", c.path, got, len(hbody), len(body))
		}
	}
}
