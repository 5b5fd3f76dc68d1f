package transport

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestBodyRejected(t *testing.T) {
	// u1 is held with secret s1, u2 is free: a body wrongly accepted would
	// acquire u2, or release or refresh u1, and the snapshot would show it.
	held := []req{post(uuidPath(u1), secretS1)}
	long := strings.Repeat("a", 257)
	type bodyCase struct {
		body, code, mention string
	}
	common := []bodyCase{
		{`null`, codeInvalidBody, "object"},
		{`[]`, codeInvalidBody, "object"},
		{`["secret","s1"]`, codeInvalidBody, "object"},
		{`"s1"`, codeInvalidBody, "object"},
		{`1`, codeInvalidBody, "object"},
		{`true`, codeInvalidBody, "object"},
		{`{`, codeInvalidBody, "JSON"},
		{`{"secret":"s1"`, codeInvalidBody, "JSON"},
		{`{"secret":"s1",}`, codeInvalidBody, "JSON"},
		{`{"secret" "s1"}`, codeInvalidBody, "JSON"},
		{`{secret:"s1"}`, codeInvalidBody, "JSON"},
		{`{"secret":"s1"} {}`, codeInvalidBody, "after"},
		{`{"secret":"s1"}x`, codeInvalidBody, "after"},
		{`{"secret":"s1"}]`, codeInvalidBody, "after"},
		{`{"secret":"s1","secret":"s1"}`, codeInvalidBody, "twice"},
		{`{"secret":null}`, codeInvalidBody, "secret"},
		{`{"secret":1}`, codeInvalidBody, "secret"},
		{`{"secret":true}`, codeInvalidBody, "secret"},
		{`{"secret":["s1"]}`, codeInvalidBody, "secret"},
		{`{"secret":{}}`, codeInvalidBody, "secret"},
		{`{"secret":""}`, codeInvalidBody, "secret"},
		{`{"secret":"` + long + `"}`, codeInvalidBody, "secret"},
		{"{\"secret\":\"\xff\"}", codeInvalidBody, "UTF-8"},
		{`{"secret":"\ud800"}`, codeInvalidBody, "surrogate"},
		{`{"secret":"a\udfff"}`, codeInvalidBody, "surrogate"},
		{`{"secret":"\ud800\u0041"}`, codeInvalidBody, "surrogate"},
		{`{"secret":"\ude00\ud83d"}`, codeInvalidBody, "surrogate"},
		{`{"secret":"\ud83dx"}`, codeInvalidBody, "surrogate"},
		{`{"secret":"\u0000"}`, codeInvalidBody, "control"},
		{`{"secret":"a\tb"}`, codeInvalidBody, "control"},
		{`{"secret":"a\nb"}`, codeInvalidBody, "control"},
		{`{"secret":"\u007f"}`, codeInvalidBody, "control"},
		{"{\"secret\":\"\u0085\"}", codeInvalidBody, "control"},
		{"\u00a0", codeInvalidBody, "object"},
		{"\u2028", codeInvalidBody, "object"},
		{"\u3000", codeInvalidBody, "object"},
		{"\v", codeInvalidBody, "object"},
		{"\f", codeInvalidBody, "object"},
		{"\u0085", codeInvalidBody, "object"},
		{"\ufeff", codeInvalidBody, "object"},
		{`{"Secret":"s1"}`, codeUnknownField, "Secret"},
		{`{"SECRET":"s1"}`, codeUnknownField, "SECRET"},
		{`{"secret":"s1","":1}`, codeUnknownField, `""`},
		{`{"secret":"s1","fencing_token":1}`, codeUnknownField, "fencing_token"},
	}
	withTTL := []bodyCase{
		{`{"secret":"s1","expire_in":5}`, codeUnknownField, "expire_in"},
		{`{"secret":"s1","Expires_In":5}`, codeUnknownField, "Expires_In"},
		{`{"secret":"s1","expires_in":null}`, codeInvalidBody, "expires_in"},
		{`{"secret":"s1","expires_in":"5"}`, codeInvalidBody, "expires_in"},
		{`{"secret":"s1","expires_in":true}`, codeInvalidBody, "expires_in"},
		{`{"secret":"s1","expires_in":1.5}`, codeInvalidBody, "expires_in"},
		{`{"secret":"s1","expires_in":5.0}`, codeInvalidBody, "expires_in"},
		{`{"secret":"s1","expires_in":1e3}`, codeInvalidBody, "expires_in"},
		{`{"secret":"s1","expires_in":0}`, codeInvalidBody, "expires_in"},
		{`{"secret":"s1","expires_in":-0}`, codeInvalidBody, "expires_in"},
		{`{"secret":"s1","expires_in":-1}`, codeInvalidBody, "expires_in"},
		{`{"secret":"s1","expires_in":31536001}`, codeInvalidBody, "expires_in"},
		{`{"secret":"s1","expires_in":9223372036}`, codeInvalidBody, "expires_in"},
		{`{"secret":"s1","expires_in":9223372036854775807}`, codeInvalidBody, "expires_in"},
		{`{"secret":"s1","expires_in":99999999999999999999}`, codeInvalidBody, "expires_in"},
		{`{"secret":"s1","expires_in":-99999999999999999999}`, codeInvalidBody, "expires_in"},
	}
	waits := []bodyCase{
		{`{"wait":null}`, codeInvalidBody, "wait"},
		{`{"wait":"1"}`, codeInvalidBody, "wait"},
		{`{"wait":1.5}`, codeInvalidBody, "wait"},
		{`{"wait":-1}`, codeInvalidBody, "wait"},
		{`{"wait":61}`, codeInvalidBody, "wait"},
		{`{"wait":9223372036854775807}`, codeInvalidBody, "wait"},
		{`{"Wait":1}`, codeUnknownField, "Wait"},
	}

	var cases []tcase
	add := func(method, path string, bodies ...[]bodyCase) {
		for _, list := range bodies {
			for _, bc := range list {
				mention := bc.mention
				cases = append(cases, tcase{
					name:  method + " " + bc.body,
					setup: held,
					req: req{method: method, path: path, body: bc.body,
						hdr: []string{"Content-Type", "application/json"}},
					status: http.StatusBadRequest, code: bc.code,
					check: func(t *testing.T, _ *env, rec *httptest.ResponseRecorder, _ []lockJSON) {
						if p := checkRecProblem(t, rec, http.StatusBadRequest, bc.code); !strings.Contains(p.Detail, mention) {
							t.Errorf("detail %q does not mention %q", p.Detail, mention)
						}
					},
				})
			}
		}
	}
	add(http.MethodPost, uuidPath(u2), common, withTTL, waits)
	add(http.MethodPatch, uuidPath(u1), common, withTTL, []bodyCase{
		{`{"secret":"s1","wait":1}`, codeUnknownField, "wait"},
	})
	add(http.MethodDelete, uuidPath(u1), common, []bodyCase{
		{`{"secret":"s1","expires_in":5}`, codeUnknownField, "expires_in"},
		{`{"secret":"s1","wait":0}`, codeUnknownField, "wait"},
	})
	runCases(t, cases)
}

func TestBodyLimitsAndTypes(t *testing.T) {
	held := []req{post(uuidPath(u1), secretS1)}
	// exactly pads a valid body with spaces to n bytes.
	exactly := func(n int, body string) string { return body + strings.Repeat(" ", n-len(body)) }
	json := []string{"Content-Type", "application/json"}
	runCases(t, []tcase{
		{name: "8 KiB is fine", req: post(uuidPath(u2), exactly(maxBody, `{"secret":"s2"}`), json...), status: http.StatusCreated},
		{name: "over 8 KiB", setup: held, req: post(uuidPath(u2), exactly(maxBody+1, `{"secret":"s2"}`), json...), status: http.StatusRequestEntityTooLarge, code: codeBodyTooLarge},
		{name: "far over 8 KiB", setup: held, req: del(uuidPath(u1), `{"secret":"s1","x":"`+strings.Repeat("x", 100<<10)+`"}`, json...), status: http.StatusRequestEntityTooLarge, code: codeBodyTooLarge},
		{name: "over 8 KiB, PATCH", setup: held, req: patch(uuidPath(u1), exactly(maxBody+1, `{"secret":"s1"}`)), status: http.StatusRequestEntityTooLarge, code: codeBodyTooLarge},
		{name: "text/plain", setup: held, req: post(uuidPath(u2), `{"secret":"s2"}`, "Content-Type", "text/plain"), status: http.StatusUnsupportedMediaType, code: codeUnsupportedMediaType},
		{name: "form", setup: held, req: del(uuidPath(u1), `{"secret":"s1"}`, "Content-Type", "application/x-www-form-urlencoded"), status: http.StatusUnsupportedMediaType, code: codeUnsupportedMediaType},
		{name: "json suffix", setup: held, req: patch(uuidPath(u1), `{"secret":"s1"}`, "Content-Type", "application/problem+json"), status: http.StatusUnsupportedMediaType, code: codeUnsupportedMediaType},
		{name: "malformed type", setup: held, req: post(uuidPath(u2), `{"secret":"s2"}`, "Content-Type", "application/json;;"), status: http.StatusUnsupportedMediaType, code: codeUnsupportedMediaType},
		{name: "no Content-Type", req: post(uuidPath(u2), `{"secret":"s2"}`), status: http.StatusCreated},
		{name: "upper-case type", req: post(uuidPath(u2), `{"secret":"s2"}`, "Content-Type", "Application/JSON"), status: http.StatusCreated},
		{name: "empty body, any type", setup: held, req: del(uuidPath(u1), "", "Content-Type", "text/plain", "Locklock-Secret", "s1"), status: http.StatusOK},
		{name: "blank body", req: post(uuidPath(u2), " \r\n\t", "Content-Type", "text/plain"), status: http.StatusCreated},
	})
}
