// Package badger is a Locklock engine that keeps locks in a BadgerDB
// directory on local disk: durable across restarts, crashes and (with the
// default synchronous writes) power loss, for a single server process.
//
// Every writing step (acquire, release, refresh, the settling of an expired
// lock, a round of Sweep) is a read-modify-write that one goroutine, the
// committer, runs together with the other steps queued at the time, in
// arrival order, in one Badger transaction with one commit and one fsync
// (group commit, commit.go). A step is answered only once its batch is
// durable. Reads are direct read-only transactions. The key layout is
// described in keys.go, the record (holder, metadata and lock-delay
// included) in record.go.
//
// A lock with a lock-delay (API.md §8) that expires is not deleted but
// marked Ended, in the same step that judges it expired, and kept until its
// lock-delay has run out (ops.go): like the lock itself it survives
// restarts and crashes.
//
// Every change of a lock or of a semaphore's slot is reported as an event
// (API.md §9) once its batch has committed (events.go).
//
// Semaphores (API.md §10) live in tables of their own beside the locks
// (keys.go) and go through the same group commit, token counter, free-space
// guard and Sweep; semaphore.go says how their limit holds under
// concurrency.
//
// Fencing tokens come from one counter shared by all locks (tokens.go). A
// token is taken inside the acquiring step, after the lock key was read;
// steps run one at a time in the order they commit, so of two acquires of
// the same lock the later one sees the earlier one's lock (pending in its
// batch or committed) and takes a larger token. The counter persists a
// reserved upper bound before handing out tokens below it, so after a crash
// the next start continues above every token issued before.
package badger

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	bdg "github.com/dgraph-io/badger/v4"

	"github.com/locklock/locklock/locklock"
)

const (
	// tokenBandwidth is how many tokens one disk write reserves.
	// A crash loses at most this many (gaps are allowed); Close returns the
	// unused rest.
	tokenBandwidth = 1000

	// sweepBatch bounds the locks one round of Sweep deletes: one step of
	// the group commit (commit.go), small enough to keep its batch far
	// below Badger's size limit and the steps batched with it waiting
	// little.
	sweepBatch = 256
)

// Engine is the Badger engine. Create it with Open.
type Engine struct {
	dir    string
	db     *bdg.DB
	tokens *tokenLease
	space  *spaceGuard
	modes  *modeKeeper
	commit *committer

	// mu is held shared by every operation and exclusively by Close, so that
	// Close never pulls the database out from under a running transaction,
	// and the steps queued when Close is called are committed and answered
	// before the committer stops.
	mu     sync.RWMutex
	closed bool
}

var (
	_ locklock.Engine      = (*Engine)(nil)
	_ locklock.EventSource = (*Engine)(nil)
)

// Open opens (creating if needed) the Badger database in dir. Only one
// process, and one Engine, can have a directory open at a time; a second
// Open fails until the first is closed.
//
// The directory is made 0700 and its files 0600 (filemode.go). Open fails
// if the directory's filesystem has less than 16 MiB free, and while the
// engine runs it refuses writes when free space runs low (space.go).
func Open(dir string, opts ...Option) (*Engine, error) {
	if dir == "" {
		return nil, errors.New("badger engine: no data directory given")
	}
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	log := cfg.logger.With("engine", "badger")
	modes := &modeKeeper{dir: dir, log: log, chmod: cfg.chmod}
	if err := modes.prepareDir(); err != nil {
		return nil, fmt.Errorf("badger engine: open %s: %w", dir, err)
	}
	if err := checkOpenSpace(dir); err != nil {
		return nil, fmt.Errorf("badger engine: open %s: %w", dir, err)
	}
	db, err := bdg.Open(badgerOptions(dir, cfg))
	if err != nil {
		return nil, fmt.Errorf("badger engine: open %s: %w", dir, err)
	}
	modes.tightenFiles()
	tokens, err := loadTokenLease(db, tokenBandwidth, wallBase(time.Now()))
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("badger engine: open %s: read the fencing token bound: %w", dir, err)
	}
	e := &Engine{dir: dir, db: db, tokens: tokens, modes: modes}
	e.space = newSpaceGuard(dir, e.tableBytes, log)
	e.commit = startCommitter(db, cfg.commitGate, cfg.commitWith)
	return e, nil
}

// tableBytes is the size of Badger's tables on disk, all levels.
func (e *Engine) tableBytes() uint64 {
	var n int64
	for _, l := range e.db.Levels() {
		n += l.Size
	}
	return uint64(max(n, 0))
}

// Space reports the free space of the data directory's filesystem and what
// the engine refuses for lack of it, measured at most 100 ms ago. After
// Close it reports the last measurement.
func (e *Engine) Space() Space {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return e.space.last()
	}
	return e.space.current()
}

// admit is called by every operation just before it writes: nil, or an
// error wrapping locklock.ErrStorageFull while free space is below the
// reserve the operation may not use (space.go).
func (e *Engine) admit(need spaceNeed) error {
	e.modes.tightenFilesIfDue()
	return e.space.admit(need)
}

// enter is every operation's preamble: a closed engine or a done context
// applies nothing. On success the caller must call the returned func.
func (e *Engine) enter(ctx context.Context) (func(), error) {
	e.mu.RLock()
	if e.closed {
		e.mu.RUnlock()
		return nil, locklock.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		e.mu.RUnlock()
		return nil, err
	}
	return e.mu.RUnlock, nil
}

// enterID is enter for an operation on one lock, whose ID must fit the key
// layout.
func (e *Engine) enterID(ctx context.Context, id locklock.ID) (func(), error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	return e.enter(ctx)
}

// storageErr classifies an error from Badger: I/O and other failures become
// ErrUnavailable so that callers can tell "try again later" from a bug.
func storageErr(op string, err error) error {
	if errors.Is(err, bdg.ErrDBClosed) {
		return locklock.ErrClosed
	}
	return fmt.Errorf("%w: badger %s: %w", locklock.ErrUnavailable, op, err)
}

// update runs fn as one step of a group commit (commit.go) and returns once
// its batch has committed. fn returns errors already classified (locklock
// errors, an allow callback's error, storageErr); they are returned unchanged
// and nothing of fn's is written. An error fn decides before writing anything
// it wraps with answer, so that the batch's other steps commit without a
// rerun. fn records the events of its changes in ev (events.go). fn may run
// more than once.
func (e *Engine) update(ctx context.Context, fn stepFunc) error {
	return e.commit.submit(ctx, fn)
}

// view runs fn in a read-only transaction.
func (e *Engine) view(fn func(txn *bdg.Txn) error) error {
	txn := e.db.NewTransaction(false)
	defer txn.Discard()
	return fn(txn)
}

// Ping implements locklock.Engine by reading one key.
func (e *Engine) Ping(ctx context.Context) error {
	done, err := e.enter(ctx)
	if err != nil {
		return err
	}
	defer done()
	return e.view(func(txn *bdg.Txn) error {
		_, err := txn.Get(seqKey)
		if err != nil && !errors.Is(err, bdg.ErrKeyNotFound) {
			return storageErr("read", err)
		}
		return nil
	})
}

// Close implements locklock.Engine. It returns the unused part of the token
// lease, then closes the database and frees the directory. Calling it again
// does nothing.
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	// No operation is in flight (they hold mu), so every step has been
	// answered: the committer is idle.
	e.commit.close()
	var errs []error
	// Giving the lease back is a write; without room for it the next start
	// merely skips the rest of the block.
	if e.space.admit(needRelease) == nil {
		if err := e.tokens.giveBack(); err != nil {
			errs = append(errs, fmt.Errorf("release token lease: %w", err))
		}
	}
	if err := e.db.Close(); err != nil {
		errs = append(errs, err)
	}
	e.modes.tightenFiles() // the tables the final flush wrote
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("badger engine: close: %w", err)
	}
	return nil
}
