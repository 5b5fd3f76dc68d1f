package client_test

import (
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/locklock/locklock/locklock"
	"github.com/locklock/locklock/transport/client"
)

func TestNewBaseURL(t *testing.T) {
	cases := []struct {
		in, want string // want "": refused
	}{
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080/v1/api"},
		{"http://127.0.0.1:8080/", "http://127.0.0.1:8080/v1/api"},
		{"https://locks.example.com", "https://locks.example.com/v1/api"},
		{"https://locks.example.com//", "https://locks.example.com/v1/api"},
		{"https://example.com/locklock", "https://example.com/locklock"},
		{"https://example.com/locklock/", "https://example.com/locklock"},
		{"https://example.com/a/b/v1/api", "https://example.com/a/b/v1/api"},
		{"HTTP://Example.com:80", "http://Example.com:80/v1/api"},
		{"ftp://example.com", ""},
		{"example.com:8080", ""},
		{"example.com", ""},
		{"http://", ""},
		{"http:///v1/api", ""},
		{"https://example.com/?debug=1", ""},
		{"https://example.com/locks?x", ""},
		{"https://example.com/#top", ""},
		{"://missing-scheme", ""},
		{"http://exa mple.com", ""},
		{"", ""},
	}
	for _, tc := range cases {
		c, err := client.New(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("New(%q) accepted, base %q", tc.in, c.BaseURL())
			}
			continue
		}
		if err != nil {
			t.Errorf("New(%q): %v", tc.in, err)
			continue
		}
		if got := c.BaseURL(); got != tc.want {
			t.Errorf("New(%q).BaseURL() = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRequestHeaders(t *testing.T) {
	s := newServer(t)
	l, err := s.client(t, client.WithAPIKey(s.ProKey)).Acquire(t.Context(), client.Key("deploy"))
	if err != nil {
		t.Fatal(err)
	}
	if l.Namespace != "acme" {
		t.Errorf("namespace %q: the API key was not used", l.Namespace)
	}
	if _, err := s.client(t, client.WithUserAgent("nightly-report/1.2")).Get(t.Context(), client.UUID(u1)); !errors.Is(err, locklock.ErrNotFound) {
		t.Fatal(err)
	}
	reqs := s.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests", len(reqs))
	}
	post, get := reqs[0].Header, reqs[1].Header
	if got := post.Get("Authorization"); got != "Bearer "+s.ProKey {
		t.Errorf("Authorization %q", got)
	}
	if got := post.Get("User-Agent"); got != "locklock-go-client" {
		t.Errorf("default User-Agent %q", got)
	}
	if got := post.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type of a body %q", got)
	}
	if got := post.Get("Accept"); !strings.Contains(got, "application/problem+json") || !strings.Contains(got, "application/json") {
		t.Errorf("Accept %q", got)
	}
	if got := get.Get("User-Agent"); got != "nightly-report/1.2" {
		t.Errorf("WithUserAgent: %q", got)
	}
	if _, ok := get["Authorization"]; ok {
		t.Errorf("no key, yet Authorization %q", get.Get("Authorization"))
	}
	if _, ok := get["Content-Type"]; ok {
		t.Errorf("a GET without a body has Content-Type %q", get.Get("Content-Type"))
	}
}

// A URL with a path is used as it is: the API mounted under another prefix.
func TestMountedElsewhere(t *testing.T) {
	s := newServer(t, withMount("/tools/locks"))
	c, err := client.New(s.URL + "/tools/locks/")
	if err != nil {
		t.Fatal(err)
	}
	l, err := c.Acquire(t.Context(), client.UUID(u1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Release(t.Context(), l.Target(), client.WithSecret(l.Secret)); err != nil {
		t.Fatal(err)
	}
	// The default prefix is not there.
	c, err = client.New(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Get(t.Context(), client.UUID(u1))
	if e := asError(t, err); e.Status != http.StatusNotFound || errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("wrong prefix: %v", err)
	}
}

type countingTransport struct {
	n    atomic.Int64
	next http.RoundTripper
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}

func TestWithHTTPClient(t *testing.T) {
	s := newServer(t)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	ct := &countingTransport{next: tr}
	c := s.client(t, client.WithHTTPClient(&http.Client{Transport: ct}))
	if _, err := c.Acquire(t.Context(), client.UUID(u1)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(t.Context(), client.UUID(u1)); err != nil {
		t.Fatal(err)
	}
	if n := ct.n.Load(); n != 2 {
		t.Errorf("the given client made %d requests, want 2", n)
	}
}
