package transport

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// oaSemaphoreCases are TestOpenAPIResponses' cases for semaphores (API.md
// §10): every documented status of every semaphore, slot and listing
// operation, in the environments of the lock cases. Slot ids are random:
// the acquires record theirs and later cases fill them in.
func oaSemaphoreCases(main, limited, down *oaEnv) []oaCase {
	type kind struct {
		doc, slotDoc string
		path         func(name string) string
		a, b, bad    string
		auth         []string
	}
	kinds := []kind{
		{"/semaphore/uuid/{uuid}", "/semaphore/uuid/{uuid}/{slot}", func(n string) string { return "/semaphore/uuid/" + n },
			"6ba7b811-9dad-11d1-80b4-00c04fd430c8", "6BA7B812-9DAD-11D1-80B4-00C04FD430C8", "not-a-uuid", nil},
		{"/semaphore/key/{name}", "/semaphore/key/{name}/{slot}", func(n string) string { return "/semaphore/key/" + n },
			"render-farm", "render:farm~2", "bad*name", []string{"Authorization", oaAcme}},
	}
	with := func(base []string, kv ...string) []string { return append(slices.Clone(base), kv...) }
	bigBody := `{"limit":1,"holder":"` + strings.Repeat("x", maxBody) + `"}`
	const missingSlot = "Wq3x9Zt0Rr6uKp1LmN2b4A"

	var cases []oaCase
	add := func(env *oaEnv, name, docPath string, status int, q oaReq) {
		cases = append(cases, oaCase{name: name, env: env, req: q, status: status, path: docPath})
	}
	// record keeps the slot id of an acquire's answer.
	record := func(into *string) func(*testing.T, *httptest.ResponseRecorder) {
		return func(t *testing.T, rec *httptest.ResponseRecorder) {
			var sl slotJSON
			decodeStrict(t, rec.Body.Bytes(), &sl)
			*into = sl.Slot
		}
	}
	// slotCase is a request to a slot whose id an earlier case recorded.
	slotCase := func(env *oaEnv, name, docPath string, status int, q oaReq, id *string) {
		base := q.path
		cases = append(cases, oaCase{name: name, env: env, req: q, status: status, path: docPath,
			fill: func(q *oaReq) { q.path = base + "/" + *id }})
	}
	wantHeaders := func(names ...string) func(*testing.T, *httptest.ResponseRecorder) {
		return func(t *testing.T, rec *httptest.ResponseRecorder) {
			for _, n := range names {
				if rec.Header().Get(n) == "" {
					t.Errorf("no %s header", n)
				}
			}
		}
	}

	// The limited environment's one allowed request was spent by the
	// lock cases: everything here is over the rate.
	for _, k := range kinds {
		a, b := k.path(k.a), k.path(k.b)
		var protected, open string
		const take = `{"limit":2,"secret":"s3cret","expires_in":60,"holder":"worker-7","metadata":{"role":"render"}}`
		cases = append(cases,
			oaCase{name: "acquire", env: main, status: 201, path: k.doc, req: oaReq{method: "POST", path: a, body: take, hdr: k.auth}, check: record(&protected)},
			oaCase{name: "acquire again with the secret", env: main, status: 200, path: k.doc, req: oaReq{method: "POST", path: a, body: take, hdr: k.auth}},
			oaCase{name: "does not fit", env: main, status: 409, path: k.doc, req: oaReq{method: "POST", path: a, body: `{"limit":2,"weight":2}`, hdr: k.auth}, check: wantHeaders("Retry-After")},
			oaCase{name: "another limit", env: main, status: 409, path: k.doc, req: oaReq{method: "POST", path: a, body: `{"limit":3}`, hdr: k.auth}},
			oaCase{name: "acquire unprotected", env: main, status: 201, path: k.doc, req: oaReq{method: "POST", path: a, body: `{"limit":2}`, hdr: k.auth}, check: record(&open)},
			oaCase{name: "full page", env: main, status: 200, path: k.doc, req: oaReq{method: "GET", path: a + "?limit=1", hdr: k.auth},
				check: func(t *testing.T, rec *httptest.ResponseRecorder) {
					var sem semaphoreJSON
					decodeStrict(t, rec.Body.Bytes(), &sem)
					if len(sem.Slots) != 1 || sem.Next == "" || sem.InUse != 2 || sem.Limit != 2 {
						t.Errorf("page %+v, want one slot of two, a next, in_use 2", sem)
					}
				}},
		)
		add(main, "inspect", k.doc, 200, oaReq{method: "GET", path: a, hdr: k.auth})
		add(main, "inspect head", k.doc, 200, oaReq{method: "HEAD", path: a + "?limit=5&after=0", hdr: k.auth})
		add(main, "never taken", k.doc, 404, oaReq{method: "GET", path: b, hdr: k.auth})
		add(main, "never taken, head", k.doc, 404, oaReq{method: "HEAD", path: b, hdr: k.auth})
		for _, m := range []string{"GET", "HEAD"} {
			add(main, "limit 0", k.doc, 400, oaReq{method: m, path: a + "?limit=0", hdr: k.auth})
			add(main, "after not a token", k.doc, 400, oaReq{method: m, path: a + "?after=x", hdr: k.auth})
		}
		add(main, "query parameter on POST", k.doc, 400, oaReq{method: "POST", path: a + "?limit=2", body: `{"limit":2}`, hdr: k.auth})
		add(main, "no limit", k.doc, 400, oaReq{method: "POST", path: b, hdr: k.auth})
		add(main, "lock_delay", k.doc, 400, oaReq{method: "POST", path: b, body: `{"limit":2,"lock_delay":1}`, hdr: k.auth})
		add(main, "weight over the limit", k.doc, 400, oaReq{method: "POST", path: b, body: `{"limit":2,"weight":3}`, hdr: k.auth})
		add(main, "wait over the maximum", k.doc, 400, oaReq{method: "POST", path: b, body: `{"limit":2,"wait":61}`, hdr: k.auth})

		slotCase(main, "inspect slot", k.slotDoc, 200, oaReq{method: "GET", path: a, hdr: k.auth}, &protected)
		slotCase(main, "inspect slot head", k.slotDoc, 200, oaReq{method: "HEAD", path: a, hdr: k.auth}, &protected)
		slotCase(main, "refresh without secret", k.slotDoc, 403, oaReq{method: "PATCH", path: a, body: `{"expires_in":300}`, hdr: k.auth}, &protected)
		slotCase(main, "refresh", k.slotDoc, 200, oaReq{method: "PATCH", path: a, body: `{"expires_in":300,"holder":"worker-8"}`, hdr: with(k.auth, "Locklock-Secret", "s3cret")}, &protected)
		slotCase(main, "refresh unprotected, no body", k.slotDoc, 200, oaReq{method: "PATCH", path: a, hdr: k.auth}, &open)
		slotCase(main, "lock_delay on PATCH", k.slotDoc, 400, oaReq{method: "PATCH", path: a, body: `{"lock_delay":1}`, hdr: k.auth}, &open)
		slotCase(main, "release without secret", k.slotDoc, 403, oaReq{method: "DELETE", path: a, hdr: k.auth}, &protected)
		slotCase(main, "release", k.slotDoc, 200, oaReq{method: "DELETE", path: a, body: `{"secret":"s3cret"}`, hdr: k.auth}, &protected)
		slotCase(main, "release by header", k.slotDoc, 200, oaReq{method: "DELETE", path: a, hdr: with(k.auth, "Locklock-Secret", "anything")}, &open)
		for _, m := range []string{"DELETE", "GET", "HEAD", "PATCH"} {
			slotCase(main, "released slot", k.slotDoc, 404, oaReq{method: m, path: a, hdr: k.auth}, &protected)
			add(main, "malformed slot id", k.slotDoc, 404, oaReq{method: m, path: a + "/nope", hdr: k.auth})
			add(main, "query parameter", k.slotDoc, 400, oaReq{method: m, path: a + "/" + missingSlot + "?secret=x", hdr: k.auth})
		}
		add(main, "semaphore gone with its last slot", k.doc, 404, oaReq{method: "GET", path: a, hdr: k.auth})

		routes := []struct {
			doc, path, bad string
			methods        []string
		}{
			{k.doc, a, k.path(k.bad), []string{"POST", "GET", "HEAD"}},
			{k.slotDoc, a + "/" + missingSlot, k.path(k.bad) + "/" + missingSlot, []string{"DELETE", "GET", "HEAD", "PATCH"}},
		}
		for _, r := range routes {
			for _, m := range r.methods {
				body := ""
				if m == "POST" {
					body = `{"limit":1}`
				}
				add(main, "bad name", r.doc, 400, oaReq{method: m, path: r.bad, body: body, hdr: k.auth})
				add(main, "malformed Authorization", r.doc, 401, oaReq{method: m, path: r.path, body: body, hdr: []string{"Authorization", "Basic bm9wZQ=="}})
				add(main, "key of another namespace on a custom subdomain", r.doc, 403, oaReq{method: m, path: r.path, body: body, hdr: []string{"Host", oaSubHost, "Authorization", oaGlobex}})
				add(main, "authenticator bug", r.doc, 500, oaReq{method: m, path: r.path, body: body, hdr: []string{"Authorization", oaBroken}})
				add(down, "storage down", r.doc, 503, oaReq{method: m, path: r.path, body: body, hdr: []string{"Authorization", oaAcme}})
				add(limited, "anonymous over the rate", r.doc, 429, oaReq{method: m, path: r.path, body: body})
				if m == "POST" || m == "PATCH" || m == "DELETE" {
					add(main, "body too large", r.doc, 413, oaReq{method: m, path: r.path, body: bigBody, hdr: k.auth})
					add(main, "form body", r.doc, 415, oaReq{method: m, path: r.path, body: "limit=1", hdr: with(k.auth, "Content-Type", "application/x-www-form-urlencoded")})
					add(main, "unknown field", r.doc, 400, oaReq{method: m, path: r.path, body: `{"Secret":"x"}`, hdr: k.auth})
					add(main, "content coding", r.doc, 415, oaReq{method: m, path: r.path, body: `{}`, hdr: with(k.auth, "Content-Encoding", "gzip")})
				}
			}
		}
	}
	key := kinds[1]
	add(main, "anonymous, custom name", key.doc, 401, oaReq{method: "POST", path: key.path("x"), body: `{"limit":1}`})
	add(main, "developer plan, custom name", key.doc, 403, oaReq{method: "POST", path: key.path("x"), body: `{"limit":1}`, hdr: []string{"Authorization", oaDev}})

	acme := []string{"Authorization", oaAcme}
	add(main, "setup", key.doc, 201, oaReq{method: "POST", path: key.path("pool-1"), body: `{"limit":3}`, hdr: acme})
	add(main, "setup", key.doc, 201, oaReq{method: "POST", path: key.path("pool-2"), body: `{"limit":5,"weight":2}`, hdr: acme})
	for _, m := range []string{http.MethodGet, http.MethodHead} {
		add(main, "list", "/semaphores", 200, oaReq{method: m, path: "/semaphores?kind=key&prefix=pool-", hdr: acme})
		add(main, "list without kind", "/semaphores", 400, oaReq{method: m, path: "/semaphores", hdr: acme})
		add(main, "list anonymous", "/semaphores", 401, oaReq{method: m, path: "/semaphores?kind=uuid"})
		add(main, "list on another namespace's subdomain", "/semaphores", 403, oaReq{method: m, path: "/semaphores?kind=uuid", hdr: []string{"Host", oaSubHost, "Authorization", oaGlobex}})
		add(main, "list, authenticator bug", "/semaphores", 500, oaReq{method: m, path: "/semaphores?kind=uuid", hdr: []string{"Authorization", oaBroken}})
		add(limited, "list over the rate", "/semaphores", 429, oaReq{method: m, path: "/semaphores?kind=uuid"})
		add(down, "list, storage down", "/semaphores", 503, oaReq{method: m, path: "/semaphores?kind=uuid", hdr: acme})
	}
	cases = append(cases, oaCase{
		name: "list, first page", env: main, status: 200, path: "/semaphores",
		req: oaReq{method: "GET", path: "/semaphores?kind=key&prefix=pool-&limit=1", hdr: acme},
		check: func(t *testing.T, rec *httptest.ResponseRecorder) {
			var page semaphoreListJSON
			decodeStrict(t, rec.Body.Bytes(), &page)
			want := semaphoreListJSON{Semaphores: []semaphoreSummaryJSON{{Name: "pool-1", Kind: "key", Limit: 3, InUse: 1, Slots: 1}}, Next: "pool-1"}
			if !reflect.DeepEqual(page, want) {
				t.Errorf("page %+v, want %+v", page, want)
			}
		},
	})
	add(main, "list, next page", "/semaphores", 200, oaReq{method: "GET", path: "/semaphores?kind=key&prefix=pool-&limit=1&after=pool-1", hdr: acme})
	add(main, "list, unknown parameter", "/semaphores", 400, oaReq{method: "GET", path: "/semaphores?kind=uuid&sort=name", hdr: acme})
	add(main, "list, bad prefix", "/semaphores", 400, oaReq{method: "GET", path: "/semaphores?kind=key&prefix=a*", hdr: acme})
	return cases
}
