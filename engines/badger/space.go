package badger

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/locklock/locklock/locklock"
)

// Free space.
//
// Badger writes its write-ahead log (the memtable files, *.mem) and its
// tables (*.sst) through mmap into files that it first extends with
// ftruncate. Such files are sparse: a block is allocated only when a page is
// first written, and when the filesystem has no block left for that page the
// kernel answers the write with SIGBUS, which kills the process. Badger
// cannot turn that into an error, and the files are created and written by
// Badger itself, so they cannot be preallocated from outside either. So the
// engine watches the free space of the data directory's filesystem (statfs,
// as etcd watches its space quota) and refuses writes while it is below a
// reserve that leaves Badger room for everything it may still write on its
// own: see the reserves below. Reads are always served.
//
// The numbers follow from the Badger options in options.go (memtables of
// memTableSize, at most numMemTables of them):
//
//   - A memtable's WAL holds at most memTableSize plus one batch (15 %),
//     4.6 MiB; flushing it writes an L0 table no larger than what it holds
//     (measured: 1.6 MB from a full 4 MiB WAL; 6.2 MB from Badger's 16 MiB
//     before) before the WAL file is deleted. At most numMemTables memtables
//     hold unflushed data, so flushing all of them needs at most 14 MiB.
//   - A compaction writes its output tables before it deletes its input
//     tables, and the output is at most as large as the input: at most
//     every table (the LSM size, which the engine asks Badger for) plus the
//     tables the flushes just wrote.
//
// So releaseReserve = LSM size + 32 MiB (2 × 14 MiB, rounded up) is what
// Badger may need after the last admitted write: below it even releases
// and the sweeper's deletions are refused. writeReserve = releaseReserve +
// 32 MiB: the 32 MiB are for releases after acquires stopped (a release
// writes about 200 bytes of WAL: room for 150,000 of them, and the flushes
// they cause raise the LSM term themselves) and for the writes admitted
// while the last measurement was fresh (spaceCheckEvery: well under 1 MiB
// at Badger's rate). Refusing a release keeps a lock held until it expires,
// so releases stop last.
//
// Measured on a tmpfs, statfs sampled every 5 ms, four writers for 60 s:
// acquire-or-release over 50,000 names (1.2 million operations): tables
// 2.6-8.9 MB, usage at most 4.3 MB above the previous second's; acquires
// only (1.09 million locks held at the end): tables up to 115 MB, usage at
// most 22 MB above the previous second's, during compactions into the
// bottom level. Transients grow with the tables, which is why the reserve
// does too; both stay well inside it.
const (
	releaseHeadroom = 32 << 20
	writeMargin     = 32 << 20
	// resumeMargin is how far above a reserve free space must rise before
	// the refused writes are accepted again, so that a flush or compaction
	// moving free space back and forth across a reserve does not flap the
	// state (and the log): a flush deletes a WAL of up to 4.6 MiB.
	resumeMargin = 8 << 20
	// minOpenFree is what Open needs free: opening replays the WALs of up
	// to numMemTables memtables and flushes the full ones, and creates a new
	// WAL and value log (a page each). Below it Open fails with an error
	// instead of risking SIGBUS.
	minOpenFree = 16 << 20
	// spaceCheckEvery bounds how old the measurement a write is admitted
	// by can be. statfs and Badger's level sizes are cheap in-memory reads,
	// so ten a second cost nothing next to one fsync.
	spaceCheckEvery = 100 * time.Millisecond
)

// Space is the free-space state of the data directory's filesystem.
type Space struct {
	// Known is false when free space cannot be measured (statfs failed, or
	// the platform has none); nothing is refused then.
	Known bool
	// Free is the bytes that may still be allocated on the filesystem
	// (statfs f_bavail × f_bsize).
	Free uint64
	// WriteReserve: while Free is below it, acquires and refreshes are
	// refused (with locklock.ErrStorageFull).
	WriteReserve uint64
	// ReleaseReserve (smaller): while Free is below it, releases and the
	// sweeper's deletions are refused too.
	ReleaseReserve uint64
	// WritesRefused and ReleasesRefused say what is refused now. Once
	// refused, writes are accepted again when Free has risen 8 MiB above
	// the reserve.
	WritesRefused, ReleasesRefused bool
}

// spaceNeed says which reserve an operation may use.
type spaceNeed int

const (
	needWrite   spaceNeed = iota // acquire, refresh: stop at writeReserve
	needRelease                  // release, sweep, removing an expired lock: stop at releaseReserve
)

// spaceGuard keeps the latest Space, measured at most every
// spaceCheckEvery, and logs when the state changes.
type spaceGuard struct {
	dir   string
	free  func(dir string) (uint64, error) // statfs
	lsm   func() uint64                    // bytes in Badger's tables
	log   *slog.Logger
	every time.Duration

	state   atomic.Pointer[measured]
	measure sync.Mutex // one measurement at a time
}

type measured struct {
	Space
	at  time.Time
	err error // why it is not Known
}

func newSpaceGuard(dir string, lsm func() uint64, log *slog.Logger) *spaceGuard {
	g := &spaceGuard{dir: dir, free: freeBytes, lsm: lsm, log: log, every: spaceCheckEvery}
	g.state.Store(&measured{})
	return g
}

// current returns the latest state, measuring anew if it is older than
// g.every. While another goroutine measures, it returns the previous state
// rather than waiting.
func (g *spaceGuard) current() Space {
	s := g.state.Load()
	if time.Since(s.at) < g.every || !g.measure.TryLock() {
		return s.Space
	}
	defer g.measure.Unlock()
	if s = g.state.Load(); time.Since(s.at) < g.every {
		return s.Space // measured while this goroutine waited for the lock
	}
	next := g.measureNow(s)
	g.state.Store(next)
	return next.Space
}

// last returns the latest state without measuring.
func (g *spaceGuard) last() Space { return g.state.Load().Space }

func (g *spaceGuard) measureNow(prev *measured) *measured {
	now := time.Now()
	free, err := g.free(g.dir)
	if err != nil {
		if !errors.Is(err, errors.ErrUnsupported) && (prev.err == nil || prev.err.Error() != err.Error()) {
			g.log.Warn("cannot measure the data directory's free space; writes are accepted without a free-space check",
				"dir", g.dir, "err", err)
		}
		return &measured{at: now, err: err}
	}
	release := g.lsm() + releaseHeadroom
	write := release + writeMargin
	s := Space{Known: true, Free: free, WriteReserve: write, ReleaseReserve: release}
	s.WritesRefused = free < write || prev.WritesRefused && free < write+resumeMargin
	s.ReleasesRefused = free < release || prev.ReleasesRefused && free < release+resumeMargin
	g.logChange(prev.Space, s)
	return &measured{Space: s, at: now}
}

// logChange writes one line for each change of state: warn when writes
// become refused, info when they are accepted again.
func (g *spaceGuard) logChange(prev, s Space) {
	attrs := []any{"dir", g.dir, "free_bytes", s.Free, "write_reserve_bytes", s.WriteReserve, "release_reserve_bytes", s.ReleaseReserve}
	switch {
	case s.ReleasesRefused && !prev.ReleasesRefused:
		g.log.Warn("data directory nearly out of free space: refusing acquires, refreshes and releases until space is freed; reads are served", attrs...)
	case s.WritesRefused && !prev.WritesRefused:
		g.log.Warn("data directory low on free space: refusing acquires and refreshes until space is freed; releases and reads are served", attrs...)
	case !s.WritesRefused && prev.WritesRefused:
		g.log.Info("data directory has free space again: accepting acquires, refreshes and releases", attrs...)
	case !s.ReleasesRefused && prev.ReleasesRefused:
		g.log.Info("data directory has some free space again: accepting releases; acquires and refreshes are still refused", attrs...)
	}
}

// admit says whether an operation that needs the given reserve may write
// now: nil, or an error wrapping locklock.ErrStorageFull.
func (g *spaceGuard) admit(need spaceNeed) error {
	s := g.current()
	switch {
	case need == needWrite && s.WritesRefused:
		return fmt.Errorf("%w: badger engine: %d bytes free in %s, below the %d kept in reserve; acquires and refreshes are refused",
			locklock.ErrStorageFull, s.Free, g.dir, s.WriteReserve)
	case s.ReleasesRefused:
		return fmt.Errorf("%w: badger engine: %d bytes free in %s, below the %d kept in reserve for releases",
			locklock.ErrStorageFull, s.Free, g.dir, s.ReleaseReserve)
	}
	return nil
}

// checkOpenSpace refuses to open a directory whose filesystem is too full
// for Badger's own writes at open (see minOpenFree).
func checkOpenSpace(dir string) error {
	free, err := freeBytes(dir)
	if errors.Is(err, errors.ErrUnsupported) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("measure free space: %w", err)
	}
	if free < minOpenFree {
		return fmt.Errorf("only %d bytes free on its filesystem; opening needs at least %d (16 MiB): free some space", free, minOpenFree)
	}
	return nil
}
