// Package transport serves the Locklock HTTP API (API.md §1–4) over a
// locklock.Service, and is the one place where core errors become HTTP
// problems.
//
// NewHandler returns the API's routes (routed with gorilla/mux) relative to
// wherever it is mounted, or under WithPathPrefix:
//
//	mux.Handle("/v1/api/", transport.NewHandler(svc, transport.WithPathPrefix("/v1/api")))
//	mux.Handle("/v1/api/", http.StripPrefix("/v1/api", transport.NewHandler(svc))) // the same
//
// GET /openapi.json serves the API's OpenAPI 3.1 document (openapi.json,
// embedded; a test keeps it equal to the routes and the real responses). It
// needs no key and is not throttled: a client must be able to read how to
// authenticate. Instrument adds request ids, request logs and metrics
// hooks around any handler.
//
// Decisions where API.md is silent:
//
//   - Check order: route (404/405), then the caller (401/403), then the lock
//     name (400 invalid_uuid/invalid_name), then the body (413, 415, 400),
//     then the Service. So an anonymous caller learns nothing about key names.
//   - Key routes need Caller.CustomNames. Without it an anonymous caller gets
//     401 unauthorized (an API key would help) and a keyed caller 403
//     forbidden (its plan does not allow custom names). Listing needs any
//     API key; a keyed caller without custom names may list (it simply has no
//     key locks).
//   - The body is read only for POST, PATCH and DELETE. An empty or
//     all-whitespace body means "no body". The Content-Type is checked only
//     when there is a body, so an empty body under curl's default form
//     content type still works.
//   - Duplicate JSON keys are 400 invalid_body: two parsers could disagree
//     about which one counts.
//   - Zero means "default" inside the Service, so an explicit expires_in of 0
//     (or less) is rejected here; a negative wait too. Upper bounds are the
//     Service's (its configured maxima), which keeps one source of truth.
//   - The header Locklock-Secret is accepted on POST as well as DELETE and
//     PATCH, so that a secret a client sent is never silently dropped. Given
//     twice, empty, or different from the body's secret, it is 400
//     invalid_body. HTTP trims a header value's surrounding spaces; such
//     secrets must go in the body.
//   - GET /locks: kind is required (uuid or key); limit defaults to 100 and
//     must be 1–1000; prefix must use lock-name characters (400 invalid_name
//     otherwise); for kind=uuid, prefix and after are lower-cased like UUIDs.
//     Unknown or repeated query parameters are 400 (unknown_field /
//     invalid_body). The body is {"locks":[...],"next":"<name>"}; next is
//     omitted on the last page, and is the after of the following page.
//   - HEAD answers like GET without a body. 401 carries
//     WWW-Authenticate: Bearer. Every response carries Cache-Control: no-store
//     because lock state changes from one moment to the next.
//   - A lock_held problem for a wait that ended while the lock was between
//     holders has no expires_at and Retry-After: 1.
//   - 503 details do not repeat storage errors (they may name hosts or
//     paths); 500 details are generic and the error is logged instead.
package transport
