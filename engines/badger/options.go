package badger

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// Option configures the engine.
type Option func(*config)

type config struct {
	logger     *slog.Logger
	syncWrites bool
}

func defaultConfig() config {
	return config{logger: slog.Default(), syncWrites: true}
}

// WithLogger sends Badger's own log lines to l: its chatty Info and Debug
// lines at Debug, warnings at Warn, errors at Error. The default is
// slog.Default(). A nil l discards them.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l == nil {
			l = slog.New(slog.DiscardHandler)
		}
		c.logger = l
	}
}

// WithSyncWrites says whether every commit is fsynced before it is
// acknowledged. The default, true, is what makes an acknowledged acquire or
// release survive a crash or power loss and keeps fencing tokens rising
// across one; turn it off only for tests or benchmarks.
func WithSyncWrites(sync bool) Option { return func(c *config) { c.syncWrites = sync } }

// slogAdapter implements Badger's Logger interface on top of slog.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Errorf(f string, v ...any)   { a.log(slog.LevelError, f, v) }
func (a slogAdapter) Warningf(f string, v ...any) { a.log(slog.LevelWarn, f, v) }

// Badger reports every flush, compaction and replay at Info; for a lock
// service that is noise, so it goes to Debug.
func (a slogAdapter) Infof(f string, v ...any)  { a.log(slog.LevelDebug, f, v) }
func (a slogAdapter) Debugf(f string, v ...any) { a.log(slog.LevelDebug, f, v) }

func (a slogAdapter) log(level slog.Level, f string, v []any) {
	ctx := context.Background()
	if !a.l.Enabled(ctx, level) {
		return // skip formatting lines nobody reads
	}
	a.l.Log(ctx, level, strings.TrimRight(fmt.Sprintf(f, v...), "\n"))
}
