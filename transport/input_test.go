package transport

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/locklock/locklock/internal/abbrev"
	"github.com/locklock/locklock/locklock"
)

// wantDetail checks a problem's code and that its detail mentions text.
func wantDetail(status int, code, mention string) func(*testing.T, *env, *httptest.ResponseRecorder, []lockJSON) {
	return func(t *testing.T, _ *env, rec *httptest.ResponseRecorder, _ []lockJSON) {
		t.Helper()
		if p := checkRecProblem(t, rec, status, code); !strings.Contains(p.Detail, mention) {
			t.Errorf("detail %q does not mention %q", p.Detail, mention)
		}
	}
}

// TestQueryParameters: lock routes take no query parameters and /locks only
// its own, once each (API.md §7). The probe's request — a secret and an
// expiry in the query — must not give an open 30-day lock.
func TestQueryParameters(t *testing.T) {
	held := []req{post(uuidPath(u1), secretS1)}
	pro := []string{"Authorization", proKey}
	bad := func(name string, q req, code, mention string) tcase {
		return tcase{name: name, setup: held, req: q, status: http.StatusBadRequest, code: code,
			check: wantDetail(http.StatusBadRequest, code, mention)}
	}
	longName := strings.Repeat("n", 60000)
	runCases(t, []tcase{
		bad("the probe", post(uuidPath(u2)+"?secret=abc&expires_in=5", ""), codeUnknownField, `"secret"`),
		bad("first bad one is named", post(uuidPath(u2)+"?expires_in=5&secret=abc", ""), codeUnknownField, `"expires_in"`),
		bad("with a body", post(uuidPath(u2)+"?wait=1", `{"secret":"s2"}`), codeUnknownField, "wait"),
		bad("release", del(uuidPath(u1)+"?secret=s1", `{"secret":"s1"}`), codeUnknownField, "secret"),
		bad("refresh", patch(uuidPath(u1)+"?expires_in=1", `{"secret":"s1"}`), codeUnknownField, "expires_in"),
		bad("inspect", get(uuidPath(u1)+"?x=1"), codeUnknownField, `"x"`),
		bad("key route", post(keyPath("job")+"?secret=x", "", pro...), codeUnknownField, "secret"),
		bad("no value", post(uuidPath(u2)+"?secret", ""), codeUnknownField, "secret"),
		bad("empty name", post(uuidPath(u2)+"?=abc", ""), codeUnknownField, `""`),
		bad("escaped name", post(uuidPath(u2)+"?%73ecret=abc", ""), codeUnknownField, `"secret"`),
		bad("malformed name", post(uuidPath(u2)+"?%zz=1", ""), codeInvalidBody, "malformed"),
		bad("semicolon", post(uuidPath(u2)+"?a;b", ""), codeUnknownField, `"a;b"`),
		bad("repeated", post(uuidPath(u2)+"?secret=a&secret=a", ""), codeUnknownField, "secret"),
		bad("long name is cut", post(uuidPath(u2)+"?"+longName+"=1", ""), codeUnknownField, "nnnn…"),
		{name: "HEAD", setup: held, req: head(uuidPath(u1) + "?x"), status: http.StatusBadRequest},
		{name: "caller before query", req: post(keyPath("job")+"?x=1", ""), status: http.StatusUnauthorized, code: codeUnauthorized},
		{name: "name before query", req: post(uuidPath("nope")+"?x=1", ""), status: http.StatusBadRequest, code: codeInvalidUUID},
		{name: "? alone is no parameter", req: post(uuidPath(u2)+"?", `{"secret":"s2"}`), status: http.StatusCreated},
		{name: "empty pieces are no parameter", req: post(uuidPath(u2)+"?&&", ""), status: http.StatusCreated},
		{name: "GET ? alone", setup: held, req: get(uuidPath(u1) + "?"), status: http.StatusOK},

		bad("list: unknown", get("/locks?kind=uuid&secret=x", pro...), codeUnknownField, `"secret"`),
		bad("list: unknown first", get("/locks?x=1&kind=uuid&kind=key", pro...), codeUnknownField, `"x"`),
		bad("list: repeated first", get("/locks?kind=uuid&kind=key&x=1", pro...), codeInvalidBody, "more than once"),
		bad("list: repeated same value", get("/locks?kind=key&limit=1&limit=1", pro...), codeInvalidBody, "limit"),
		bad("list: semicolon in a value", get("/locks?kind=key;x=1", pro...), codeInvalidBody, "semicolon"),
		bad("list: malformed value", get("/locks?kind=key&prefix=%zz", pro...), codeInvalidBody, "prefix"),
		{name: "list: empty pieces", setup: held, req: get("/locks?&kind=uuid&", pro...), status: http.StatusOK},
		{name: "list: escaped names", setup: held, req: get("/locks?%6Bind=%75uid", pro...), status: http.StatusOK},
	})
}

// TestContentEncoding: a body the server would have to decode is refused,
// on every route that reads a body and even when the body is empty; only
// identity passes.
func TestContentEncoding(t *testing.T) {
	held := []req{post(uuidPath(u1), secretS1)}
	json := []string{"Content-Type", "application/json"}
	refused := func(name string, q req) tcase {
		return tcase{name: name, setup: held, req: q, status: http.StatusUnsupportedMediaType, code: codeUnsupportedMediaType,
			check: wantDetail(http.StatusUnsupportedMediaType, codeUnsupportedMediaType, "Content-Encoding")}
	}
	gzipped := "\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff\xaa\xae\x05\x04\x00\x00\xff\xff\x43\xbf\xa6\xa3\x02\x00\x00\x00" // gzip of {}
	runCases(t, []tcase{
		refused("gzip body", post(uuidPath(u2), gzipped, append(json, "Content-Encoding", "gzip")...)),
		refused("plain JSON labelled gzip", post(uuidPath(u2), `{"secret":"s2"}`, append(json, "Content-Encoding", "gzip")...)),
		refused("gzip, empty body", post(uuidPath(u2), "", "Content-Encoding", "gzip")),
		refused("identity then gzip", post(uuidPath(u2), `{}`, "Content-Encoding", "identity, gzip")),
		refused("two header lines", post(uuidPath(u2), `{}`, "Content-Encoding", "identity", "Content-Encoding", "br")),
		refused("release with header secret", del(uuidPath(u1), "", "Locklock-Secret", "s1", "Content-Encoding", "deflate")),
		refused("refresh", patch(uuidPath(u1), `{"secret":"s1"}`, "Content-Encoding", "x-gzip")),
		refused("unknown coding", post(uuidPath(u2), "", "Content-Encoding", "zstd")),
		{name: "identity", req: post(uuidPath(u2), `{"secret":"s2"}`, append(json, "Content-Encoding", "identity")...), status: http.StatusCreated},
		{name: "IDENTITY, any case", req: post(uuidPath(u2), `{}`, "Content-Encoding", "IDENTITY"), status: http.StatusCreated},
		{name: "empty list elements", req: post(uuidPath(u2), ``, "Content-Encoding", " , identity ,"), status: http.StatusCreated},
		{name: "empty header", req: post(uuidPath(u2), ``, "Content-Encoding", ""), status: http.StatusCreated},
		{name: "GET reads no body", setup: held, req: get(uuidPath(u1), "Content-Encoding", "gzip"), status: http.StatusOK},
	})
}

// TestSecretRulesOverHTTP: one rule for the body and the Locklock-Secret
// header (API.md §7), applied before anything changes.
func TestSecretRulesOverHTTP(t *testing.T) {
	held := []req{post(uuidPath(u1), secretS1)}
	bad := func(name string, q req, mention string) tcase {
		return tcase{name: name, setup: held, req: q, status: http.StatusBadRequest, code: codeInvalidBody,
			check: wantDetail(http.StatusBadRequest, codeInvalidBody, mention)}
	}
	releasedWith := func(hdr ...string) func(*testing.T, *env, *httptest.ResponseRecorder, []lockJSON) {
		return func(t *testing.T, e *env, rec *httptest.ResponseRecorder, _ []lockJSON) {
			t.Helper()
			if !lockBody(t, rec).Protected {
				t.Error("not protected")
			}
			if rec := e.do(del(uuidPath(u2), "", hdr...)); rec.Code != http.StatusOK {
				t.Errorf("release with %q: %d %s", hdr, rec.Code, rec.Body)
			}
		}
	}
	runCases(t, []tcase{
		// U+FFFD is an ordinary character, in a body (raw or escaped) and
		// in the header, and they are one secret.
		{name: "U+FFFD in the body, released by header", req: post(uuidPath(u2), "{\"secret\":\"a\ufffd\"}"), status: http.StatusCreated,
			check: releasedWith("Locklock-Secret", "a\ufffd")},
		{name: "escaped U+FFFD in the body, released by header", req: post(uuidPath(u2), `{"secret":"a\ufffd"}`), status: http.StatusCreated,
			check: releasedWith("Locklock-Secret", "a\ufffd")},
		{name: "U+FFFD in the header", req: post(uuidPath(u2), "", "Locklock-Secret", "\ufffd"), status: http.StatusCreated,
			check: releasedWith("Locklock-Secret", "\ufffd")},
		{name: "a surrogate pair is a character", req: post(uuidPath(u2), `{"secret":"\ud83d\ude00"}`), status: http.StatusCreated,
			check: releasedWith("Locklock-Secret", "😀")},
		// …but an escaped lone surrogate, which decodes to U+FFFD too, is not.
		bad("lone surrogate escape", post(uuidPath(u2), `{"secret":"a\ud800"}`), "surrogate"),
		bad("lone surrogate escape against a U+FFFD lock", del(uuidPath(u1), `{"secret":"\udfff"}`), "surrogate"),
		// Control characters (Cc), in both.
		bad("tab in the header", post(uuidPath(u2), "", "Locklock-Secret", "a\tb"), secretHeader),
		bad("C1 control in the header", post(uuidPath(u2), "", "Locklock-Secret", "a\u0085"), "control"),
		bad("not UTF-8 in the header", post(uuidPath(u2), "", "Locklock-Secret", "a\xff"), "UTF-8"),
		bad("257 bytes in the header", post(uuidPath(u2), "", "Locklock-Secret", strings.Repeat("s", 257)), "256"),
		bad("DEL in the body", post(uuidPath(u2), `{"secret":"a\u007f"}`), "control"),
		bad("control character on release", del(uuidPath(u1), `{"secret":"s1\n"}`), "control"),
		// A new secret has no space or tab at either end: HTTP would trim
		// them from the header, so only a body could release the lock.
		bad("leading space", post(uuidPath(u2), `{"secret":" s2"}`), "space"),
		bad("trailing space", post(uuidPath(u2), `{"secret":"s2 "}`), "space"),
		bad("only spaces", post(uuidPath(u2), `{"secret":"   "}`), "space"),
		bad("retry of a held lock too", post(uuidPath(u1), `{"secret":" s1"}`), "space"),
		{name: "inner space is fine", req: post(uuidPath(u2), `{"secret":"s 2"}`), status: http.StatusCreated,
			check: releasedWith("Locklock-Secret", "s 2")},
		// Releases and refreshes compare as given: a space makes it wrong.
		{name: "release with a trailing space", setup: held, req: del(uuidPath(u1), `{"secret":"s1 "}`), status: http.StatusForbidden, code: codeSecretMismatch},
		{name: "refresh with a leading space", setup: held, req: patch(uuidPath(u1), `{"secret":" s1"}`), status: http.StatusForbidden, code: codeSecretMismatch},
	})
}

// TestOldSpacedSecretReleasedByBody: a lock whose secret ends in a space
// (taken before the rule) is still released and refreshed with its secret
// as given, through a body; an acquire with it is refused up front.
func TestOldSpacedSecretReleasedByBody(t *testing.T) {
	e := newEnv(t)
	id, err := locklock.NewID(locklock.DefaultNamespace, locklock.KindUUID, u1)
	if err != nil {
		t.Fatal(err)
	}
	old := locklock.Lock{ID: id, AcquiredAt: start, ExpiresAt: start.Add(time.Hour), Token: 7, Guard: locklock.NewGuard("old ")}
	if _, err := e.engine.TryAcquire(context.Background(), old, start); err != nil {
		t.Fatal(err)
	}
	before := e.snapshot()
	checkRecProblem(t, e.do(post(uuidPath(u1), `{"secret":"old "}`)), http.StatusBadRequest, codeInvalidBody)
	checkRecProblem(t, e.do(del(uuidPath(u1), "", secretHeader, "old")), http.StatusForbidden, codeSecretMismatch)
	e.assertUnchanged(before)
	e.must(patch(uuidPath(u1), `{"secret":"old ","expires_in":60}`))
	e.must(del(uuidPath(u1), `{"secret":"old "}`))
}

// TestEchoedInputIsCut: a problem's detail and the log lines quote client
// input only as a short prefix (API.md §7), whatever its length: the probe
// got a 60,000-byte path back in a 60 KB body, and a 50,000-character
// method in a 50 KB log line.
func TestEchoedInputIsCut(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := newEnv(t, WithLogger(log))
	h := Instrument(e.h, log, func(r *http.Request) string { return Route(r.URL.Path) }, nil)
	longPath := "/" + strings.Repeat("p", 60000)
	longMethod := strings.Repeat("M", 50000)
	long := strings.Repeat("x", 60000)
	for _, q := range []req{
		{method: http.MethodGet, path: longPath},
		{method: longMethod, path: uuidPath(u1)},
		{method: longMethod, path: longPath},
		{method: http.MethodGet, path: "/" + strings.Repeat("%0A", 20000)},
		post(uuidPath(u1), `{}`, "Content-Type", long),
		post(uuidPath(u1), `{}`, "Content-Encoding", long),
		post(uuidPath(u1)+"?"+long+"=1", ""),
		post(uuidPath(u1), `{"`+strings.Repeat("f", 8000)+`":1}`),
		post(uuidPath(u1), `{"expires_in":1`+strings.Repeat("0", 8000)+`}`),
		post(keyPath(long), "", "Authorization", proKey),
		post(uuidPath(long), ""),
		get("/locks?kind=key&prefix="+long, "Authorization", proKey),
		get("/locks?kind=key&after=%00"+strings.Repeat("a", 300), "Authorization", proKey),
		{method: http.MethodGet, path: uuidPath(u1), hdr: []string{RequestIDHeader, long}},
	} {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodGet, "http://locklock.test"+q.path, strings.NewReader(q.body))
		r.Method = q.method
		for i := 0; i+1 < len(q.hdr); i += 2 {
			r.Header.Add(q.hdr[i], q.hdr[i+1])
		}
		h.ServeHTTP(rec, r)
		if rec.Code < 400 {
			t.Errorf("%.20s %.60s: %d, want a problem", q.method, q.path, rec.Code)
		}
		if n := rec.Body.Len(); n > 400 {
			t.Errorf("%.20s %.60s: a %d-byte problem: %.300s…", q.method, q.path, n, rec.Body)
		}
		if id := rec.Header().Get(RequestIDHeader); len(id) > abbrev.Len {
			t.Errorf("a %d-byte request id echoed", len(id))
		}
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) < 14 {
		t.Fatalf("%d log lines for 14 requests:\n%s", len(lines), logs.String())
	}
	for _, line := range lines {
		if len(line) > 400 {
			t.Errorf("a %d-byte log line: %.300s…", len(line), line)
		}
	}
	// The cut is visible, not silent.
	if !strings.Contains(logs.String(), "MMMM…") || !strings.Contains(logs.String(), "pppp…") {
		t.Errorf("the logs show no cut method or path:\n%s", logs.String())
	}
}

// TestOpenAPISecretSchemas: the document's Secret and NewSecret schemas
// say what the server's secret rules do (for secrets short enough that
// JSON Schema's count of characters and the server's count of bytes agree).
func TestOpenAPISecretSchemas(t *testing.T) {
	d := loadOpenAPI(t)
	secret, newSecret := d.schema("#/components/schemas/Secret"), d.schema("#/components/schemas/NewSecret")
	for _, s := range []string{
		"s3cret", "a b", "\ufffd", "ü✓😀", "\u00a0", "a\u2028b", " s", "s ", " ", "\ts", "a\tb", "a\nb",
		"\x00", "\x1f", "\x7f", "\u0085", "\u009f", "\u00a0 ", "x", "",
	} {
		wantOld, wantNew := locklock.ValidateSecret(s) == nil, locklock.ValidateNewSecret(s) == nil
		if got := secret.Validate(s) == nil; got != wantOld {
			t.Errorf("Secret schema on %q: valid=%v, the server says %v", s, got, wantOld)
		}
		if got := newSecret.Validate(s) == nil; got != wantNew {
			t.Errorf("NewSecret schema on %q: valid=%v, the server says %v", s, got, wantNew)
		}
	}
}
