package badger

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	bdg "github.com/dgraph-io/badger/v4"
)

// Option configures the engine.
type Option func(*config)

type config struct {
	logger     *slog.Logger
	syncWrites bool
	chmod      func(string, os.FileMode) error // os.Chmod; tests make it fail
	commitGate <-chan struct{}                 // tests: see committer.gate
	commitWith func(*bdg.Txn, func(error))     // tests: see committer.commitWith
}

func defaultConfig() config {
	return config{logger: slog.Default(), syncWrites: true, chmod: os.Chmod}
}

// Badger's defaults suit a large database. Lock records are under 100
// bytes, so small memtables, cache and value-log files keep the footprint
// modest without touching durability, and small memtables keep small the
// free space the engine must hold in reserve for Badger (space.go).
const (
	// memTableSize: a memtable's WAL file is twice this long (sparse); it is
	// flushed to an L0 table when it holds this much. 4 MiB is about 25,000
	// acquire-and-release cycles, several seconds of Badger's fsync-bound
	// rate, so flushes stay rare; Badger's default is 64 MiB.
	memTableSize = 4 << 20
	// numMemTables bounds the memtables holding unflushed data (one being
	// written, up to two waiting for Badger's flusher; Badger's default is
	// 5), and so the space and memory they take. Writes wait for a flush only
	// when two are already waiting, that is when flushing 4 MiB takes longer
	// than writing 8 MiB.
	numMemTables = 3
	// valueThreshold keeps every value in the LSM tree (a lock record is at
	// most 73 bytes), so the value log is never written beyond its header
	// and never needs garbage collection. It must not exceed Badger's batch
	// size, 15 % of memTableSize.
	valueThreshold = 1 << 10
	// valueLogFileSize: the value log file is created sparse at twice this
	// size and, with nothing above valueThreshold, only its header is ever
	// written; 1 MiB (Badger's minimum) keeps its apparent size small.
	valueLogFileSize = 1 << 20
)

func badgerOptions(dir string, cfg config) bdg.Options {
	return bdg.DefaultOptions(dir).
		WithSyncWrites(cfg.syncWrites).
		WithLogger(slogAdapter{cfg.logger.With("engine", "badger")}).
		WithMemTableSize(memTableSize).
		WithNumMemtables(numMemTables).
		WithValueThreshold(valueThreshold).
		WithValueLogFileSize(valueLogFileSize).
		WithBlockCacheSize(16 << 20).
		WithNumCompactors(2).
		WithMetricsEnabled(false) // expvar metrics nobody exports
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

// withCommitGate makes the committer receive from gate before it takes each
// batch, so that a test can queue steps and release them as one batch.
func withCommitGate(gate <-chan struct{}) Option { return func(c *config) { c.commitGate = gate } }

// withCommitWith makes the committer start each commit with f in place of
// (*bdg.Txn).CommitWith, so that a test can delay or fail a commit.
func withCommitWith(f func(txn *bdg.Txn, cb func(error))) Option {
	return func(c *config) { c.commitWith = f }
}

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
