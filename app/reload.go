package app

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"go.uber.org/fx"
)

// reloader is something SIGHUP re-reads: the keys file, the TLS
// certificate. A failed reload keeps what is in force and says why.
type reloader struct {
	name   string // "keys file", "TLS certificate"
	file   string
	reload func() error
}

// asReloaders puts the reloaders a constructor returns into the
// "reloaders" group.
func asReloaders(f any) any {
	return fx.Annotate(f, fx.ResultTags(`group:"reloaders,flatten"`))
}

type reloaders struct {
	fx.In
	All []reloader `group:"reloaders"`
}

// reloadOnHangup re-reads every reloader on SIGHUP, for the app's lifetime.
func reloadOnHangup(lc fx.Lifecycle, rs reloaders, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	done := make(chan struct{})
	var wg sync.WaitGroup
	lc.Append(fx.Hook{
		OnStart: func(context.Context) error {
			signal.Notify(hup, syscall.SIGHUP)
			wg.Go(func() {
				for {
					select {
					case <-done:
						return
					case <-hup:
						reloadAll(rs.All, log)
					}
				}
			})
			return nil
		},
		OnStop: func(context.Context) error {
			signal.Stop(hup)
			close(done)
			wg.Wait()
			return nil
		},
	})
}

func reloadAll(rs []reloader, log *slog.Logger) {
	if len(rs) == 0 {
		log.Info("SIGHUP: nothing to reload (no --keys-file, no TLS)")
	}
	for _, r := range rs {
		if err := r.reload(); err != nil {
			log.Error("SIGHUP: "+r.name+" refused; the previous one stays in force", "file", r.file, "err", err)
			continue
		}
		log.Info("SIGHUP: "+r.name+" reloaded", "file", r.file)
	}
}
