package app

import (
	"errors"
	"net/http"
	"os"
	"strings"

	"go.uber.org/fx"

	"github.com/locklock/locklock/internal/keyauth"
	"github.com/locklock/locklock/internal/keys"
	"github.com/locklock/locklock/transport"
	"github.com/locklock/locklock/transport/ratelimit"
)

// accessModule provides who-may-do-what: the keys store (from --keys-file,
// or the built-in plans), the rate limiter, and the authenticator built from
// them. The keys file is re-read on SIGHUP.
func accessModule() fx.Option {
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
			// keys.Load names the file in a parse error; the flag's value
			// already does.
			var pathErr *os.PathError
			if inner := errors.Unwrap(err); inner != nil && !errors.As(err, &pathErr) {
				err = inner
			}
			return nil, settingError("--keys-file", cfg.KeysFile, err)
		}
	}
	return keys.NewStore(keys.NewIndex(file)), nil
}

func newAccess(cfg Config, store *keys.Store) (keyauth.Access, error) {
	trusted, err := ratelimit.ParseTrusted(cfg.TrustedProxies)
	if err != nil {
		return keyauth.Access{}, &SettingError{Flag: "--trusted-proxies", Value: strings.Join(cfg.TrustedProxies, ","), Err: err}
	}
	return keyauth.Access{Keys: store, BaseDomain: cfg.BaseDomain, TrustedProxies: trusted}, nil
}

// authenticator is the keys file's authenticator (API.md §5) in the shape
// transport takes: its Caller is transport's field for field.
func authenticator(a keyauth.Access) func(*http.Request) (transport.Caller, error) {
	auth := keyauth.New(a)
	return func(r *http.Request) (transport.Caller, error) {
		c, err := auth(r)
		return transport.Caller(c), err
	}
}

// keysReloader re-reads the keys file; without one there is nothing to
// reload (the built-in plans stay).
func keysReloader(cfg Config, store *keys.Store) []reloader {
	if cfg.KeysFile == "" {
		return nil
	}
	return []reloader{{name: "keys file", file: cfg.KeysFile, reload: func() error { return store.Reload(cfg.KeysFile) }}}
}
