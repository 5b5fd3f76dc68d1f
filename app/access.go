package app

import (
	"fmt"

	"go.uber.org/fx"

	"github.com/locklock/locklock/keys"
	"github.com/locklock/locklock/transport"
	"github.com/locklock/locklock/transport/ratelimit"
)

// AccessModule provides who-may-do-what: the keys store (from --keys-file,
// or the built-in plans), the rate limiter, and the authenticator built from
// them. The keys file is re-read on SIGHUP.
func AccessModule() fx.Option {
	return fx.Module("access",
		fx.Provide(newKeyStore, newAccess, func() *ratelimit.Limiter { return ratelimit.New() }),
		fx.Provide(asReloaders(keysReloader)),
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

// keysReloader re-reads the keys file; without one there is nothing to
// reload (the built-in plans stay).
func keysReloader(cfg Config, store *keys.Store) []reloader {
	if cfg.KeysFile == "" {
		return nil
	}
	return []reloader{{name: "keys file", file: cfg.KeysFile, reload: func() error { return store.Reload(cfg.KeysFile) }}}
}
