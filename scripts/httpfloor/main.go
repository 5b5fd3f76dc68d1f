// Command httpfloor is the smallest useful net/http server: GET /healthz
// answers "ok". scripts/bench-compare.sh measures it beside Locklock, on the
// same machine in the same run, as the ceiling any net/http server reaches
// there — what the HTTP stack costs before a server does anything.
//
//	go run ./scripts/httpfloor 127.0.0.1:8090
package main

import (
	"fmt"
	"net/http"
	"os"
	"time"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: httpfloor ADDRESS")
		os.Exit(2)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header()["Content-Type"] = []string{"text/plain"}
		_, _ = w.Write([]byte("ok\n"))
	})
	srv := &http.Server{Addr: os.Args[1], Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, "httpfloor:", err)
		os.Exit(1)
	}
}
