// Package transport serves the Locklock HTTP API (API.md §1–10) over a
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
//     name (400 invalid_uuid/invalid_name), then the query (400), then the
//     body (415 for a content coding, 413, 415 for the type, 400), then the
//     Service. So an anonymous caller learns nothing about key names.
//   - Lock routes take no query parameters (API.md §7): any is 400
//     unknown_field, the first named. A bare "?" and empty pieces ("?&")
//     name no parameter and are ignored.
//   - Key routes need Caller.CustomNames. Without it an anonymous caller gets
//     401 unauthorized (an API key would help) and a keyed caller 403
//     forbidden (its plan does not allow custom names). Listing needs any
//     API key; a keyed caller without custom names may list (it simply has no
//     key locks).
//   - The body is read only for POST, PATCH and DELETE. An empty body, or
//     one of JSON whitespace only (space, tab, CR, LF), means "no body";
//     other Unicode whitespace is a body that is not a JSON object. The
//     Content-Type is checked only when there is a body, so an empty body
//     under curl's default form content type still works. A Content-Encoding
//     other than identity is 415 on those methods even with an empty body:
//     the server decodes no coding, and an answer that depended on whether
//     the encoded bytes happened to be empty would help nobody. GET and HEAD
//     ignore it with the body.
//   - Duplicate JSON keys are 400 invalid_body: two parsers could disagree
//     about which one counts.
//   - Zero means "default" inside the Service, so an explicit expires_in of 0
//     (or less) is rejected here; a negative wait too. Upper bounds are the
//     Service's (its configured maxima), which keeps one source of truth.
//   - The header Locklock-Secret is accepted on POST as well as DELETE and
//     PATCH, so that a secret a client sent is never silently dropped. Given
//     twice, empty, or different from the body's secret, it is 400
//     invalid_body. Both follow locklock.ValidateSecret (API.md §7); in a
//     body an escaped lone surrogate is refused too, since encoding/json
//     would turn it into U+FFFD. HTTP trims a header value's surrounding
//     spaces, so a POST's secret may not start or end with one (the
//     Service refuses it up front, on every acquire); DELETE and PATCH
//     compare as given, so a lock taken earlier with such a secret is
//     released through a body.
//   - Holders and metadata (API.md §8) are decoded as strictly as the rest
//     of the body: holder a string, metadata an object of strings, each
//     name once, no escaped unpaired surrogate in either (as for secrets),
//     within locklock.ValidateHolder's and ValidateMetadata's limits. A
//     holder can be replaced but not removed: "holder": null is 400, like
//     "holder": "". "metadata": null is 400 too; {} clears the metadata on
//     PATCH and means none on POST. PATCH takes no lock_delay (the delay is
//     fixed when the lock is taken): 400 unknown_field.
//   - 409 lock_delayed carries delayed_until and Retry-After (the seconds
//     until then, rounded up, at least 1); GET, HEAD, DELETE and PATCH of a
//     lock in its lock-delay are 404 lock_not_found with delayed_until.
//   - GET /locks: kind is required (uuid or key); limit defaults to 100 and
//     must be 1–1000; prefix must use lock-name characters (400 invalid_name
//     otherwise); for kind=uuid, prefix and after are lower-cased like UUIDs.
//     Unknown or repeated query parameters are 400 (unknown_field /
//     invalid_body), the first bad one named. The body is {"locks":[...],"next":"<name>"}; next is
//     omitted on the last page, and is the after of the following page.
//   - HEAD answers like GET without a body. 401 carries
//     WWW-Authenticate: Bearer. Every response carries Cache-Control: no-store
//     because lock state changes from one moment to the next.
//   - A lock_held problem for a wait that ended while the lock was between
//     holders has no expires_at and Retry-After: 1.
//   - 503 details do not repeat storage errors (they may name hosts or
//     paths); 500 details are generic and the error is logged instead.
//   - Semaphores (API.md §10) follow the lock routes' name rules, plans,
//     check order, secret rules and body rules. A slot's path is the rest
//     of the path after /semaphore/{kind}/ cut at its last slash: the name
//     before it (judged as a name, so "a/b" is 400 invalid_name) and the
//     slot id after it (no slot id has a slash); a malformed slot id names
//     no slot, 404 slot_not_found. POST of a semaphore takes no query
//     parameters; GET and HEAD take limit (1–1000, default 1000) and after
//     (a fencing token in decimal: the previous page's next). in_use counts
//     every live slot, not only the page's; a page past the last slot is
//     200 with "slots": []. HEAD is served beside each semaphore GET
//     (API.md lists GET only), as on /locks.
//   - The acquire body's limit is required (no default: a limit the caller
//     did not choose would decide how many may hold) and, like weight, a
//     JSON integer from 1 to 10000; weight 0 is 400 rather than the
//     default 1, and weight above limit is the Service's 400. lock_delay
//     is 400 unknown_field, on POST and PATCH.
//   - 409 semaphore_full carries limit, in_use and Retry-After until the
//     earliest live slot expires (rounded up, at least 1; 1 when the
//     semaphore was found empty behind queued waiters). 409 limit_mismatch
//     carries the semaphore's limit and no Retry-After: the same request
//     fails until the semaphore empties. A wait the waiter caps refuse is
//     503 when the slot does not fit at once; one that fits is granted.
//   - GET /semaphores takes /locks' query and answers
//     {"semaphores":[{"name","kind","limit","in_use","slots"}],"next":…};
//     the items carry no namespace (it is the caller's), as API.md shows.
//   - An engine without semaphores (locklock.SemaphoreEngine) answers 503
//     on every semaphore route.
//   - Details and log lines quote client input (method, path, names, header
//     values) only as abbrev.String's prefix (API.md §7). A client's
//     X-Request-Id is used only when it is 1–64 sane characters, else
//     replaced.
package transport
