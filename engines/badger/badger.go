// Package badger is a Locklock engine that keeps locks in a BadgerDB
// directory on local disk: durable across restarts, crashes and (with the
// default synchronous writes) power loss, for a single server process.
//
// Every writing step (acquire, release, refresh, the removal of an expired
// lock, a round of Sweep) is a read-modify-write that one goroutine, the
// committer, runs together with the other steps queued at the time, in
// arrival order, in one Badger transaction with one commit and one fsync
// (group commit, commit.go). A step is answered only once its batch is
// durable. Reads are direct read-only transactions. The key layout is
// described in keys.go.
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

var _ locklock.Engine = (*Engine)(nil)

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
	e.commit = startCommitter(db, cfg.commitGate)
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
// rerun. fn may run more than once.
func (e *Engine) update(ctx context.Context, fn func(txn *bdg.Txn) error) error {
	return e.commit.submit(ctx, fn)
}

// view runs fn in a read-only transaction.
func (e *Engine) view(fn func(txn *bdg.Txn) error) error {
	txn := e.db.NewTransaction(false)
	defer txn.Discard()
	return fn(txn)
}

// getLock reads the stored record for id, live or not.
func getLock(txn *bdg.Txn, id locklock.ID) (locklock.Lock, bool, error) {
	item, err := txn.Get(lockKey(id))
	if errors.Is(err, bdg.ErrKeyNotFound) {
		return locklock.Lock{}, false, nil
	}
	if err != nil {
		return locklock.Lock{}, false, storageErr("read", err)
	}
	var l locklock.Lock
	err = item.Value(func(v []byte) error {
		var derr error
		l, derr = decodeRecord(id, v)
		return derr
	})
	if err != nil {
		if errors.Is(err, errCorrupt) {
			return locklock.Lock{}, false, err
		}
		return locklock.Lock{}, false, storageErr("read", err)
	}
	return l, true, nil
}

// liveLock reads the live lock for id. An expired record it finds is
// deleted in the same step: once one operation has judged a lock expired,
// an operation still carrying an earlier clock reading must not find it
// alive again (the Service reads the clock before calling the engine).
//
// The removal uses the releases' share of the free-space reserve.
func (e *Engine) liveLock(txn *bdg.Txn, id locklock.ID, now time.Time) (locklock.Lock, bool, error) {
	cur, found, err := getLock(txn, id)
	if err != nil || !found {
		return locklock.Lock{}, false, err
	}
	if !cur.Live(now) {
		if err := e.admit(needRelease); err != nil {
			return locklock.Lock{}, false, answer(err)
		}
		return locklock.Lock{}, false, remove(txn, cur)
	}
	return cur, true, nil
}

// put writes l's record and its expiry index entry.
func put(txn *bdg.Txn, l locklock.Lock) error {
	if err := txn.Set(lockKey(l.ID), encodeRecord(l)); err != nil {
		return storageErr("write", err)
	}
	if err := txn.Set(expiryKey(l.ExpiresAt, l.ID), []byte{}); err != nil {
		return storageErr("write", err)
	}
	return nil
}

// remove deletes l's record and its expiry index entry.
func remove(txn *bdg.Txn, l locklock.Lock) error {
	if err := txn.Delete(lockKey(l.ID)); err != nil {
		return storageErr("delete", err)
	}
	return deleteKey(txn, expiryKey(l.ExpiresAt, l.ID))
}

func deleteKey(txn *bdg.Txn, k []byte) error {
	if err := txn.Delete(k); err != nil {
		return storageErr("delete", err)
	}
	return nil
}

// nextToken takes a fencing token.
func (e *Engine) nextToken() (uint64, error) {
	n, err := e.tokens.take()
	if err != nil {
		return 0, storageErr("reserve fencing tokens", err)
	}
	return n, nil
}

// TryAcquire implements locklock.Engine. The returned lock has UTC times at
// millisecond precision, exactly as stored.
func (e *Engine) TryAcquire(ctx context.Context, l locklock.Lock, now time.Time) (locklock.Lock, error) {
	done, err := e.enterID(ctx, l.ID)
	if err != nil {
		return locklock.Lock{}, err
	}
	defer done()
	l = normalize(l)
	err = e.update(ctx, func(txn *bdg.Txn) error {
		cur, found, err := getLock(txn, l.ID)
		if err != nil {
			return err
		}
		if found && cur.Live(now) {
			return answer(&locklock.HeldError{Lock: cur}) // not a write: served however full the disk
		}
		if err := e.admit(needWrite); err != nil {
			return answer(err)
		}
		if found {
			// An expired lock not yet swept: replace it, index entry too.
			if err := deleteKey(txn, expiryKey(cur.ExpiresAt, cur.ID)); err != nil {
				return err
			}
		}
		// Only now, after the lock key was read, take the token (see the
		// package comment for why the order matters). A failure here follows
		// the write above: it is not an answer, and the step is taken out of
		// its batch (commit.go).
		if l.Token, err = e.nextToken(); err != nil {
			return err
		}
		if err := put(txn, l); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return locklock.Lock{}, err
	}
	return l, nil
}

// Get implements locklock.Engine.
func (e *Engine) Get(ctx context.Context, id locklock.ID, now time.Time) (locklock.Lock, error) {
	done, err := e.enterID(ctx, id)
	if err != nil {
		return locklock.Lock{}, err
	}
	defer done()
	var (
		out     locklock.Lock
		expired bool
	)
	err = e.view(func(txn *bdg.Txn) error {
		cur, found, err := getLock(txn, id)
		switch {
		case err != nil:
			return err
		case !found:
			return locklock.ErrNotFound
		case !cur.Live(now):
			expired = true
			return nil
		}
		out = cur
		return nil
	})
	if expired {
		// Rare (expired, not yet swept): delete it in a read-write
		// transaction for the reason liveLock gives.
		return e.deleteExpired(ctx, id, now)
	}
	return out, err
}

// deleteExpired removes id's record if it is still expired at now and then
// reports ErrNotFound. If the record is live by now (acquired anew, or
// refreshed by an operation judged at an earlier instant that committed
// first), it returns that lock: the caller's operation then takes effect
// after that commit.
//
// Reads are served however full the disk: when the deletion is refused for
// lack of space (ErrStorageFull, below the releases' reserve), no write is
// admitted that could make the lock live again, and the answer is
// ErrNotFound without the deletion.
func (e *Engine) deleteExpired(ctx context.Context, id locklock.ID, now time.Time) (locklock.Lock, error) {
	l, err := e.changeEntered(ctx, id, now, func(locklock.Lock) error { return nil },
		func(_ *bdg.Txn, cur locklock.Lock) (locklock.Lock, error) { return cur, nil })
	if errors.Is(err, locklock.ErrStorageFull) {
		return locklock.Lock{}, locklock.ErrNotFound
	}
	return l, err
}

// Release implements locklock.Engine.
func (e *Engine) Release(ctx context.Context, id locklock.ID, now time.Time, allow func(locklock.Lock) error) (locklock.Lock, error) {
	return e.change(ctx, id, now, allow, func(txn *bdg.Txn, cur locklock.Lock) (locklock.Lock, error) {
		// Refusing a release keeps the lock held: releases may use more
		// of the free-space reserve than acquires and refreshes.
		if err := e.admit(needRelease); err != nil {
			return locklock.Lock{}, answer(err)
		}
		return cur, remove(txn, cur)
	})
}

// Refresh implements locklock.Engine. It moves the lock's expiry index
// entry along with its expiry.
func (e *Engine) Refresh(ctx context.Context, id locklock.ID, now, expiresAt time.Time, allow func(locklock.Lock) error) (locklock.Lock, error) {
	expiresAt = millis(expiresAt)
	return e.change(ctx, id, now, allow, func(txn *bdg.Txn, cur locklock.Lock) (locklock.Lock, error) {
		if err := e.admit(needWrite); err != nil {
			return locklock.Lock{}, answer(err)
		}
		// Delete before put: when the expiry does not change, the put
		// writes the same index key again and must win.
		if err := deleteKey(txn, expiryKey(cur.ExpiresAt, cur.ID)); err != nil {
			return locklock.Lock{}, err
		}
		cur.ExpiresAt = expiresAt
		return cur, put(txn, cur)
	})
}

// change is Release's and Refresh's common step: in one transaction, find
// the live lock (removing an expired one), ask allow, and apply write.
func (e *Engine) change(ctx context.Context, id locklock.ID, now time.Time, allow func(locklock.Lock) error,
	write func(txn *bdg.Txn, cur locklock.Lock) (locklock.Lock, error)) (locklock.Lock, error) {
	done, err := e.enterID(ctx, id)
	if err != nil {
		return locklock.Lock{}, err
	}
	defer done()
	return e.changeEntered(ctx, id, now, allow, write)
}

// changeEntered is change for a caller that has already entered the engine.
func (e *Engine) changeEntered(ctx context.Context, id locklock.ID, now time.Time, allow func(locklock.Lock) error,
	write func(txn *bdg.Txn, cur locklock.Lock) (locklock.Lock, error)) (locklock.Lock, error) {
	var (
		out   locklock.Lock
		found bool
	)
	err := e.update(ctx, func(txn *bdg.Txn) error {
		out = locklock.Lock{} // a rerun starts over
		cur, ok, err := e.liveLock(txn, id, now)
		if found = ok; err != nil || !found {
			return err // commits the removal of an expired record, if any
		}
		if err := allow(cur); err != nil {
			return answer(err)
		}
		out, err = write(txn, cur)
		return err
	})
	switch {
	case err != nil:
		return locklock.Lock{}, err
	case !found:
		return locklock.Lock{}, locklock.ErrNotFound
	}
	return out, nil
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
