// Package app wires Locklock's standalone server with go.uber.org/fx:
// Config → Engine → Service → HTTP handler → http.Server. It is the only
// package that imports fx; everything it wires has a plain constructor, so
// the same pieces can be used without fx (see examples/embed).
package app

import (
	"log/slog"

	"go.uber.org/fx"
	"go.uber.org/fx/fxevent"

	"github.com/locklock/locklock/transport"
)

// Modules is every module of the server, for callers that build their own
// fx.App around them.
func Modules() fx.Option {
	return fx.Options(
		engineModule(), metricsModule(), serviceModule(), accessModule(), httpModule(),
		fx.Decorate(instrumentEngine),
		fx.Invoke(reloadOnHangup),
	)
}

// New returns the server app for cfg, logging to log. Start it, wait on
// app.Wait(), stop it. extra options are appended (tests use fx.Populate).
func New(cfg Config, log *slog.Logger, extra ...fx.Option) *fx.App {
	if err := cfg.Validate(); err != nil {
		return fx.New(fx.NopLogger, fx.Error(err))
	}
	// Every log line of a request carries its id.
	log = slog.New(transport.LogHandler(log.Handler()))
	return fx.New(
		fx.Supply(cfg, log),
		fx.WithLogger(func() fxevent.Logger {
			l := &fxevent.SlogLogger{Logger: log.With("component", "fx")}
			l.UseLogLevel(slog.LevelDebug) // fx's wiring chatter is for debugging
			// A start-up failure is reported once, as one line, by the
			// caller (see SettingError); fx's dependency chain for it is
			// for debugging too.
			l.UseErrorLevel(slog.LevelDebug)
			return l
		}),
		Modules(),
		fx.Invoke(func(*Server) {}), // the server is what the app is for
		fx.Options(extra...),
	)
}
