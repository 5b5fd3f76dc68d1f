package app

import (
	"context"
	"fmt"
	"log/slog"

	"go.uber.org/fx"

	"github.com/locklock/locklock/engines/badger"
	"github.com/locklock/locklock/engines/etcd"
	"github.com/locklock/locklock/engines/memory"
	"github.com/locklock/locklock/locklock"
)

// EngineModule provides the locklock.Engine chosen by Config.Engine and
// closes it when the app stops (after the HTTP server has drained).
func EngineModule() fx.Option {
	return fx.Module("engine", fx.Provide(newEngine))
}

func newEngine(lc fx.Lifecycle, cfg Config, log *slog.Logger) (locklock.Engine, error) {
	var (
		engine locklock.Engine
		err    error
	)
	switch cfg.Engine {
	case EngineMemory:
		engine = memory.New()
	case EngineBadger:
		engine, err = badger.Open(cfg.DataDir, badger.WithLogger(log.With("component", "badger")))
		if err != nil {
			return nil, fmt.Errorf("open badger in %s: %w", cfg.DataDir, err)
		}
	case EngineEtcd:
		client, conns, err := newEtcdClient(cfg)
		if err != nil {
			return nil, err
		}
		engine = etcd.New(client, etcd.WithPrefix(cfg.Etcd.Prefix), etcd.WithRequestTimeout(cfg.Etcd.RequestTimeout))
		// Hooks stop in reverse order: the engine first, then the probe,
		// then their client.
		lc.Append(fx.StopHook(client.Close))
		probeEtcdMembers(lc, cfg, client, conns, log)
	default:
		return nil, fmt.Errorf("engine %q is not available", cfg.Engine)
	}
	lc.Append(fx.StopHook(func(context.Context) error { return engine.Close() }))
	return engine, nil
}
