package transport

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// oaForceCases are the documented answers of forced releases (Locklock-Force
// on DELETE, API.md §11) and of GET /whoami, in order on env.
func oaForceCases(env *oaEnv) []oaCase {
	var cases []oaCase
	add := func(name, docPath string, status int, q oaReq) {
		cases = append(cases, oaCase{name: name, env: env, req: q, status: status, path: docPath})
	}
	acme := []string{"Authorization", oaAcme}
	ops := []string{"Authorization", oaOps}
	force := func(auth []string, value string) []string {
		return append(append([]string{}, auth...), forceHeader, value)
	}

	const lockDoc, lock = "/lock/key/{name}", "/lock/key/forced"
	add("setup", lockDoc, 201, oaReq{method: "POST", path: lock, body: `{"secret":"s","lock_delay":5}`, hdr: acme})
	add("force without an operator key", lockDoc, 403, oaReq{method: "DELETE", path: lock, hdr: force(acme, "true")})
	add("force, anonymously", "/lock/uuid/{uuid}", 403, oaReq{method: "DELETE", path: "/lock/uuid/3b0c9a52-6a56-4c8e-8b1e-0d8e2a7c9f10", hdr: []string{forceHeader, "true"}})
	add("force with another value", lockDoc, 400, oaReq{method: "DELETE", path: lock, hdr: force(ops, "yes")})
	add("forced release", lockDoc, 200, oaReq{method: "DELETE", path: lock, hdr: force(ops, "true")})
	add("forced release of a released lock", lockDoc, 404, oaReq{method: "DELETE", path: lock, hdr: force(ops, "true")})
	add("acquire during the revoke's lock-delay", lockDoc, 409, oaReq{method: "POST", path: lock, body: `{"secret":"s"}`, hdr: acme})

	const semDoc, slotDoc, sem = "/semaphore/key/{name}", "/semaphore/key/{name}/{slot}", "/semaphore/key/forced-pool"
	var slot string
	cases = append(cases, oaCase{name: "setup", env: env, status: 201, path: semDoc,
		req: oaReq{method: "POST", path: sem, body: `{"limit":1,"secret":"s"}`, hdr: acme},
		check: func(t *testing.T, rec *httptest.ResponseRecorder) {
			var sl slotJSON
			decodeStrict(t, rec.Body.Bytes(), &sl)
			slot = sl.Slot
		}})
	slotCase := func(name string, status int, hdr []string) {
		cases = append(cases, oaCase{name: name, env: env, status: status, path: slotDoc,
			req:  oaReq{method: "DELETE", hdr: hdr},
			fill: func(q *oaReq) { q.path = sem + "/" + slot }})
	}
	slotCase("force a slot without an operator key", 403, force(acme, "true"))
	slotCase("forced release of a slot", 200, force(ops, "true"))

	for _, m := range []string{http.MethodGet, http.MethodHead} {
		add("whoami, operator", "/whoami", 200, oaReq{method: m, path: "/whoami", hdr: ops})
		add("whoami, anonymous", "/whoami", 200, oaReq{method: m, path: "/whoami"})
		add("whoami, query parameter", "/whoami", 400, oaReq{method: m, path: "/whoami?key=x", hdr: acme})
		add("whoami, unknown key", "/whoami", 401, oaReq{method: m, path: "/whoami", hdr: []string{"Authorization", "Bearer llk_nope"}})
		add("whoami on another namespace's subdomain", "/whoami", 403, oaReq{method: m, path: "/whoami", hdr: []string{"Host", oaSubHost, "Authorization", oaGlobex}})
		add("whoami, authenticator bug", "/whoami", 500, oaReq{method: m, path: "/whoami", hdr: []string{"Authorization", oaBroken}})
	}
	return cases
}
