package app

import (
	"net/http"
	"net/http/pprof"
	"runtime"
)

const pprofPrefix = "/debug/pprof/"

// pprofHandler serves Go's profiles under /debug/pprof/ when on, the way
// `go tool pprof http://ops-addr/debug/pprof/profile` expects. Config
// allows it only with a separate ops listener. It also turns on the mutex
// and block profiles (a fraction of events, as etcd and Go's own docs
// suggest), which are empty otherwise; off, nothing is sampled.
func pprofHandler(on bool) http.Handler {
	if !on {
		return nil
	}
	runtime.SetMutexProfileFraction(100)
	runtime.SetBlockProfileRate(100_000) // one sample per 100 µs blocked
	mux := http.NewServeMux()
	mux.HandleFunc(pprofPrefix, pprof.Index) // named profiles: heap, mutex, block, goroutine, allocs…
	mux.HandleFunc(pprofPrefix+"cmdline", pprof.Cmdline)
	mux.HandleFunc(pprofPrefix+"profile", pprof.Profile)
	mux.HandleFunc(pprofPrefix+"symbol", pprof.Symbol)
	mux.HandleFunc(pprofPrefix+"trace", pprof.Trace)
	return mux
}
