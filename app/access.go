package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"go.uber.org/fx"

	"github.com/locklock/locklock/keys"
	"github.com/locklock/locklock/ratelimit"
	"github.com/locklock/locklock/transport"
)

// AccessModule provides who-may-do-what: the keys store (from --keys-file,
// or the built-in plans), the rate limiter, and the authenticator built from
// them. The keys file is re-read on SIGHUP.
func AccessModule() fx.Option {
	return fx.Module("access",
		fx.Provide(newKeyStore, newAccess, func() *ratelimit.Limiter { return ratelimit.New() }),
		fx.Invoke(reloadOnHangup),
	)
}

func newKeyStore(cfg Config) (*keys.Store, error) {
	file := keys.Default()
	if cfg.KeysFile != "" {
		var err error
		if file, err = keys.Load(cfg.KeysFile); err != nil {
			return nil, fmt.Errorf("keys file: %w", err)
		}
	}
	return keys.NewStore(keys.NewIndex(file)), nil
}

func newAccess(cfg Config, store *keys.Store) (transport.Access, error) {
	trusted, err := ratelimit.ParseTrusted(cfg.TrustedProxies)
	if err != nil {
		return transport.Access{}, fmt.Errorf("--trusted-proxies: %w", err)
	}
	return transport.Access{Keys: store, BaseDomain: cfg.BaseDomain, TrustedProxies: trusted}, nil
}

// reloadOnHangup re-reads the keys file on SIGHUP. A file that does not
// parse or validate is refused with a log line; the keys in force stay.
func reloadOnHangup(lc fx.Lifecycle, cfg Config, store *keys.Store, log *slog.Logger) {
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
						reloadKeys(cfg.KeysFile, store, log)
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

func reloadKeys(path string, store *keys.Store, log *slog.Logger) {
	if path == "" {
		log.Info("SIGHUP: no --keys-file to reload; the built-in plans stay")
		return
	}
	if err := store.Reload(path); err != nil {
		log.Error("SIGHUP: keys file refused; the previous keys stay in force", "file", path, "err", err)
		return
	}
	log.Info("SIGHUP: keys file reloaded", "file", path)
}
