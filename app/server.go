package app

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/fx"

	"github.com/locklock/locklock/internal/keyauth"
	"github.com/locklock/locklock/internal/metrics"
	"github.com/locklock/locklock/internal/ui"
	"github.com/locklock/locklock/locklock"
	"github.com/locklock/locklock/transport"
	"github.com/locklock/locklock/transport/client"
	"github.com/locklock/locklock/transport/ratelimit"
)

// Server timeouts beyond Config's. WriteTimeout must outlast the longest
// allowed wait, so it is derived from Config.MaxWait.
const (
	readTimeout = 30 * time.Second
	idleTimeout = 2 * time.Minute
	writeSlack  = 30 * time.Second
)

// Server is the running HTTP server, and the ops listener if there is one.
// Addresses are known once the app has started.
type Server struct {
	http     *http.Server
	conns    *connTracker
	addr     net.Addr
	tls      bool
	ops      *http.Server // nil without Config.OpsAddr
	opsConns *connTracker
	opsAddr  net.Addr
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

// OpsURL is the base URL of /metrics, /healthz and /readyz: the ops
// listener's (always plain HTTP) when there is one, else the server's.
func (s *Server) OpsURL() string {
	if s.ops == nil {
		return s.URL()
	}
	return "http://" + s.opsAddr.String()
}

// httpModule provides the HTTP handlers (the API under client.APIPrefix, the
// dashboard at /ui/, and /metrics, /healthz, /readyz on the main listener or
// on the ops listener)
// and a *Server that listens in OnStart — so a busy port fails start-up —
// and drains in OnStop. A TLS certificate is re-read on SIGHUP.
func httpModule() fx.Option {
	return fx.Module("http",
		fx.Provide(newCertificate, newHandlers, newServer),
		fx.Provide(asReloaders(certificateReloader)),
	)
}

// handlers are what the listeners serve.
type handlers struct {
	main, ops http.Handler // ops is nil without Config.OpsAddr
}

// opsPaths are the operational endpoints, outside the API.
var opsPaths = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}

// newHandlers routes client.APIPrefix to the API, /ui/ to the dashboard
// (unless Config.UI is off) and the operational paths to their handlers.
// The dashboard is the standalone server's, beside the API whatever
// --ops-addr says: it talks to the API from the API's origin, and its CSP
// allows no other. It deliberately avoids http.ServeMux, which would clean
// paths ("//", "/./") and redirect before the API could answer 400 for a
// malformed lock name. Every request is instrumented: a request id, a debug
// log line, metrics.
func newHandlers(cfg Config, svc *locklock.Service, access keyauth.Access, limiter *ratelimit.Limiter, m *metrics.Metrics, space storageSpace, log *slog.Logger) handlers {
	api := transport.NewHandler(svc,
		transport.WithPathPrefix(client.APIPrefix),
		transport.WithLogger(log),
		transport.WithAuthenticator(authenticator(access)),
		transport.WithRateLimiter(limiter),
	)
	// /metrics answers GET and HEAD only, like /healthz and /readyz.
	healthOpts := []transport.Option{transport.WithLogger(log), transport.WithMetricsHandler(m.Handler())}
	if space != nil {
		healthOpts = append(healthOpts, transport.WithReadyStorage(space.ready))
	}
	health := transport.NewOpsHandler(svc, healthOpts...)
	profiles := pprofHandler(cfg.Pprof)
	ops := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if profiles != nil && strings.HasPrefix(r.URL.Path, pprofPrefix) {
			profiles.ServeHTTP(w, r)
			return
		}
		health.ServeHTTP(w, r) // /healthz, /readyz, /metrics, or a not_found problem
	})
	notFound := transport.NotFoundHandler()
	var dashboard http.Handler
	if cfg.UI {
		dashboard = ui.Handler()
	}
	instrument := func(h http.Handler) http.Handler {
		return transport.Instrument(h, log, routeOf, func(i transport.RequestInfo) {
			m.ObserveRequest(i.Route, i.Method, i.Status, i.Duration, i.Anonymous)
		})
	}
	separateOps := cfg.OpsAddr != ""
	main := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, client.APIPrefix+"/"):
			api.ServeHTTP(w, r)
		case dashboard != nil && isDashboard(r.URL.Path):
			dashboard.ServeHTTP(w, r)
		case separateOps:
			notFound.ServeHTTP(w, r) // the ops endpoints live elsewhere
		default:
			ops.ServeHTTP(w, r)
		}
	})
	hs := handlers{main: instrument(main)}
	if separateOps {
		hs.ops = instrument(ops)
	}
	return hs
}

// routeOf names a request's route for metrics and logs, from a fixed set.
func routeOf(r *http.Request) string {
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, client.APIPrefix+"/"):
		route := transport.Route(strings.TrimPrefix(p, client.APIPrefix))
		if full, ok := apiRoutes[route]; ok {
			return full
		}
		return route // "unmatched"
	case opsPaths[p]:
		return p
	case isDashboard(p):
		return ui.Path // one label for all its files (a 404 when it is off)
	}
	return "unmatched"
}

// isDashboard says whether a path is the dashboard's: /ui/ and below, and
// /ui, which it redirects to /ui/.
func isDashboard(p string) bool {
	return strings.HasPrefix(p, ui.Path) || p == strings.TrimSuffix(ui.Path, "/")
}

// apiRoutes maps the API's route templates to their full paths, made once
// rather than per request.
var apiRoutes = func() map[string]string {
	m := map[string]string{}
	for _, r := range transport.Routes() {
		m[r] = client.APIPrefix + r
	}
	return m
}()

// newCertificate loads the TLS certificate, if the server has one.
func newCertificate(cfg Config) (*certificate, error) {
	if cfg.TLSCert == "" {
		return nil, nil
	}
	c, err := loadCertificate(cfg.TLSCert, cfg.TLSKey)
	if err == nil {
		return c, nil
	}
	// A file that cannot be read is named by the error: say which flag
	// set it. Anything else (not PEM, a key that does not match) is the
	// pair's.
	var pathErr *fs.PathError
	if errors.As(err, &pathErr) {
		switch pathErr.Path {
		case cfg.TLSCert:
			return nil, settingError("--tls-cert", cfg.TLSCert, pathErr)
		case cfg.TLSKey:
			return nil, settingError("--tls-key", cfg.TLSKey, pathErr)
		}
	}
	return nil, settingError("--tls-cert/--tls-key", cfg.TLSCert+" "+cfg.TLSKey, errors.Unwrap(err))
}

func certificateReloader(c *certificate) []reloader {
	if c == nil {
		return nil
	}
	return []reloader{{name: "TLS certificate", file: c.certFile, reload: c.reload}}
}

func newServer(lc fx.Lifecycle, sd fx.Shutdowner, cfg Config, hs handlers, cert *certificate, svc *locklock.Service, log *slog.Logger) *Server {
	s := &Server{tls: cert != nil}
	s.http, s.conns = newHTTPServer(cfg, hs.main, log)
	if s.tls {
		s.http.TLSConfig = cert.config()
	}
	if hs.ops != nil {
		s.ops, s.opsConns = newHTTPServer(cfg, hs.ops, log)
	}
	serve := func(srv *http.Server, ln net.Listener, tls bool) {
		var err error
		if tls {
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			log.Error("HTTP server stopped", "addr", ln.Addr().String(), "err", err)
			_ = sd.Shutdown(fx.ExitCode(1))
		}
	}
	lc.Append(fx.Hook{
		OnStart: func(context.Context) error {
			ln, err := net.Listen("tcp", cfg.Addr)
			if err != nil {
				return settingError("--addr", cfg.Addr, err)
			}
			var opsLn net.Listener
			if s.ops != nil {
				if opsLn, err = net.Listen("tcp", cfg.OpsAddr); err != nil {
					_ = ln.Close()
					return settingError("--ops-addr", cfg.OpsAddr, err)
				}
				s.opsAddr = opsLn.Addr()
			}
			s.addr = ln.Addr()
			attrs := []any{"addr", s.addr.String(), "url", s.URL() + client.APIPrefix,
				"engine", cfg.Engine, "data_dir", dataDirFor(cfg), "tls", s.tls}
			if s.ops != nil {
				attrs = append(attrs, "ops_url", s.OpsURL())
			}
			log.Info("locklock serving", attrs...)
			go serve(s.http, ln, s.tls)
			if s.ops != nil {
				go serve(s.ops, opsLn, false)
			}
			return nil
		},
		OnStop: func(ctx context.Context) error {
			// Waiting acquires would hold Shutdown up until their wait
			// ran out, and event streams for ever: answer the waiters
			// with 503 and end the streams (clients resume elsewhere)
			// first, then drain.
			svc.StopWaiting()
			svc.StopWatching()
			ctx, cancel := context.WithTimeout(ctx, cfg.ShutdownTimeout)
			defer cancel()
			// Both listeners drain at once, so that a stalled scrape
			// cannot eat the API's time. Connections still open when the
			// time is up are cut: a stop is not unclean because a client
			// stalled.
			var cut atomic.Int64
			var wg sync.WaitGroup
			if s.ops != nil {
				wg.Go(func() { cut.Add(int64(drain(ctx, s.ops, s.opsConns))) })
			}
			wg.Go(func() { cut.Add(int64(drain(ctx, s.http, s.conns))) })
			wg.Wait()
			if n := cut.Load(); n > 0 {
				log.Warn("shutdown timeout reached: cut open connections", "connections", n, "shutdown_timeout", cfg.ShutdownTimeout.String())
			}
			log.Info("locklock stopped")
			return nil
		},
	})
	return s
}

// newHTTPServer applies the limits every listener has, and tracks its
// connections.
func newHTTPServer(cfg Config, h http.Handler, log *slog.Logger) (*http.Server, *connTracker) {
	conns := newConnTracker()
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      cfg.MaxWait + writeSlack,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		ConnState:         conns.track,
	}, conns
}

func dataDirFor(cfg Config) string {
	if cfg.Engine == EngineBadger {
		return cfg.DataDir
	}
	return ""
}
