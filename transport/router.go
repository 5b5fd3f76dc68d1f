package transport

import (
	"net/http"
	"strings"

	"github.com/gorilla/mux"
)

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

// handle serves one exact path.
func (rt *router) handle(path string, ms *methodSet) {
	ms.template = path
	full := rt.prefix + path
	rt.mux.MatcherFunc(func(r *http.Request, _ *mux.RouteMatch) bool { return r.URL.Path == full }).Handler(ms)
}

// handlePrefix serves every path that starts with prefix; rest names what
// follows it in the route's template ("{name}").
func (rt *router) handlePrefix(prefix, rest string, ms *methodSet) {
	ms.template = prefix + rest
	full := rt.prefix + prefix
	rt.mux.MatcherFunc(func(r *http.Request, _ *mux.RouteMatch) bool { return strings.HasPrefix(r.URL.Path, full) }).Handler(ms)
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
