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

// engineModule provides the locklock.Engine chosen by Config.Engine and
// closes it when the app stops (after the HTTP server has drained).
func engineModule() fx.Option {
	return fx.Module("engine", fx.Provide(newEngine))
}

// engineOut is the engine, and the report of its data directory's free
// space and of its group commits if it has them (Badger), for /readyz and
// /metrics.
type engineOut struct {
	fx.Out
	Engine  locklock.Engine
	Space   storageSpace
	Commits commitStats
}

func newEngine(lc fx.Lifecycle, cfg Config, log *slog.Logger) (engineOut, error) {
	var out engineOut
	switch cfg.Engine {
	case EngineMemory:
		out.Engine = memory.New()
	case EngineBadger:
		b, err := badger.Open(cfg.DataDir, badger.WithLogger(log.With("component", "badger")))
		if err != nil {
			return out, settingError("--data-dir", cfg.DataDir, err)
		}
		out.Engine, out.Space, out.Commits = b, b.Space, b.CommitStats
	case EngineEtcd:
		client, conns, err := newEtcdClient(cfg)
		if err != nil {
			return out, err
		}
		out.Engine = etcd.New(client, etcd.WithPrefix(cfg.Etcd.Prefix), etcd.WithRequestTimeout(cfg.Etcd.RequestTimeout))
		// Hooks stop in reverse order: the engine first, then the probe,
		// then their client.
		lc.Append(fx.StopHook(client.Close))
		probeEtcdMembers(lc, cfg, client, conns, log)
	default:
		return out, fmt.Errorf("engine %q is not available", cfg.Engine)
	}
	engine := out.Engine
	lc.Append(fx.StopHook(func(context.Context) error { return engine.Close() }))
	return out, nil
}
