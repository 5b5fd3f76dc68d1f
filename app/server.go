package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"go.uber.org/fx"

	"github.com/locklock/locklock/locklock"
	"github.com/locklock/locklock/ratelimit"
	"github.com/locklock/locklock/transport"
)

// APIPrefix is where the standalone server mounts the lock API.
const APIPrefix = "/v1/api"

// Server timeouts. WriteTimeout must outlast the longest allowed wait, so it
// is derived from Config.MaxWait.
const (
	readHeaderTimeout = 10 * time.Second // cuts off clients that dribble headers
	readTimeout       = 30 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
	writeSlack        = 30 * time.Second
)

// Server is the running HTTP server. Addr is known once the app has started.
type Server struct {
	http *http.Server
	addr net.Addr
	tls  bool
}

// Addr is the address the server listens on (useful with port 0).
func (s *Server) Addr() net.Addr { return s.addr }

// URL is the server's base URL, e.g. http://127.0.0.1:8080.
func (s *Server) URL() string {
	scheme := "http"
	if s.tls {
		scheme = "https"
	}
	return scheme + "://" + s.addr.String()
}

// HTTPModule provides the root http.Handler (the API under APIPrefix plus
// /healthz and /readyz) and a *Server that listens in OnStart — so a busy
// port fails start-up — and drains in OnStop.
func HTTPModule() fx.Option {
	return fx.Module("http",
		fx.Provide(newRootHandler, newServer),
	)
}

// newRootHandler routes APIPrefix to the API and everything else to the
// operational endpoints. It deliberately avoids http.ServeMux, which would
// clean paths ("//", "/./") and redirect before the API could answer 400 for
// a malformed lock name.
func newRootHandler(svc *locklock.Service, access transport.Access, limiter *ratelimit.Limiter, log *slog.Logger) http.Handler {
	api := http.StripPrefix(APIPrefix, transport.NewHandler(svc,
		transport.WithLogger(log),
		transport.WithAuthenticator(transport.KeyAuthenticator(access)),
		transport.WithRateLimiter(limiter),
	))
	ops := transport.NewOpsHandler(svc, transport.WithLogger(log))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, APIPrefix+"/") {
			api.ServeHTTP(w, r)
			return
		}
		ops.ServeHTTP(w, r)
	})
}

func newServer(lc fx.Lifecycle, sd fx.Shutdowner, cfg Config, handler http.Handler, svc *locklock.Service, log *slog.Logger) *Server {
	s := &Server{
		http: &http.Server{
			Addr:              cfg.Addr,
			Handler:           handler,
			ReadHeaderTimeout: readHeaderTimeout,
			ReadTimeout:       readTimeout,
			WriteTimeout:      cfg.MaxWait + writeSlack,
			IdleTimeout:       idleTimeout,
			MaxHeaderBytes:    maxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		},
		tls: cfg.TLSCert != "",
	}
	lc.Append(fx.Hook{
		OnStart: func(context.Context) error {
			if s.tls {
				cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
				if err != nil {
					return fmt.Errorf("load TLS certificate: %w", err)
				}
				s.http.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
			}
			ln, err := net.Listen("tcp", cfg.Addr)
			if err != nil {
				return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
			}
			s.addr = ln.Addr()
			log.Info("locklock serving", "addr", s.addr.String(), "url", s.URL()+APIPrefix,
				"engine", cfg.Engine, "data_dir", dataDirFor(cfg), "tls", s.tls)
			go func() {
				var err error
				if s.tls {
					err = s.http.ServeTLS(ln, "", "")
				} else {
					err = s.http.Serve(ln)
				}
				if !errors.Is(err, http.ErrServerClosed) {
					log.Error("HTTP server stopped", "err", err)
					_ = sd.Shutdown(fx.ExitCode(1))
				}
			}()
			return nil
		},
		OnStop: func(ctx context.Context) error {
			// Waiting acquires would hold Shutdown up until their wait
			// ran out: answer them with 503 first, then drain.
			svc.StopWaiting()
			ctx, cancel := context.WithTimeout(ctx, cfg.ShutdownTimeout)
			defer cancel()
			if err := s.http.Shutdown(ctx); err != nil {
				// Out of time: cut the remaining connections, so that
				// no handler is still running when the engine closes.
				_ = s.http.Close()
				return fmt.Errorf("drain HTTP server: %w", err)
			}
			log.Info("locklock stopped")
			return nil
		},
	})
	return s
}

func dataDirFor(cfg Config) string {
	if cfg.Engine == EngineBadger {
		return cfg.DataDir
	}
	return ""
}
