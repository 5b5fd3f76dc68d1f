package transport

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/locklock/locklock/engines/memory"
	"github.com/locklock/locklock/internal/keyauth"
	"github.com/locklock/locklock/internal/keys"
	"github.com/locklock/locklock/locklock"
	"github.com/locklock/locklock/transport/ratelimit"
)

// The fuzz targets. `go test` runs their seed corpora (the f.Add calls);
// `make fuzz` explores beyond them:
//
//	go test ./transport -run '^$' -fuzz '^FuzzHandler$' -fuzztime 1m
//	go test ./transport -run '^$' -fuzz '^FuzzDecodeBody$' -fuzztime 1m

// The world every FuzzHandler input meets: real API-key authentication,
// throttling and the memory engine, with a few locks already taken.
const (
	fzProKey    = "llk_fuzz-pro-key"   // namespace acme, plan pro (custom names, no limit)
	fzOtherKey  = "llk_fuzz-other-key" // namespace globex, plan pro
	fzDevKey    = "llk_fuzz-dev-key"   // namespace devco, plan developer (rate-limited)
	fzHost      = "locklock.test"
	fzPeer      = "192.0.2.1:1234"    // a trusted proxy
	fzThrottled = "203.0.113.9"       // an anonymous client whose bucket is empty
	fzBase      = "locks.example.com" // custom subdomains: acme.locks.example.com
	fzU1        = "180da65c-cf80-4997-8574-0c0801817d6f"
	fzU2        = "28e5a3c1-0b7e-4c43-9d4e-7a7b9e2f6a11"
	fzU3        = "3f2504e0-4f89-41d3-9a0c-0305e82c3301" // expired but still stored
	fzU4        = "6ba7b810-9dad-11d1-80b4-00c04fd430c8" // never taken
)

// fzStart is when every FuzzHandler input arrives.
var fzStart = time.Date(2026, 11, 26, 15, 4, 5, 123e6, time.UTC)

// fzNamespaces are all namespaces a request can reach.
var fzNamespaces = []string{locklock.DefaultNamespace, "acme", "globex", "devco"}

// fzAnonLimit is the anonymous plan's rate, also used to empty fzThrottled's
// bucket before the request.
var fzAnonLimit = ratelimit.Limit{Rate: 1, Burst: 2}

type fuzzEnv struct {
	h   http.Handler
	svc *locklock.Service
}

func newFuzzEnv(t testing.TB) *fuzzEnv {
	t.Helper()
	eng := memory.New()
	t.Cleanup(func() { _ = eng.Close() })
	clock := locklock.NewManualClock(fzStart)
	// WithMaxWait(0): any wait above 0 is a 400, so no input can make the
	// handler block (the manual clock would never end a wait).
	svc := locklock.NewService(eng, locklock.WithClock(clock), locklock.WithMaxWait(0))
	store := keys.NewStore(keys.NewIndex(keys.File{
		Anonymous: &keys.AnonymousPolicy{Plan: keys.PlanDeveloper},
		Plans: map[string]keys.Plan{
			keys.PlanDeveloper: {CustomNames: false, Rate: fzAnonLimit.Rate, Burst: fzAnonLimit.Burst},
			keys.PlanPro:       {CustomNames: true},
		},
		Keys: []keys.Key{
			{ID: "acme", Namespace: "acme", Plan: keys.PlanPro, SHA256: keys.HashKey(fzProKey)},
			{ID: "globex", Namespace: "globex", Plan: keys.PlanPro, SHA256: keys.HashKey(fzOtherKey)},
			{ID: "dev", Namespace: "devco", Plan: keys.PlanDeveloper, SHA256: keys.HashKey(fzDevKey)},
		},
	}))
	now := func() time.Time { return fzStart }
	limiter := ratelimit.New(ratelimit.WithClock(now))
	for range fzAnonLimit.Burst {
		limiter.Allow("addr:"+fzThrottled, fzAnonLimit)
	}
	h := NewHandler(svc,
		WithAuthenticator(keyAuthenticator(keyauth.Access{
			Keys:           store,
			BaseDomain:     fzBase,
			TrustedProxies: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")},
		})),
		WithRateLimiter(limiter),
	)

	ctx := context.Background()
	for _, l := range []struct {
		ns     string
		kind   locklock.Kind
		name   string
		secret string
		ttl    time.Duration
	}{
		{"public", locklock.KindUUID, fzU1, "s1", 0},
		{"public", locklock.KindUUID, fzU2, "", time.Hour},
		{"public", locklock.KindUUID, fzU3, "s3", time.Second},
		{"acme", locklock.KindKey, "deploy", "s1", 10 * time.Minute},
		{"acme", locklock.KindKey, "open", "", 0},
		{"acme", locklock.KindKey, "expired", "s1", time.Second},
		{"acme", locklock.KindUUID, fzU1, "s2", 0},
		{"devco", locklock.KindUUID, fzU2, "d", 0},
	} {
		id, err := locklock.NewID(l.ns, l.kind, l.name)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := svc.Acquire(ctx, locklock.AcquireRequest{ID: id, Secret: l.secret, TTL: l.ttl}); err != nil {
			t.Fatalf("seeding %v: %v", id, err)
		}
	}
	seedFuzzSlots(t, eng)
	clock.Advance(2 * time.Second) // the one-second locks and slots are now expired
	return &fuzzEnv{h: h, svc: svc}
}

// state is every live lock a request could reach, as stored.
func (e *fuzzEnv) state(t testing.TB) map[locklock.ID]locklock.Lock {
	t.Helper()
	all := map[locklock.ID]locklock.Lock{}
	for _, ns := range fzNamespaces {
		for _, kind := range []locklock.Kind{locklock.KindUUID, locklock.KindKey} {
			page, err := e.svc.List(context.Background(), locklock.ListRequest{Namespace: ns, Kind: kind, Limit: locklock.MaxListLimit})
			if err != nil || page.Next != "" {
				t.Fatalf("listing %s/%s: %v (next %q)", ns, kind, err, page.Next)
			}
			for _, l := range page.Locks {
				l.ObservedAt = time.Time{}
				all[l.ID] = l
			}
		}
	}
	return all
}

// wireRequest turns the fuzzer's fields into the bytes a client would send
// and parses them the way net/http's server does, so that the handler sees
// exactly what it would see in production. ok is false for inputs that a
// real server answers itself (400, 505) without calling the handler.
//
// The four named header fields are one header each, absent when empty;
// they must not contain line breaks (extra is where the fuzzer writes
// whole header lines, separated by \n: duplicates, empty values, anything).
func wireRequest(method, target, host, authorization, contentType, secret, extra string, body []byte) (*http.Request, bool) {
	for _, v := range []string{host, authorization, contentType, secret} {
		if strings.ContainsAny(v, "\r\n") {
			return nil, false
		}
	}
	if host == "" {
		host = fzHost
	}
	var w bytes.Buffer
	w.WriteString(method + " " + target + " HTTP/1.1\r\n")
	w.WriteString("Host: " + host + "\r\n")
	for _, h := range [][2]string{{"Authorization", authorization}, {"Content-Type", contentType}, {secretHeader, secret}} {
		if h[1] != "" {
			w.WriteString(h[0] + ": " + h[1] + "\r\n")
		}
	}
	for line := range strings.SplitSeq(extra, "\n") {
		if line = strings.TrimSuffix(line, "\r"); line != "" {
			w.WriteString(line + "\r\n")
		}
	}
	if len(body) > 0 {
		w.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n")
	}
	w.WriteString("\r\n")
	w.Write(body)

	r, err := http.ReadRequest(bufio.NewReader(&w))
	if err != nil {
		return nil, false
	}
	// What (*http.conn).readRequest checks besides http.ReadRequest, which
	// has already refused a second Host header and taken the one out of
	// r.Header.
	if !validHostHeader(host) {
		return nil, false
	}
	for name, values := range r.Header {
		if !validHeaderName(name) {
			return nil, false
		}
		for _, v := range values {
			if !validHeaderValue(v) {
				return nil, false
			}
		}
	}
	if r.Method == http.MethodOptions && r.RequestURI == "*" {
		return nil, false // the server's own OPTIONS * handler answers
	}
	r.RemoteAddr = fzPeer
	return r, true
}

// validHostHeader is httpguts.ValidHostHeader: the bytes of uri-host and port.
func validHostHeader(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || strings.IndexByte("!$%&()*+,-.:;=[']_~", c) >= 0) {
			return false
		}
	}
	return true
}

// validHeaderName is httpguts.ValidHeaderFieldName: a non-empty token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// validHeaderValue is httpguts.ValidHeaderFieldValue: no control bytes but
// tab (obs-text, bytes >= 0x80, is allowed).
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// fuzzSeed is one request of the seed corpus.
type fuzzSeed struct {
	method, target, host, auth, ctype, secret, extra, body string
}

func handlerSeeds() []fuzzSeed {
	const (
		pro   = "Bearer " + fzProKey
		other = "Bearer " + fzOtherKey
		dev   = "Bearer " + fzDevKey
		js    = "application/json"
	)
	u := func(name string) string { return "/lock/uuid/" + name }
	k := func(name string) string { return "/lock/key/" + name }
	return []fuzzSeed{
		// Acquire.
		{method: "POST", target: u(fzU4)},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"secret":"s4","expires_in":60}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"secret":"s4","expires_in":60,"wait":0}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"wait":5}`},
		{method: "POST", target: u(fzU4), ctype: "application/json; charset=utf-8", body: `{"secret":"ü✓"}`},
		{method: "POST", target: u(fzU4), secret: "hdr-secret"},
		{method: "POST", target: u(fzU4), secret: "same", body: `{"secret":"same"}`},
		{method: "POST", target: u(fzU4), secret: "one", body: `{"secret":"two"}`},
		{method: "POST", target: u(fzU1), ctype: js, body: `{"secret":"s1"}`},
		{method: "POST", target: u(fzU1), ctype: js, body: `{"secret":"wrong"}`},
		{method: "POST", target: u(fzU2)},
		{method: "POST", target: u(fzU3), body: `{"secret":"new"}`},
		{method: "POST", target: u(strings.ToUpper(fzU4))},
		{method: "POST", target: k("deploy"), auth: pro, ctype: js, body: `{"secret":"s1"}`},
		{method: "POST", target: k("new-lock:v1.2~x_y"), auth: pro, body: `{"expires_in":31536000}`},
		{method: "POST", target: k("expired"), auth: pro},
		{method: "POST", target: k("deploy"), auth: dev},
		{method: "POST", target: k("deploy")},
		{method: "POST", target: k("deploy"), auth: pro, host: "acme.locks.example.com"},
		{method: "POST", target: k("deploy"), auth: other, host: "acme.locks.example.com:8080"},
		{method: "POST", target: u(fzU4), host: "acme.locks.example.com"},
		{method: "POST", target: u(fzU4), auth: "Basic YTpi"},
		{method: "POST", target: u(fzU4), auth: "Bearer "},
		{method: "POST", target: u(fzU4), auth: "bearer " + fzProKey},
		{method: "POST", target: u(fzU4), extra: "Authorization: Bearer a\nAuthorization: Bearer b"},
		{method: "POST", target: u(fzU4), extra: "X-Forwarded-For: " + fzThrottled},
		{method: "GET", target: u(fzU1), extra: "X-Forwarded-For: 198.51.100.7, " + fzThrottled},
		{method: "POST", target: "http://locklock.test" + u(fzU4)},
		// Holders, metadata and lock-delay (API.md §8).
		{method: "POST", target: u(fzU4), ctype: js, body: `{"secret":"s4","holder":"host-1:42","metadata":{"addr":"10.0.0.1:80","e":""},"lock_delay":10}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"holder":"ü <b>\"","metadata":{"k":"\u2028"}}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"holder":null}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"holder":""}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"holder":"a\ud800"}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"metadata":{"k":"a","k":"b"}}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"metadata":{"k":1}}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"metadata":{"a b":"v"}}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"metadata":null}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"lock_delay":61}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"lock_delay":-1}`},
		{method: "PATCH", target: u(fzU1), ctype: js, body: `{"secret":"s1","holder":"new"}`},
		{method: "PATCH", target: u(fzU1), ctype: js, body: `{"secret":"s1","metadata":{}}`},
		{method: "PATCH", target: u(fzU1), ctype: js, body: `{"secret":"s1","metadata":{"a":"b"},"expires_in":5}`},
		{method: "PATCH", target: u(fzU1), ctype: js, body: `{"secret":"s1","lock_delay":5}`},
		{method: "PATCH", target: u(fzU2), body: `{"holder":"anyone"}`},
		// Release.
		{method: "DELETE", target: u(fzU1), ctype: js, body: `{"secret":"s1"}`},
		{method: "DELETE", target: u(fzU1), secret: "s1"},
		{method: "DELETE", target: u(fzU1), secret: "nope"},
		{method: "DELETE", target: u(fzU1)},
		{method: "DELETE", target: u(fzU1), extra: secretHeader + ":"},
		{method: "DELETE", target: u(fzU1), extra: secretHeader + ": s1\n" + secretHeader + ": s1"},
		{method: "DELETE", target: u(fzU2)},
		{method: "DELETE", target: u(fzU3), secret: "s3"},
		{method: "DELETE", target: u(fzU4)},
		{method: "DELETE", target: k("deploy"), auth: pro, secret: "s1"},
		{method: "DELETE", target: k("open"), auth: pro},
		{method: "DELETE", target: k("deploy"), auth: other, secret: "s1"},
		{method: "DELETE", target: u(fzU1), ctype: js, body: `{"secret":"s1","expires_in":5}`},
		// Refresh.
		{method: "PATCH", target: u(fzU1), ctype: js, body: `{"secret":"s1","expires_in":120}`},
		{method: "PATCH", target: u(fzU1), secret: "s1"},
		{method: "PATCH", target: u(fzU1), ctype: js, body: `{"secret":"s1","expires_in":0}`},
		{method: "PATCH", target: u(fzU1), ctype: js, body: `{"secret":"s1","wait":1}`},
		{method: "PATCH", target: u(fzU2), body: `{"expires_in":1}`},
		{method: "PATCH", target: k("deploy"), auth: pro, body: `{"secret":"s1","expires_in":9223372036854775807}`},
		{method: "PATCH", target: u(fzU1), auth: pro, secret: "s2"},
		// Inspect and list.
		{method: "GET", target: u(fzU1)},
		{method: "HEAD", target: u(fzU1)},
		{method: "GET", target: u(fzU3)},
		{method: "HEAD", target: u(fzU4)},
		{method: "GET", target: u(fzU1), body: `{"ignored":true}`},
		{method: "GET", target: k("deploy"), auth: pro},
		{method: "HEAD", target: k("deploy")},
		{method: "GET", target: "/locks?kind=uuid", auth: pro},
		{method: "GET", target: "/locks?kind=key&prefix=de&limit=1", auth: pro},
		{method: "GET", target: "/locks?kind=key&after=deploy&limit=1000", auth: pro},
		{method: "GET", target: "/locks?kind=uuid&prefix=180DA", auth: pro},
		{method: "HEAD", target: "/locks?kind=uuid", auth: dev},
		{method: "GET", target: "/locks?kind=uuid"},
		{method: "GET", target: "/locks"},
		{method: "GET", target: "/locks?kind=uuid&kind=key", auth: pro},
		{method: "GET", target: "/locks?kind=key&limit=0", auth: pro},
		{method: "GET", target: "/locks?kind=key&limit=99999999999999999999", auth: pro},
		{method: "GET", target: "/locks?kind=key&prefix=a%2Fb", auth: pro},
		{method: "GET", target: "/locks?kind=key&limt=5", auth: pro},
		{method: "GET", target: "/locks?kind=key;x", auth: pro},
		{method: "GET", target: "/locks?kind=key&prefix=%zz", auth: pro},
		{method: "GET", target: "/openapi.json"},
		{method: "HEAD", target: "/openapi.json", extra: "If-None-Match: *"},
		{method: "GET", target: "/openapi.json", extra: "If-None-Match: W/\"x\", \"y\""},
		{method: "POST", target: "/openapi.json", body: "{}"},
		// Odd methods and routes.
		{method: "PUT", target: u(fzU1)},
		{method: "OPTIONS", target: u(fzU1)},
		{method: "OPTIONS", target: "*"},
		{method: "TRACE", target: "/locks"},
		{method: "CONNECT", target: "locklock.test:443"},
		{method: "BREW", target: u(fzU1)},
		{method: "post", target: u(fzU4)},
		{method: "GET", target: "/"},
		{method: "GET", target: "*"},
		{method: "GET", target: "/lock"},
		{method: "GET", target: "/lock/uuid"},
		{method: "GET", target: "/lock/uuid/"},
		{method: "POST", target: "/lock/key/", auth: pro},
		{method: "GET", target: "/lock/guid/" + fzU1},
		{method: "GET", target: "/locks/"},
		{method: "GET", target: "/lock/uuid/" + fzU1 + "/"},
		{method: "GET", target: "/lock/uuid/" + fzU1 + "?x=1"},
		{method: "GET", target: "/lock/uuid/" + fzU1 + "#frag"},
		{method: "POST", target: "/lock/uuid/../uuid/" + fzU4},
		{method: "POST", target: "/lock/key/../../etc/passwd", auth: pro},
		{method: "POST", target: "/lock/key/a/b", auth: pro},
		{method: "POST", target: "//lock/uuid/" + fzU4},
		{method: "POST", target: "/lock//uuid/" + fzU4},
		{method: "POST", target: "/lock/uuid//" + fzU4},
		{method: "POST", target: "/lock/uuid/./" + fzU4},
		{method: "POST", target: "/lock/uuid/" + strings.Replace(fzU4, "-", "%2D", 1)},
		{method: "POST", target: "/lock/key/a%2Fb", auth: pro},
		{method: "POST", target: "/lock/key/a%00b", auth: pro},
		{method: "POST", target: "/lock/key/%E2%9C%93", auth: pro},
		{method: "POST", target: "/lock/key/%ff", auth: pro},
		{method: "POST", target: "/lock/key/%zz", auth: pro},
		{method: "POST", target: "/lock/key/a%0Ab", auth: pro},
		{method: "POST", target: "/lock/key/" + strings.Repeat("k", 255), auth: pro},
		{method: "POST", target: "/lock/key/" + strings.Repeat("k", 256), auth: pro},
		{method: "POST", target: "/lock/%75uid/" + fzU4},
		{method: "POST", target: "/LOCK/UUID/" + fzU4},
		// Bodies.
		{method: "POST", target: u(fzU4), ctype: js, body: `{`},
		{method: "POST", target: u(fzU4), ctype: js, body: `null`},
		{method: "POST", target: u(fzU4), ctype: js, body: `[]`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"secret":"a"} {}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"secret":"a","secret":"b"}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"expire_in":5}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"Secret":"a"}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"secret":""}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"secret":null}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"secret":"` + strings.Repeat("s", 257) + `"}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"secret":"\ud800"}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"secret":"\u0000"}`},
		{method: "POST", target: u(fzU4), ctype: js, body: "{\"secret\":\"\xff\"}"},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"s\u0065cret":"esc"}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"expires_in":1.5}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"expires_in":1e3}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"expires_in":-0}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"expires_in":31536001}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"expires_in":9223372036}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"expires_in":99999999999999999999}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"wait":-1}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"wait":"0"}`},
		{method: "POST", target: u(fzU4), ctype: js, body: "\ufeff{}"},
		{method: "POST", target: u(fzU4), ctype: js, body: " \r\n\t"},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"secret":"a","nested":{"x":[1,2,{"y":null}]}}`},
		{method: "POST", target: u(fzU4), ctype: js, body: strings.Repeat("[", 5000)},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"secret":"a"}` + strings.Repeat(" ", maxBody-14)},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"secret":"a"}` + strings.Repeat(" ", maxBody-13)},
		{method: "DELETE", target: u(fzU1), ctype: js, body: `{"secret":"s1","pad":"` + strings.Repeat("x", 3*maxBody) + `"}`},
		{method: "POST", target: u(fzU4), ctype: "text/plain", body: `{}`},
		{method: "POST", target: u(fzU4), ctype: "application/problem+json", body: `{}`},
		{method: "POST", target: u(fzU4), ctype: "application/json;;", body: `{}`},
		{method: "POST", target: u(fzU4), ctype: "APPLICATION/JSON", body: `{}`},
		{method: "DELETE", target: u(fzU1), ctype: "text/plain", secret: "s1"},
		{method: "POST", target: u(fzU4), ctype: js, extra: "Transfer-Encoding: chunked", body: "e\r\n{\"secret\":\"c\"}\r\n0\r\n\r\n"},
		{method: "POST", target: u(fzU4), ctype: js, extra: "Transfer-Encoding: chunked", body: "zz\r\n{}"},
		{method: "POST", target: u(fzU4), ctype: js, extra: "Content-Encoding: gzip", body: `{}`},
		{method: "POST", target: u(fzU4), ctype: js, extra: "Expect: 100-continue", body: `{}`},
		// Content codings (API.md §7): identity only, empty body or not.
		{method: "POST", target: u(fzU4), extra: "Content-Encoding: gzip"},
		{method: "POST", target: u(fzU4), ctype: js, extra: "Content-Encoding: IDENTITY", body: `{"secret":"ce"}`},
		{method: "POST", target: u(fzU4), ctype: js, extra: "Content-Encoding: identity, gzip", body: `{}`},
		{method: "POST", target: u(fzU4), extra: "Content-Encoding: identity\nContent-Encoding: br"},
		{method: "POST", target: u(fzU4), extra: "Content-Encoding: ,identity,"},
		{method: "DELETE", target: u(fzU1), secret: "s1", extra: "Content-Encoding: deflate"},
		{method: "PATCH", target: u(fzU1), secret: "s1", extra: "Content-Encoding:"},
		{method: "GET", target: u(fzU1), extra: "Content-Encoding: gzip"},
		// Query strings (API.md §7): none on lock routes.
		{method: "POST", target: u(fzU4) + "?secret=abc&expires_in=5"},
		{method: "POST", target: u(fzU4) + "?"},
		{method: "POST", target: u(fzU4) + "?&&"},
		{method: "POST", target: u(fzU4) + "?=x"},
		{method: "POST", target: u(fzU4) + "?secret"},
		{method: "POST", target: u(fzU4) + "?%zz=1"},
		{method: "POST", target: u(fzU4) + "?a;b=c"},
		{method: "DELETE", target: u(fzU1) + "?secret=s1"},
		{method: "PATCH", target: u(fzU1) + "?expires_in=1", secret: "s1"},
		{method: "HEAD", target: u(fzU1) + "?x"},
		{method: "GET", target: k("deploy") + "?" + strings.Repeat("q", 3000) + "=1", auth: pro},
		{method: "GET", target: "/locks?kind=uuid&", auth: pro},
		{method: "GET", target: "/locks?&kind=uuid", auth: pro},
		{method: "GET", target: "/locks?kind=uuid&secret=x", auth: pro},
		{method: "GET", target: "/locks?kind=uuid&limit=1&limit=1", auth: pro},
		{method: "GET", target: "/locks?kind=uuid&limit=1;", auth: pro},
		{method: "GET", target: "/locks?kind=%75uid", auth: pro},
		{method: "GET", target: "/locks?%6Bind=uuid", auth: pro},
		// Secrets (API.md §7).
		{method: "POST", target: u(fzU4), ctype: js, body: `{"secret":" lead"}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"secret":"trail "}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"secret":"\ttab"}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"secret":"in side"}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"secret":"\ufffd"}`},
		{method: "POST", target: u(fzU4), ctype: js, body: "{\"secret\":\"\ufffd\"}"},
		{method: "POST", target: u(fzU4), secret: "\ufffd"},
		{method: "POST", target: u(fzU4), secret: "\ufffd", ctype: js, body: `{"secret":"\ud800"}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"secret":"\ud83d\ude00"}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"secret":"\udc00\ud800"}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"secret":"\u0085"}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"secret":"a\\ud800"}`},
		{method: "POST", target: u(fzU4), secret: "a\tb"},
		{method: "POST", target: u(fzU4), secret: "\u0085"},
		{method: "POST", target: u(fzU4), secret: "a\xffb"},
		{method: "GET", target: u(fzU1), secret: "\x91"}, // GET ignores the header
		{method: "POST", target: u(fzU4), ctype: js, body: "\u00a0"},
		{method: "POST", target: u(fzU4), ctype: js, body: "\u2028"},
		{method: "POST", target: u(fzU4), body: "\v"},
		{method: "DELETE", target: u(fzU1), ctype: js, body: `{"secret":" s1"}`},
		{method: "PATCH", target: u(fzU1), ctype: js, body: `{"secret":"s1 "}`},
		// Input echoed in problems and logs is cut short (API.md §7).
		{method: "GET", target: "/" + strings.Repeat("p", 6000)},
		{method: "GET", target: "/" + strings.Repeat("%0A", 600)},
		{method: strings.Repeat("M", 5000), target: u(fzU1)},
		{method: strings.Repeat("M", 5000), target: "/nowhere"},
		{method: "POST", target: u(fzU4), ctype: strings.Repeat("t", 3000), body: `{}`},
		{method: "POST", target: u(fzU4), extra: "Content-Encoding: " + strings.Repeat("\u2028", 1000)},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"` + strings.Repeat("f", 3000) + `":1}`},
	}
}

// FuzzHandler sends whole HTTP requests to the API handler: no input may
// make it panic, answer 5xx (the memory engine is always up), answer an
// error that is not a proper problem, or change a lock when it says no.
func FuzzHandler(f *testing.F) {
	for _, s := range append(handlerSeeds(), semaphoreSeeds()...) {
		f.Add(s.method, s.target, s.host, s.auth, s.ctype, s.secret, s.extra, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, method, target, host, authorization, contentType, secret, extra string, body []byte) {
		r, ok := wireRequest(method, target, host, authorization, contentType, secret, extra, body)
		if !ok {
			t.Skip("net/http's server would refuse this request itself")
		}
		e := newFuzzEnv(t)
		before, sBefore := e.state(t), e.slotState(t)
		var read bytes.Buffer // the body as the handler read it
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.TeeReader(r.Body, &read), r.Body}
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, r)
		after, sAfter := e.state(t), e.slotState(t)
		checkFuzzResponse(t, r, read.Bytes(), rec, before, after, sBefore, sAfter)
	})
}

func checkFuzzResponse(t *testing.T, r *http.Request, reqBody []byte, rec *httptest.ResponseRecorder, before, after map[locklock.ID]locklock.Lock, sBefore, sAfter fzSlots) {
	t.Helper()
	status, hdr, raw := rec.Code, rec.Header(), rec.Body.Bytes()
	t.Logf("%s %q -> %d %s", r.Method, r.RequestURI, status, raw[:min(len(raw), 512)])
	// Only a successful semaphore request may change slots.
	if (status >= 300 || !fzSemaphorePath(r.URL.Path)) && !reflect.DeepEqual(sBefore, sAfter) {
		t.Fatalf("%s %s (%d) changed slots:\nbefore %v\nafter  %v", r.Method, r.URL.Path, status, sBefore, sAfter)
	}
	if r.URL.Path == "/openapi.json" && status < 400 {
		checkFuzzOpenAPI(t, r, status, hdr, raw, before, after)
		return
	}
	if hdr.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q", hdr.Get("Cache-Control"))
	}
	if r.Method == http.MethodHead && len(raw) != 0 {
		t.Errorf("HEAD answered with a body")
	}
	switch {
	case status >= 500:
		t.Fatalf("a client's request got %d", status)
	case status >= 400:
		checkFuzzProblem(t, r, status, hdr, raw)
		// Client input appears in a detail only as a short prefix (API.md
		// §7): at most two quoted prefixes of a few dozen bytes each, even
		// escaped, and the fixed text around them.
		if len(raw) > 1024 {
			t.Fatalf("a %d-byte problem: %.200s…", len(raw), raw)
		}
		if !reflect.DeepEqual(before, after) {
			t.Fatalf("a rejected request (%d) changed locks:\nbefore %v\nafter  %v", status, before, after)
		}
	case status == http.StatusOK || status == http.StatusCreated:
		if ct := hdr.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q on %d", ct, status)
		}
		checkFuzzInputRules(t, r, reqBody, status)
		if fzSemaphorePath(r.URL.Path) {
			checkFuzzSemaphoreSuccess(t, r, reqBody, status, raw, before, after, sBefore, sAfter)
			return
		}
		checkFuzzSuccess(t, r, reqBody, status, raw, before, after)
	default:
		t.Fatalf("unexpected status %d", status)
	}
}

// checkFuzzOpenAPI checks a success of the one route that serves a
// document rather than lock state (cacheable, with an ETag).
func checkFuzzOpenAPI(t *testing.T, r *http.Request, status int, hdr http.Header, raw []byte, before, after map[locklock.ID]locklock.Lock) {
	t.Helper()
	if r.Method != http.MethodGet && r.Method != http.MethodHead || status != http.StatusOK && status != http.StatusNotModified {
		t.Fatalf("%s /openapi.json answered %d", r.Method, status)
	}
	if status == http.StatusOK && r.Method == http.MethodGet && (hdr.Get("Content-Type") != "application/json" || !json.Valid(raw)) {
		t.Fatalf("/openapi.json is not JSON (%q)", hdr.Get("Content-Type"))
	}
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("%s /openapi.json changed locks", r.Method)
	}
}

func checkFuzzProblem(t *testing.T, r *http.Request, status int, hdr http.Header, raw []byte) {
	t.Helper()
	if ct := hdr.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("error %d with Content-Type %q", status, ct)
	}
	switch status {
	case http.StatusMethodNotAllowed:
		allow := strings.Split(hdr.Get("Allow"), ", ")
		if len(allow) == 0 || allow[0] == "" || slices.Contains(allow, r.Method) {
			t.Errorf("405 for %s with Allow %q", r.Method, hdr.Get("Allow"))
		}
	case http.StatusUnauthorized:
		if hdr.Get("WWW-Authenticate") == "" {
			t.Errorf("401 without WWW-Authenticate")
		}
	case http.StatusConflict, http.StatusTooManyRequests:
		if bytes.Contains(raw, []byte(`"code":"limit_mismatch"`)) {
			// The one 409 without: the same request fails until the
			// semaphore empties, whenever that is.
			if hdr.Get("Retry-After") != "" {
				t.Errorf("limit_mismatch with Retry-After %q", hdr.Get("Retry-After"))
			}
			break
		}
		if n, err := strconv.Atoi(hdr.Get("Retry-After")); err != nil || n < 1 {
			t.Errorf("%d with Retry-After %q", status, hdr.Get("Retry-After"))
		}
	}
	if r.Method == http.MethodHead {
		for _, info := range codeInfo {
			if info.status == status {
				return
			}
		}
		t.Fatalf("HEAD: status %d belongs to no error code", status)
	}
	var p problem
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil || dec.More() {
		t.Fatalf("error body is not a problem document (%v): %s", err, raw)
	}
	info, known := codeInfo[p.Code]
	switch {
	case !known:
		t.Fatalf("unknown code %q", p.Code)
	case p.Status != status || info.status != status:
		t.Fatalf("code %s with status %d in the body and %d on the wire", p.Code, p.Status, status)
	case p.Type != "urn:locklock:error:"+p.Code || p.Title != info.title || p.Detail == "":
		t.Fatalf("malformed problem %+v", p)
	case p.ExpiresAt != "" && p.Code != codeLockHeld:
		t.Fatalf("expires_at on a %s problem", p.Code)
	case p.DelayedUntil != "" && p.Code != codeLockDelayed && p.Code != codeLockNotFound:
		t.Fatalf("delayed_until on a %s problem", p.Code)
	case (p.Limit != nil) != (p.Code == codeSemaphoreFull || p.Code == codeLimitMismatch):
		t.Fatalf("limit %v on a %s problem", p.Limit, p.Code)
	case (p.InUse != nil) != (p.Code == codeSemaphoreFull):
		t.Fatalf("in_use %v on a %s problem", p.InUse, p.Code)
	}
}

func checkFuzzSuccess(t *testing.T, r *http.Request, reqBody []byte, status int, raw []byte, before, after map[locklock.ID]locklock.Lock) {
	t.Helper()
	strict := func(v any) {
		t.Helper()
		if r.Method == http.MethodHead {
			return
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil || dec.More() {
			t.Fatalf("success body does not decode as %T (%v): %s", v, err, raw)
		}
	}
	unchanged := func() {
		t.Helper()
		if !reflect.DeepEqual(before, after) {
			t.Fatalf("%s %d changed locks:\nbefore %v\nafter  %v", r.Method, status, before, after)
		}
	}
	ns := fzNamespace(r)
	if ns == "" {
		t.Fatalf("%d for Authorization %q", status, r.Header.Values("Authorization"))
	}
	if r.URL.Path == "/locks" {
		var page listJSON
		strict(&page)
		if r.Method != http.MethodGet && r.Method != http.MethodHead || status != http.StatusOK {
			t.Fatalf("%s /locks answered %d", r.Method, status)
		}
		unchanged()
		if r.Method == http.MethodGet {
			checkFuzzPage(t, r, ns, page, before)
		}
		return
	}
	// The lock object must be the one the path names, in the caller's
	// namespace (mux routes on the decoded path).
	kind, name, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/lock/"), "/")
	wantID, err := locklock.NewID(ns, locklock.Kind(kind), name)
	if err != nil {
		t.Fatalf("%d for a bad lock name: %v", status, err)
	}
	var l lockJSON
	lockStrict := func(l *lockJSON) {
		t.Helper()
		strict(l)
		if r.Method != http.MethodHead && idOf(*l) != wantID {
			t.Fatalf("%s %s answered for lock %v, want %v", r.Method, r.URL.Path, idOf(*l), wantID)
		}
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		lockStrict(&l)
		if status != http.StatusOK {
			t.Fatalf("%s answered %d", r.Method, status)
		}
		unchanged()
		if r.Method == http.MethodGet {
			sameLock(t, l, before)
		}
	case http.MethodPost:
		lockStrict(&l)
		if status == http.StatusOK { // a retried acquire
			unchanged()
			sameLock(t, l, before)
			if secret := fzSecret(r, reqBody); secret == "" || !before[wantID].Protected() || !before[wantID].Guard.Admits(secret) {
				t.Fatalf("200 for acquiring %v with secret %q", wantID, secret)
			}
			return
		}
		id := idOf(l)
		if _, held := before[id]; held {
			t.Fatalf("201 for %v, which was held: %v", id, before[id])
		}
		sameLock(t, l, after)
		if secret := fzSecret(r, reqBody); after[id].Protected() != (secret != "") || !after[id].Guard.Admits(secret) {
			t.Fatalf("acquired with secret %q, but the guard does not match", secret)
		}
		delete(after, id)
		unchanged()
	case http.MethodDelete:
		var rel releasedJSON
		strict(&rel)
		if !rel.Released || status != http.StatusOK {
			t.Fatalf("DELETE answered %d %s", status, raw)
		}
		if idOf(rel.Lock) != wantID {
			t.Fatalf("DELETE %s released %v, want %v", r.URL.Path, idOf(rel.Lock), wantID)
		}
		id := idOf(rel.Lock)
		sameLock(t, rel.Lock, before)
		if secret := fzSecret(r, reqBody); !before[id].Guard.Admits(secret) {
			t.Fatalf("released %v with the wrong secret %q", id, secret)
		}
		if _, still := after[id]; still {
			t.Fatalf("released %v is still there", id)
		}
		delete(before, id)
		unchanged()
	case http.MethodPatch:
		lockStrict(&l)
		if status != http.StatusOK {
			t.Fatalf("PATCH answered %d", status)
		}
		id := idOf(l)
		old, ok := before[id]
		if !ok {
			t.Fatalf("refreshed %v, which was not held", id)
		}
		sameLock(t, l, after)
		if secret := fzSecret(r, reqBody); !old.Guard.Admits(secret) {
			t.Fatalf("refreshed %v with the wrong secret %q", id, secret)
		}
		if now := after[id]; now.Token != old.Token || !now.AcquiredAt.Equal(old.AcquiredAt) || now.Guard != old.Guard {
			t.Fatalf("refresh changed more than the expiry: %v -> %v", old, now)
		}
		before[id] = after[id]
		unchanged()
	default:
		t.Fatalf("%s answered %d", r.Method, status)
	}
}

// checkFuzzInputRules checks a success against API.md §7: no query
// parameter on a lock route and only documented ones, once each, on
// /locks; no content coding on a request that reads a body; and the
// secret rules.
func checkFuzzInputRules(t *testing.T, r *http.Request, reqBody []byte, status int) {
	t.Helper()
	allowed := map[string]bool{}
	switch route := Route(r.URL.Path); {
	case route == "/locks" || route == "/semaphores":
		allowed = map[string]bool{"kind": true, "prefix": true, "limit": true, "after": true}
	case (route == "/semaphore/uuid/{uuid}" || route == "/semaphore/key/{name}") && r.Method != http.MethodPost:
		allowed = map[string]bool{"limit": true, "after": true}
	}
	seen := map[string]bool{}
	for piece := range strings.SplitSeq(r.URL.RawQuery, "&") {
		if piece == "" {
			continue
		}
		key, _, _ := strings.Cut(piece, "=")
		key, err := url.QueryUnescape(key)
		if err != nil || !allowed[key] || seen[key] {
			t.Fatalf("%s %s answered %d for query %q", r.Method, r.URL.Path, status, r.URL.RawQuery)
		}
		seen[key] = true
	}
	if r.Method != http.MethodPost && r.Method != http.MethodPatch && r.Method != http.MethodDelete {
		return // GET and HEAD read neither the body, nor its coding, nor Locklock-Secret
	}
	for _, v := range r.Header.Values("Content-Encoding") {
		for coding := range strings.SplitSeq(v, ",") {
			if c := strings.TrimSpace(coding); c != "" && !strings.EqualFold(c, "identity") {
				t.Fatalf("%s answered %d for Content-Encoding %q", r.Method, status, r.Header.Values("Content-Encoding"))
			}
		}
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(reqBody, &fields) == nil && fields["secret"] != nil && refLoneSurrogate(fields["secret"]) {
		t.Fatalf("%s answered %d for a secret with an unpaired surrogate escape: %s", r.Method, status, fields["secret"])
	}
	secret := fzSecret(r, reqBody)
	if secret != "" && (len(secret) > locklock.MaxSecretLen || !utf8.ValidString(secret) || strings.ContainsFunc(secret, unicode.IsControl)) {
		t.Fatalf("%s answered %d for the secret %q", r.Method, status, secret)
	}
	if r.Method == http.MethodPost && strings.Trim(secret, " \t") != secret {
		t.Fatalf("POST answered %d for the secret %q, which starts or ends with a space or tab", status, secret)
	}
}

// refLoneSurrogate reports whether the JSON string literal lit (valid JSON)
// holds an unpaired UTF-16 surrogate, by decoding it to UTF-16 code units:
// a second way of telling, beside the handler's scan of the escapes.
func refLoneSurrogate(lit json.RawMessage) bool {
	var units []uint16
	str := []rune(string(lit[1 : len(lit)-1]))
	for i := 0; i < len(str); i++ {
		if str[i] != '\\' {
			units = append(units, utf16.Encode([]rune{str[i]})...)
			continue
		}
		i++
		if str[i] != 'u' {
			units = append(units, uint16(str[i])) // \n, \", …: one unit, not a surrogate
			continue
		}
		n, _ := strconv.ParseUint(string(str[i+1:i+5]), 16, 16)
		units = append(units, uint16(n))
		i += 4
	}
	for i := 0; i < len(units); i++ {
		switch u := units[i]; {
		case u >= 0xD800 && u < 0xDC00:
			if i+1 == len(units) || units[i+1] < 0xDC00 || units[i+1] >= 0xE000 {
				return true
			}
			i++
		case u >= 0xDC00 && u < 0xE000:
			return true
		}
	}
	return false
}

// fzSecret is the secret a successful request presented: the header's, or
// else the body's.
func fzSecret(r *http.Request, body []byte) string {
	if v := r.Header.Values(secretHeader); len(v) > 0 {
		return v[0]
	}
	var b struct{ Secret string }
	_ = json.Unmarshal(body, &b)
	return b.Secret
}

// fzNamespace is the namespace a request that succeeds must have acted in,
// by its Authorization header; "" when no request with it may succeed.
func fzNamespace(r *http.Request) string {
	values := r.Header.Values("Authorization")
	if len(values) == 0 {
		return locklock.DefaultNamespace
	}
	scheme, key, _ := strings.Cut(values[0], " ")
	if len(values) != 1 || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return map[string]string{fzProKey: "acme", fzOtherKey: "globex", fzDevKey: "devco"}[strings.TrimSpace(key)]
}

// checkFuzzPage checks a listing against the store: the first locks of the
// caller's namespace that match, in name order, and a next cursor exactly
// when more remain.
func checkFuzzPage(t *testing.T, r *http.Request, ns string, page listJSON, store map[locklock.ID]locklock.Lock) {
	t.Helper()
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		t.Fatalf("listed for a bad query: %v", err)
	}
	kind, prefix, after, limit := locklock.Kind(q.Get("kind")), q.Get("prefix"), q.Get("after"), locklock.DefaultListLimit
	if q.Has("limit") {
		if limit, err = strconv.Atoi(q.Get("limit")); err != nil || limit < 1 || limit > locklock.MaxListLimit {
			t.Fatalf("listed with limit %q", q.Get("limit"))
		}
	}
	if kind == locklock.KindUUID {
		prefix, after = strings.ToLower(prefix), strings.ToLower(after)
	}
	var names []string
	for id := range store {
		if id.Namespace == ns && id.Kind == kind && strings.HasPrefix(id.Name, prefix) && id.Name > after {
			names = append(names, id.Name)
		}
	}
	slices.Sort(names)
	next := ""
	if len(names) > limit {
		names, next = names[:limit], names[limit-1]
	}
	var got []string
	for _, l := range page.Locks {
		got = append(got, l.Name)
		if l.Namespace != ns || l.Kind != kind {
			t.Fatalf("listing %s/%s shows %s/%s/%s", ns, kind, l.Namespace, l.Kind, l.Name)
		}
		sameLock(t, l, store)
	}
	if !slices.Equal(got, names) || page.Next != next {
		t.Fatalf("listed %q next %q, want %q next %q", got, page.Next, names, next)
	}
}

func idOf(l lockJSON) locklock.ID {
	return locklock.ID{Namespace: l.Namespace, Kind: l.Kind, Name: l.Name}
}

// sameLock checks that the lock object describes the stored lock.
func sameLock(t *testing.T, l lockJSON, store map[locklock.ID]locklock.Lock) {
	t.Helper()
	s, ok := store[idOf(l)]
	if !ok {
		t.Fatalf("the answer names %v, which is not stored", idOf(l))
	}
	if l.FencingToken != s.Token || l.AcquiredAt != formatTime(s.AcquiredAt) || l.ExpiresAt != formatTime(s.ExpiresAt) ||
		l.Protected != s.Protected() || l.ExpiresIn < 0 ||
		l.Holder != s.Holder || !maps.Equal(l.Metadata, s.Metadata) || l.LockDelay != int64(s.LockDelay/time.Second) {
		t.Fatalf("the answer %+v does not match the stored lock %v", l, s)
	}
}

// FuzzDecodeBody feeds raw bytes to the body reader with a fuzzed set of
// allowed fields and Content-Type: every refusal is a 4xx problem, every
// body it accepts obeys the field rules, and it agrees with encoding/json
// about which bodies are well-formed objects with the right fields.
func FuzzDecodeBody(f *testing.F) {
	const all = 63 // secret, expires_in, wait, holder, metadata, lock_delay
	for _, s := range handlerSeeds() {
		if s.body != "" && !strings.Contains(s.extra, "Transfer-Encoding") {
			f.Add([]byte(s.body), uint8(all), s.ctype)
		}
	}
	for _, s := range []string{
		``, ` `, `{}`, `{ }`, ` {"secret" : "x" } `, `{"secret":"x","expires_in":1,"wait":0}`,
		`{"expires_in":9223372036854775807}`, `{"expires_in":9223372036854775808}`, `{"wait":-9223372036854775808}`,
		`{"expires_in":01}`, `{"expires_in":1E2}`, `{"expires_in":+1}`, `{"wait":0.0}`, `{"wait":-0.0}`,
		`{"secret":"\ufffd"}`, `{"secret":"\udc00\ud800"}`, `{"secret":"\ud83d\ude00"}`, `{"secret":"a\\b\"c"}`,
		`{"":""}`, `{"secret":"x"}}`, `{"secret":"x"}]`, `{"secret":"x"}/**/`, `{"secret":"x",}`, `{,}`,
		`{"secret":"x"`, `{"secret"`, `{"secret":`, `"`, `{"wait":[]}`, `{"wait":{}}`, `{"wait":true}`,
		"{\"secret\":\"a\u2028b\"}", "{\"secret\":\"tab\there\"}", `{"secret":"x"} `, "\x00",
		`{"secret":"\ud800\u0041"}`, `{"secret":"\ud800\\u0041"}`, `{"secret":"\\ud800"}`, `{"secret":"\ud83d\ude00\ud800"}`,
		`{"secret":"\u007f"}`, "{\"secret\":\"\u0085\"}", "{\"secret\":\"\u00a0\"}", `{"secret":" s "}`,
		"\u00a0", " \u2028 ", "\v", "\f", "\ufeff", "\r\n{}\r\n",
		`{"holder":"h","metadata":{"a":"b","c":""},"lock_delay":0}`, `{"holder":null}`, `{"holder":""}`, `{"holder":"\ud800"}`,
		`{"holder":"a\u0085"}`, `{"metadata":{}}`, `{"metadata":null}`, `{"metadata":[]}`, `{"metadata":{"a":"b","a":"b"}}`,
		`{"metadata":{"a":1}}`, `{"metadata":{"a":"\udc00"}}`, `{"metadata":{"\ud800":"x"}}`, `{"metadata":{"a b":""}}`,
		`{"metadata":{"a":"b"}x}`, `{"metadata":{"a":"b",}}`, `{"lock_delay":-1}`, `{"lock_delay":9223372036854775808}`,
	} {
		f.Add([]byte(s), uint8(all), "application/json")
	}
	f.Add([]byte(`{"secret":"x","wait":1}`), uint8(3), "")
	f.Add([]byte(`{"secret":"x","expires_in":1}`), uint8(1), "")
	f.Add([]byte(`{"secret":"x"}`), uint8(0), "text/json")
	f.Add([]byte(`{"secret":"x"}`), uint8(all), "application/json; charset=\"utf-8\"")

	fields := []string{fieldSecret, fieldExpiresIn, fieldWait, fieldHolder, fieldMetadata, fieldLockDelay}
	f.Fuzz(func(t *testing.T, raw []byte, mask uint8, contentType string) {
		var allowed []string
		for i, name := range fields {
			if mask&(1<<i) != 0 {
				allowed = append(allowed, name)
			}
		}
		r := httptest.NewRequest(http.MethodPost, "/lock/uuid/"+fzU1, bytes.NewReader(raw))
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		b, err := readBody(httptest.NewRecorder(), r, allowed...)

		want, wantCode := referenceBody(raw, allowed, contentType)
		if err != nil {
			var p *problem
			if !errors.As(err, &p) {
				t.Fatalf("error %v (%T) is not a problem", err, err)
			}
			if info, ok := codeInfo[p.Code]; !ok || p.Status != info.status || p.Status < 400 || p.Status >= 500 || p.Detail == "" {
				t.Fatalf("bad problem %+v", p)
			}
			if wantCode == "" {
				t.Fatalf("refused %q (allowed %v) with %v; encoding/json accepts it as %+v", raw, allowed, err, want)
			}
			if wantCode == codeInvalidBody && p.Status != http.StatusBadRequest || wantCode != codeInvalidBody && p.Code != wantCode {
				t.Fatalf("refused %q with %s, want %s", raw, p.Code, wantCode)
			}
			return
		}
		if wantCode != "" {
			t.Fatalf("accepted %q (allowed %v, type %q) as %s; want %s", raw, allowed, contentType, showBody(b), wantCode)
		}
		if showBody(b) != showBody(want) {
			t.Fatalf("decoded %q as %s, encoding/json says %s", raw, showBody(b), showBody(want))
		}
		// The rules, whatever the reference says.
		if b.secret != nil && (*b.secret == "" || len(*b.secret) > locklock.MaxSecretLen || !utf8.ValidString(*b.secret) ||
			strings.ContainsFunc(*b.secret, unicode.IsControl) || !slices.Contains(allowed, fieldSecret)) {
			t.Fatalf("accepted secret %q", *b.secret)
		}
		if b.expiresIn != nil && (*b.expiresIn < 1 || !slices.Contains(allowed, fieldExpiresIn)) {
			t.Fatalf("accepted expires_in %d", *b.expiresIn)
		}
		if b.wait != nil && (*b.wait < 0 || !slices.Contains(allowed, fieldWait)) {
			t.Fatalf("accepted wait %d", *b.wait)
		}
		if b.holder != nil && (locklock.ValidateHolder(*b.holder) != nil || !slices.Contains(allowed, fieldHolder)) {
			t.Fatalf("accepted holder %q", *b.holder)
		}
		if b.metadata != nil && (locklock.ValidateMetadata(b.metadata) != nil || !slices.Contains(allowed, fieldMetadata)) {
			t.Fatalf("accepted metadata %q", b.metadata)
		}
		if b.lockDelay != nil && (*b.lockDelay < 0 || !slices.Contains(allowed, fieldLockDelay)) {
			t.Fatalf("accepted lock_delay %d", *b.lockDelay)
		}
	})
}

// referenceBody is what the body rules of API.md §2 and the package doc say
// about raw, decided with encoding/json instead of a token walk: the body
// it stands for, or the code of the refusal ("invalid_body" stands for any
// 400).
func referenceBody(raw []byte, allowed []string, contentType string) (body, string) {
	if len(raw) > maxBody {
		return body{}, codeBodyTooLarge
	}
	if strings.Trim(string(raw), " \t\r\n") == "" {
		return body{}, "" // JSON whitespace only: no body; other Unicode spaces are a body
	}
	if contentType != "" {
		if mt, _, err := mime.ParseMediaType(contentType); err != nil || mt != "application/json" {
			return body{}, codeUnsupportedMediaType
		}
	}
	var fields map[string]json.RawMessage
	if !utf8.Valid(raw) || !json.Valid(raw) || json.Unmarshal(raw, &fields) != nil || fields == nil {
		return body{}, codeInvalidBody // not one JSON object (null unmarshals to a nil map)
	}
	// encoding/json keeps the last of duplicate keys; count them all.
	if n, ok := countKeys(raw); !ok || n != len(fields) {
		return body{}, codeInvalidBody
	}
	var b body
	for key, v := range fields {
		if !slices.Contains(allowed, key) {
			// Unknown fields are unknown_field, but a duplicate or a bad
			// value elsewhere may be reported first: any 400 will do.
			return body{}, codeInvalidBody
		}
		if string(v) == "null" {
			return body{}, codeInvalidBody // Unmarshal would leave the zero value
		}
		switch key {
		case fieldSecret:
			var s string
			// API.md §7: 1-256 bytes, no control characters, and no
			// unpaired surrogate escape (encoding/json would make it
			// U+FFFD, which is otherwise an ordinary character).
			if json.Unmarshal(v, &s) != nil || s == "" || len(s) > locklock.MaxSecretLen ||
				strings.ContainsFunc(s, unicode.IsControl) || refLoneSurrogate(v) {
				return body{}, codeInvalidBody
			}
			b.secret = &s
		case fieldExpiresIn, fieldWait, fieldLockDelay:
			var n int64
			if json.Unmarshal(v, &n) != nil {
				return body{}, codeInvalidBody
			}
			if key == fieldExpiresIn && n < 1 || n < 0 {
				return body{}, codeInvalidBody
			}
			switch key {
			case fieldExpiresIn:
				b.expiresIn = &n
			case fieldWait:
				b.wait = &n
			default:
				b.lockDelay = &n
			}
		case fieldHolder:
			var s string
			// API.md §8: 1-128 bytes, no control characters; no unpaired
			// surrogate escape, as for secrets.
			if json.Unmarshal(v, &s) != nil || locklock.ValidateHolder(s) != nil || refLoneSurrogate(v) {
				return body{}, codeInvalidBody
			}
			b.holder = &s
		case fieldMetadata:
			var raw map[string]json.RawMessage
			if v[0] != '{' || json.Unmarshal(v, &raw) != nil {
				return body{}, codeInvalidBody
			}
			if n, ok := countKeys(v); !ok || n != len(raw) {
				return body{}, codeInvalidBody // a name given twice
			}
			md := map[string]string{}
			for name, value := range raw {
				var s string
				if value[0] != '"' || json.Unmarshal(value, &s) != nil || refLoneSurrogate(value) {
					return body{}, codeInvalidBody
				}
				md[name] = s
			}
			if locklock.ValidateMetadata(md) != nil {
				return body{}, codeInvalidBody
			}
			b.metadata = md
		}
	}
	return b, ""
}

// countKeys counts the top-level keys of a valid JSON object.
func countKeys(raw []byte) (int, bool) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return 0, false
	}
	n := 0
	for dec.More() {
		if _, err := dec.Token(); err != nil {
			return 0, false
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return 0, false
		}
		n++
	}
	return n, true
}

func showBody(b body) string {
	var parts []string
	if b.secret != nil {
		parts = append(parts, "secret="+strconv.Quote(*b.secret))
	}
	if b.expiresIn != nil {
		parts = append(parts, "expires_in="+strconv.FormatInt(*b.expiresIn, 10))
	}
	if b.wait != nil {
		parts = append(parts, "wait="+strconv.FormatInt(*b.wait, 10))
	}
	if b.holder != nil {
		parts = append(parts, "holder="+strconv.Quote(*b.holder))
	}
	if b.metadata != nil {
		var members []string
		for _, k := range slices.Sorted(maps.Keys(b.metadata)) {
			members = append(members, strconv.Quote(k)+":"+strconv.Quote(b.metadata[k]))
		}
		parts = append(parts, "metadata={"+strings.Join(members, ",")+"}")
	}
	if b.lockDelay != nil {
		parts = append(parts, "lock_delay="+strconv.FormatInt(*b.lockDelay, 10))
	}
	return "{" + strings.Join(parts, " ") + "}"
}
