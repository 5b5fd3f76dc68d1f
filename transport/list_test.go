package transport

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestList(t *testing.T) {
	pro := []string{"Authorization", proKey}
	setup := []req{
		post(keyPath("a0"), `{"expires_in":5}`, pro...), // expired by the time we list
		post(keyPath("b1"), "", pro...),
		post(keyPath("a2"), secretS1, pro...),
		post(keyPath("a1"), "", pro...),
		post(keyPath("a3"), "", pro...),
		post(uuidPath(u1), "", pro...),
		post(uuidPath(u2), ""), // public: never listed for acme
		post(keyPath("x1"), "", "Authorization", proKey),
	}
	list := func(query string, hdr ...string) req { return get("/locks"+query, hdr...) }
	page := func(wantNames []string, wantNext string) func(*testing.T, *env, *httptest.ResponseRecorder, []lockJSON) {
		return func(t *testing.T, _ *env, rec *httptest.ResponseRecorder, _ []lockJSON) {
			t.Helper()
			var got listJSON
			decodeStrict(t, rec.Body.Bytes(), &got)
			var names []string
			for _, l := range got.Locks {
				names = append(names, l.Name)
				if l.Namespace != "acme" && l.Namespace != "devco" {
					t.Errorf("foreign lock %+v", l)
				}
			}
			if !slices.Equal(names, wantNames) || got.Next != wantNext {
				t.Errorf("names %v next %q, want %v next %q", names, got.Next, wantNames, wantNext)
			}
			if got.Locks == nil || (wantNext == "") == strings.Contains(rec.Body.String(), `"next"`) {
				t.Errorf("body %s: locks must be an array, next present only when there is more", rec.Body)
			}
		}
	}
	ok := func(name, query string, hdr []string, names []string, next string) tcase {
		return tcase{name: name, setup: setup, advance: 10 * time.Second, req: list(query, hdr...), status: http.StatusOK, check: page(names, next)}
	}
	bad := func(query, code, mention string) tcase {
		return tcase{
			name: "bad " + query, setup: setup, req: list(query, pro...), status: http.StatusBadRequest, code: code,
			check: func(t *testing.T, _ *env, rec *httptest.ResponseRecorder, _ []lockJSON) {
				if p := checkRecProblem(t, rec, http.StatusBadRequest, code); !strings.Contains(p.Detail, mention) {
					t.Errorf("detail %q does not mention %q", p.Detail, mention)
				}
			},
		}
	}
	runCases(t, []tcase{
		ok("all key locks", "?kind=key", pro, []string{"a1", "a2", "a3", "b1", "x1"}, ""),
		ok("first page", "?kind=key&limit=2", pro, []string{"a1", "a2"}, "a2"),
		ok("second page", "?kind=key&limit=2&after=a2", pro, []string{"a3", "b1"}, "b1"),
		ok("last page", "?kind=key&limit=2&after=b1", pro, []string{"x1"}, ""),
		ok("exactly the rest", "?kind=key&limit=3&after=a2", pro, []string{"a3", "b1", "x1"}, ""),
		ok("prefix", "?kind=key&prefix=a", pro, []string{"a1", "a2", "a3"}, ""),
		ok("prefix and page", "?kind=key&prefix=a&limit=1&after=a1", pro, []string{"a2"}, "a2"),
		ok("no match", "?kind=key&prefix=zz", pro, nil, ""),
		ok("uuid locks", "?kind=uuid", pro, []string{u1}, ""),
		ok("uuid prefix in upper case", "?kind=uuid&prefix="+strings.ToUpper(u1[:8]), pro, []string{u1}, ""),
		ok("plan without custom names", "?kind=key", []string{"Authorization", devKey}, nil, ""),
		{name: "HEAD", setup: setup, req: head("/locks?kind=key", pro...), status: http.StatusOK},
		{name: "anonymous", setup: setup, req: list("?kind=uuid"), status: http.StatusUnauthorized, code: codeUnauthorized},
		{name: "anonymous, bad query", setup: setup, req: list("?kind=nope&limit=0"), status: http.StatusUnauthorized, code: codeUnauthorized},
		{name: "unknown key", setup: setup, req: list("?kind=uuid", "Authorization", badKey), status: http.StatusUnauthorized, code: codeUnauthorized},
		bad("", codeInvalidBody, "kind"),
		bad("?kind=", codeInvalidBody, "kind"),
		bad("?kind=KEY", codeInvalidBody, "kind"),
		bad("?kind=locks", codeInvalidBody, "kind"),
		bad("?kind=key&kind=uuid", codeInvalidBody, "kind"),
		bad("?kind=key&limit=0", codeInvalidBody, "limit"),
		bad("?kind=key&limit=", codeInvalidBody, "limit"),
		bad("?kind=key&limit=-1", codeInvalidBody, "limit"),
		bad("?kind=key&limit=abc", codeInvalidBody, "limit"),
		bad("?kind=key&limit=1e2", codeInvalidBody, "limit"),
		bad("?kind=key&limit=1001", codeInvalidBody, "limit"),
		bad("?kind=key&limit=99999999999999999999", codeInvalidBody, "limit"),
		bad("?kind=key&prefix=a/b", codeInvalidName, "prefix"),
		bad("?kind=key&prefix=a%20b", codeInvalidName, "prefix"),
		bad("?kind=key&prefix="+strings.Repeat("x", 256), codeInvalidName, "prefix"),
		bad("?kind=key&after=a/b", codeInvalidBody, "after"),
		bad("?kind=key&foo=1", codeUnknownField, "foo"),
		bad("?kind=key&Limit=1", codeUnknownField, "Limit"),
		bad("?kind=key&%zz", codeInvalidBody, "query"),
	})
}
