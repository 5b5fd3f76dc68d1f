// Command embed shows an existing net/http application that mounts the
// Locklock API under /locks/, with the in-memory engine and no fx.
//
// Run it and try it:
//
//	go run ./examples/embed -addr 127.0.0.1:8081
//
//	curl http://127.0.0.1:8081/
//	curl -X POST http://127.0.0.1:8081/locks/lock/uuid/180da65c-cf80-4997-8574-0c0801817d6f \
//	     -H 'Content-Type: application/json' -d '{"secret":"s3cret","expires_in":60}'
//	curl http://127.0.0.1:8081/locks/lock/uuid/180da65c-cf80-4997-8574-0c0801817d6f
//	curl -X PATCH http://127.0.0.1:8081/locks/lock/uuid/180da65c-cf80-4997-8574-0c0801817d6f \
//	     -H 'Content-Type: application/json' -d '{"secret":"s3cret","expires_in":300}'
//	curl -X DELETE http://127.0.0.1:8081/locks/lock/uuid/180da65c-cf80-4997-8574-0c0801817d6f \
//	     -H 'Locklock-Secret: s3cret'
//
// A second POST while the lock is held answers 409 with Retry-After; add
// "wait": 30 to the body to wait for it instead. A body needs
// Content-Type: application/json (or none): curl's default form type is 415.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/locklock/locklock/engines/memory"
	"github.com/locklock/locklock/locklock"
	"github.com/locklock/locklock/transport"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8081", "address to listen on")
	flag.Parse()
	if err := run(*addr); err != nil {
		fmt.Fprintln(os.Stderr, "embed:", err)
		os.Exit(1)
	}
}

func run(addr string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	engine := memory.New()
	defer engine.Close()
	svc := locklock.NewService(engine, locklock.WithLogger(log))
	go svc.RunSweeper(ctx, 0) // reclaims memory of expired locks

	// Listen first, so that the log shows the real address (with -addr
	// 127.0.0.1:0, the port the system chose).
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: newMux(svc, log), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String())

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// Long polls would hold Shutdown up for their whole wait: end them first.
	svc.StopWaiting()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// newMux is the application's own router, with the lock API as one more
// part of it.
func newMux(svc *locklock.Service, log *slog.Logger) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "Hello from an app that embeds Locklock under /locks/.")
	})
	mux.Handle("/locks/", transport.NewHandler(svc, transport.WithPathPrefix("/locks"), transport.WithLogger(log)))
	return mux
}
