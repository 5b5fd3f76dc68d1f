package app

import (
	"time"

	"go.uber.org/fx"

	"github.com/locklock/locklock/internal/metrics"
	"github.com/locklock/locklock/locklock"
)

// metricsModule provides the server's *metrics.Metrics and reports the
// Service's waiters, the engine's held locks and, for Badger, the data
// directory's free space and the group commits' batch sizes and durations
// through it. Engine latency
// is observed by wrapping the engine (see Modules).
func metricsModule() fx.Option {
	return fx.Module("metrics",
		fx.Provide(metrics.New),
		fx.Invoke(watch),
	)
}

// heldCountAge bounds how often a scrape may make the engine count its
// locks (a scan on Badger); heldCountTimeout bounds one count.
const (
	heldCountAge     = 10 * time.Second
	heldCountTimeout = 5 * time.Second
)

func watch(m *metrics.Metrics, svc *locklock.Service, engine locklock.Engine, space storageSpace, commits commitStats) {
	m.WatchService(svc)
	m.WatchLocks(engine, time.Now, heldCountAge, heldCountTimeout)
	if space != nil {
		m.WatchStorage(space.metrics)
	}
	if commits != nil {
		m.WatchCommits(commits.metrics)
	}
}

// instrumentEngine is a decorator: every engine operation is timed. The
// wrapper keeps the engine's optional abilities (semaphores, events), which
// the Service finds by type assertion: a wrapper that hid them would leave
// the standalone server without them.
func instrumentEngine(e locklock.Engine, m *metrics.Metrics) locklock.Engine { return m.Engine(e) }
