package app

import (
	"context"
	"log/slog"
	"sync"

	"go.uber.org/fx"

	"github.com/locklock/locklock/internal/metrics"
	"github.com/locklock/locklock/locklock"
)

// serviceModule provides the *locklock.Service and runs its sweeper for the
// app's lifetime.
func serviceModule() fx.Option {
	return fx.Module("service", fx.Provide(newService))
}

func newService(lc fx.Lifecycle, cfg Config, engine locklock.Engine, m *metrics.Metrics, log *slog.Logger) *locklock.Service {
	svc := locklock.NewService(engine,
		locklock.WithAcquireObserver(m.AcquireDone),
		locklock.WithSlotObserver(m.SlotDone),
		locklock.WithLogger(log),
		locklock.WithDefaultTTL(cfg.DefaultTTL),
		locklock.WithMaxTTL(cfg.MaxTTL),
		locklock.WithMaxWait(cfg.MaxWait),
		locklock.WithMaxLockDelay(cfg.MaxLockDelay),
		locklock.WithMaxWaiters(cfg.MaxWaiters),
		locklock.WithMaxWaitersPerLock(cfg.MaxWaitersPerLock),
		locklock.WithMaxWatchers(cfg.MaxWatchers),
		locklock.WithMaxWatchersPerCaller(cfg.MaxWatchersPerCaller),
	)
	var (
		stop context.CancelFunc
		done sync.WaitGroup
	)
	lc.Append(fx.Hook{
		OnStart: func(context.Context) error {
			// The sweeper outlives OnStart's context, so it gets its own.
			var ctx context.Context
			ctx, stop = context.WithCancel(context.Background())
			done.Go(func() { svc.RunSweeper(ctx, cfg.SweepInterval) })
			return nil
		},
		OnStop: func(context.Context) error {
			stop()
			done.Wait()
			return nil
		},
	})
	return svc
}
