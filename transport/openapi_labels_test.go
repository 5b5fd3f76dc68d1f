package transport

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
)

// oaLabelCases are TestOpenAPIResponses' cases for API.md §8: locks with a
// holder, metadata and a lock-delay, PATCH of them, and the answers during
// a lock-delay (409 lock_delayed, 404 with delayed_until). They run on an
// environment of their own whose clock the cases move.
func oaLabelCases(t *testing.T) []oaCase {
	clock := locklock.NewManualClock(time.Date(2026, 11, 26, 15, 4, 5, 123e6, time.UTC))
	env := newOAEnv(t, oaAnonymous, false, locklock.WithClock(clock))
	type kind struct {
		doc, path string
		auth      []string
	}
	kinds := []kind{
		{"/lock/uuid/{uuid}", "/lock/uuid/6ba7b810-9dad-11d1-80b4-00c04fd430c8", nil},
		{"/lock/key/{name}", "/lock/key/leader", []string{"Authorization", oaAcme}},
	}
	// shows checks that the answer's JSON has the member with the value.
	shows := func(path []string, want string) func(*testing.T, *httptest.ResponseRecorder) {
		return func(t *testing.T, rec *httptest.ResponseRecorder) {
			t.Helper()
			var v any
			if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
				t.Fatal(err)
			}
			for _, p := range path {
				m, _ := v.(map[string]any)
				v = m[p]
			}
			if got, _ := json.Marshal(v); string(got) != want {
				t.Errorf("%v is %s, want %s: %s", path, got, want, rec.Body)
			}
		}
	}
	var cases []oaCase
	add := func(name string, k kind, status int, q oaReq, check func(*testing.T, *httptest.ResponseRecorder)) {
		q.hdr = append(q.hdr, k.auth...)
		cases = append(cases, oaCase{name: name, env: env, req: q, status: status, path: k.doc, check: check})
	}
	const labelled = `{"secret":"s3cret","expires_in":5,"holder":"host-7:4242","metadata":{"addr":"10.0.0.7:8080"},"lock_delay":10}`
	for _, k := range kinds {
		add("acquire with holder, metadata, lock_delay", k, 201, oaReq{method: "POST", path: k.path, body: labelled}, shows([]string{"lock_delay"}, "10"))
		add("inspect a labelled lock", k, 200, oaReq{method: "GET", path: k.path}, shows([]string{"metadata", "addr"}, `"10.0.0.7:8080"`))
		add("publish new metadata", k, 200, oaReq{method: "PATCH", path: k.path, body: `{"secret":"s3cret","metadata":{"addr":"10.0.0.8:8080"}}`},
			shows([]string{"expires_in"}, "5"))
		add("new holder, metadata cleared", k, 200, oaReq{method: "PATCH", path: k.path, body: `{"secret":"s3cret","holder":"host-8:1","metadata":{}}`},
			shows([]string{"metadata"}, "null"))
		add("holder null", k, 400, oaReq{method: "PATCH", path: k.path, body: `{"secret":"s3cret","holder":null}`}, nil)
		add("lock_delay on PATCH", k, 400, oaReq{method: "PATCH", path: k.path, body: `{"secret":"s3cret","lock_delay":1}`}, nil)
		add("lock_delay over the maximum", k, 400, oaReq{method: "POST", path: k.path, body: `{"lock_delay":61}`}, nil)
		add("metadata not strings", k, 400, oaReq{method: "POST", path: k.path, body: `{"metadata":{"n":1}}`}, nil)
	}
	// The locks expire at 15:04:10.123; their lock-delay runs to
	// 15:04:20.123. The first case below moves the clock to 15:04:11.123.
	first := len(cases)
	delayedUntil := shows([]string{"delayed_until"}, `"2026-11-26T15:04:20.123Z"`)
	for _, k := range kinds {
		add("acquire during the lock-delay", k, 409, oaReq{method: "POST", path: k.path, body: `{"secret":"other"}`}, func(t *testing.T, rec *httptest.ResponseRecorder) {
			delayedUntil(t, rec)
			if got := rec.Header().Get("Retry-After"); got != "9" {
				t.Errorf("Retry-After %q, want 9", got)
			}
		})
		for _, m := range []string{"GET", "PATCH", "DELETE"} {
			add("during the lock-delay", k, 404, oaReq{method: m, path: k.path, body: `{"secret":"s3cret"}`}, delayedUntil)
		}
		add("during the lock-delay", k, 404, oaReq{method: "HEAD", path: k.path}, nil)
		add("the lost holder takes it back", k, 201, oaReq{method: "POST", path: k.path, body: `{"secret":"s3cret"}`}, nil)
	}
	cases[first].before = func() { clock.Advance(6 * time.Second) }
	return cases
}

// TestOpenAPILabelSchemas: the document's Holder and Metadata schemas say
// what the server's rules do (for text short enough that JSON Schema's
// count of characters and the server's count of bytes agree, and metadata
// under the 2 KiB the schema cannot express).
func TestOpenAPILabelSchemas(t *testing.T) {
	d := loadOpenAPI(t)
	holder, metadata := d.schema("#/components/schemas/Holder"), d.schema("#/components/schemas/Metadata")
	for _, s := range []string{
		"host-7:4242", "ü✓😀", " ", "a b", "\ufffd", "\u00a0", "a\u2028b", "", "a\tb", "a\nb", "\x00", "\x7f", "\u0085", "\u009f",
		strings.Repeat("h", locklock.MaxHolderLen), strings.Repeat("h", locklock.MaxHolderLen+1),
	} {
		if got, want := holder.Validate(s) == nil, locklock.ValidateHolder(s) == nil; got != want {
			t.Errorf("Holder schema on %q: valid=%v, the server says %v", s, got, want)
		}
	}
	many := func(n int) map[string]string {
		md := map[string]string{}
		for i := range n {
			md[fmt.Sprintf("m%02d", i)] = ""
		}
		return md
	}
	for _, md := range []map[string]string{
		{}, {"addr": "10.0.0.7:8080"}, {"a.b_c-D9": ""}, {"k": "ü✓"}, {"k": "a\tb"}, {"k": "\u0085"}, {"k": "\u00a0"},
		{"": "v"}, {"a b": "v"}, {"a:b": "v"}, {"ü": "v"}, {"a/b": "v"},
		{strings.Repeat("n", locklock.MaxMetadataNameLen): "v"}, {strings.Repeat("n", locklock.MaxMetadataNameLen+1): "v"},
		{"k": strings.Repeat("v", locklock.MaxMetadataValueLen)}, {"k": strings.Repeat("v", locklock.MaxMetadataValueLen+1)},
		many(locklock.MaxMetadataMembers), many(locklock.MaxMetadataMembers + 1),
	} {
		v := map[string]any{}
		for k, s := range md {
			v[k] = s
		}
		if got, want := metadata.Validate(v) == nil, locklock.ValidateMetadata(md) == nil; got != want {
			t.Errorf("Metadata schema on %q: valid=%v, the server says %v", md, got, want)
		}
	}
	for _, bad := range []any{nil, "k=v", []any{}, map[string]any{"k": json.Number("1")}, map[string]any{"k": nil}} {
		if metadata.Validate(bad) == nil {
			t.Errorf("Metadata schema accepts %v", bad)
		}
	}
}
