package transport

import (
	"net/http"
	"strings"

	"github.com/gorilla/mux"

	"github.com/locklock/locklock/locklock"
)

// routeTable is the API's one route table: NewHandler serves it, Route and
// Routes (the metrics labels) are made from it, and openapi_test.go fails
// when openapi.json documents a path, method or path parameter it lacks or
// lacks one it has. Templates are relative to the mount point; a lock
// route's parameter is the rest of the path, even empty or with slashes, so
// that the core's validation, not the router, judges the name. A slot
// route's two parameters are the rest of the path cut at its last slash: no
// slot id has one, so a name with a slash reaches validation too.
var routeTable = []route{
	// A lock's stream before the lock: no lock name contains a slash, so
	// a path ending in /events after a lock prefix is the stream's.
	newRoute("/lock/uuid/{uuid}/events", func(h *handler, prefix string) map[string]http.HandlerFunc {
		return map[string]http.HandlerFunc{http.MethodGet: h.lockEvents(locklock.KindUUID, prefix)}
	}),
	newRoute("/lock/key/{name}/events", func(h *handler, prefix string) map[string]http.HandlerFunc {
		return map[string]http.HandlerFunc{http.MethodGet: h.lockEvents(locklock.KindKey, prefix)}
	}),
	newRoute("/events", func(h *handler, _ string) map[string]http.HandlerFunc {
		return map[string]http.HandlerFunc{http.MethodGet: h.namespaceEvents}
	}),
	newRoute("/lock/uuid/{uuid}", func(h *handler, prefix string) map[string]http.HandlerFunc {
		return h.lockMethods(locklock.KindUUID, prefix)
	}),
	newRoute("/lock/key/{name}", func(h *handler, prefix string) map[string]http.HandlerFunc {
		return h.lockMethods(locklock.KindKey, prefix)
	}),
	newRoute("/locks", func(h *handler, _ string) map[string]http.HandlerFunc {
		return map[string]http.HandlerFunc{http.MethodGet: h.list, http.MethodHead: h.list}
	}),
	// A semaphore's stream before its slots: no slot id is "events".
	newRoute("/semaphore/uuid/{uuid}/events", func(h *handler, prefix string) map[string]http.HandlerFunc {
		return map[string]http.HandlerFunc{http.MethodGet: h.semaphoreEvents(locklock.KindUUID, prefix)}
	}),
	newRoute("/semaphore/key/{name}/events", func(h *handler, prefix string) map[string]http.HandlerFunc {
		return map[string]http.HandlerFunc{http.MethodGet: h.semaphoreEvents(locklock.KindKey, prefix)}
	}),
	// A slot before its semaphore: a path with a slash after the
	// semaphore prefix names a slot.
	newRoute("/semaphore/uuid/{uuid}/{slot}", func(h *handler, prefix string) map[string]http.HandlerFunc {
		return h.slotMethods(locklock.KindUUID, prefix)
	}),
	newRoute("/semaphore/key/{name}/{slot}", func(h *handler, prefix string) map[string]http.HandlerFunc {
		return h.slotMethods(locklock.KindKey, prefix)
	}),
	newRoute("/semaphore/uuid/{uuid}", func(h *handler, prefix string) map[string]http.HandlerFunc {
		return h.semaphoreMethods(locklock.KindUUID, prefix)
	}),
	newRoute("/semaphore/key/{name}", func(h *handler, prefix string) map[string]http.HandlerFunc {
		return h.semaphoreMethods(locklock.KindKey, prefix)
	}),
	newRoute("/semaphores", func(h *handler, _ string) map[string]http.HandlerFunc {
		return map[string]http.HandlerFunc{http.MethodGet: h.listSemaphores, http.MethodHead: h.listSemaphores}
	}),
	newRoute("/whoami", func(h *handler, _ string) map[string]http.HandlerFunc {
		return map[string]http.HandlerFunc{http.MethodGet: h.whoami, http.MethodHead: h.whoami}
	}),
	newRoute("/openapi.json", func(*handler, string) map[string]http.HandlerFunc {
		return map[string]http.HandlerFunc{http.MethodGet: serveOpenAPI, http.MethodHead: serveOpenAPI}
	}),
}

// route is one row of the route table.
type route struct {
	template string // "/locks", or a prefix, parameters and a suffix: "/lock/key/{name}/events"
	prefix   string // the template up to its first parameter; all of it without one
	// params are the parameters' names: none for an exact path, one (the
	// rest of the path but the suffix), or two separated by a slash at
	// the end of the template ("/semaphore/key/{name}/{slot}": the rest
	// of the path cut at its last slash).
	params []string
	suffix string // the template after its parameters
	// methods makes the route's handlers; prefix is the part of the path
	// before the first parameter.
	methods func(h *handler, prefix string) map[string]http.HandlerFunc
}

// newRoute parses a template; a malformed one is a programming error that
// every test of the package would hit at start-up.
func newRoute(template string, methods func(*handler, string) map[string]http.HandlerFunc) route {
	bad := func() {
		panic("transport: route template " + template + " must have one {parameter}, or two as /{a}/{b} at its end")
	}
	prefix, rest, hasParam := strings.Cut(template, "{")
	r := route{template: template, prefix: prefix, methods: methods}
	for hasParam {
		name, after, ok := strings.Cut(rest, "}")
		if !ok || name == "" || strings.Contains(name, "{") {
			bad()
		}
		r.params = append(r.params, name)
		if next, ok := strings.CutPrefix(after, "/{"); ok && len(r.params) == 1 {
			rest = next
			continue
		}
		if strings.ContainsAny(after, "{}") || len(r.params) == 2 && after != "" {
			bad()
		}
		r.suffix, hasParam = after, false
	}
	return r
}

// matches says whether a path relative to the mount point is this route's,
// as the router matches it.
func (r route) matches(path string) bool {
	if len(r.params) == 0 {
		return path == r.prefix
	}
	if !strings.HasPrefix(path, r.prefix) || !strings.HasSuffix(path, r.suffix) ||
		len(path) < len(r.prefix)+len(r.suffix) {
		return false
	}
	return len(r.params) == 1 || strings.Contains(path[len(r.prefix):], "/")
}

// Route names the route template of a path relative to the API base, for
// metrics and logs: "/lock/uuid/{uuid}", "/lock/key/{name}", "/locks",
// "/lock/uuid/{uuid}/events", "/events", "/openapi.json", …, or
// "unmatched".
func Route(path string) string {
	for _, r := range routeTable {
		if r.matches(path) {
			return r.template
		}
	}
	return "unmatched"
}

// Routes lists every route template Route returns, but "unmatched", in the
// route table's order.
func Routes() []string {
	out := make([]string, len(routeTable))
	for i, r := range routeTable {
		out[i] = r.template
	}
	return out
}

// router routes with gorilla/mux but calls the matched handler itself.
// mux.Router.ServeHTTP would copy every request twice to put mux.Vars and
// the current route into its context; nothing here reads them (a lock's
// name is the rest of the path after its route's prefix), and those copies
// were a fifth of the bytes a lock request allocated.
//
// Lock routes match a literal prefix (a mux MatcherFunc) rather than a
// path template, which mux would turn into a regular expression run twice
// per request.
type router struct {
	mux    *mux.Router
	prefix string // WithPathPrefix
}

func newRouter(h *handler) *router {
	r := mux.NewRouter()
	// mux would answer "//" or "/./" in a path with a 301 to the cleaned
	// path; the contract wants such names to reach validation and get 400.
	r.SkipClean(true)
	r.NotFoundHandler = http.HandlerFunc(h.notFound)
	return &router{mux: r, prefix: h.prefix}
}

// add serves one row of the route table: an exact path, or every path that
// starts with the row's prefix (the rest of the path is its parameter).
func (rt *router) add(row route, ms *methodSet) {
	if len(row.params) == 0 {
		rt.handle(row.template, ms)
		return
	}
	ms.template = row.template
	rt.mux.MatcherFunc(func(r *http.Request, _ *mux.RouteMatch) bool {
		path, ok := strings.CutPrefix(r.URL.Path, rt.prefix)
		return ok && row.matches(path)
	}).Handler(ms)
}

// handle serves one exact path (the API's, and the ops handler's which are
// not in the route table).
func (rt *router) handle(path string, ms *methodSet) {
	ms.template = path
	full := rt.prefix + path
	rt.mux.MatcherFunc(func(r *http.Request, _ *mux.RouteMatch) bool { return r.URL.Path == full }).Handler(ms)
}

// routes lists the served route templates (relative to the mount point)
// with their methods, in the order they were added.
func (rt *router) routes() []*methodSet {
	var out []*methodSet
	_ = rt.mux.Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		if ms, ok := route.GetHandler().(*methodSet); ok {
			out = append(out, ms)
		}
		return nil
	})
	return out
}

func (rt *router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var m mux.RouteMatch
	if rt.mux.Match(r, &m) && m.Handler != nil {
		m.Handler.ServeHTTP(w, r) // a route's, or NotFoundHandler
		return
	}
	rt.mux.NotFoundHandler.ServeHTTP(w, r)
}
