package badger

import (
	"context"
	"errors"
	"time"

	bdg "github.com/dgraph-io/badger/v4"

	"github.com/locklock/locklock/locklock"
)

// Steps on one lock: TryAcquire, Get, Release, Refresh.
//
// Expiry and lock-delay (locklock.Engine). A step that finds a lock expired
// settles it in the same step: it deletes the record, or — while the lock's
// lock-delay runs — marks it Ended and moves its index entry from the
// expiry index to the delay index (keys.go). Either way a step judged at an
// earlier instant that commits later finds the lock gone and cannot revive
// it: an Ended record is never live, whatever instant a step carries. So a
// step that finds a record already Ended needs to write nothing, and reads
// and barred acquires leave it as it is; the sweeper deletes it once its
// lock-delay has run out.

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

// put writes l's record and its index entry.
func put(txn *bdg.Txn, l locklock.Lock) error {
	if err := txn.Set(lockKey(l.ID), encodeRecord(l)); err != nil {
		return storageErr("write", err)
	}
	if err := txn.Set(indexKey(l), []byte{}); err != nil {
		return storageErr("write", err)
	}
	return nil
}

// remove deletes l's record and its index entry.
func remove(txn *bdg.Txn, l locklock.Lock) error {
	if err := txn.Delete(lockKey(l.ID)); err != nil {
		return storageErr("delete", err)
	}
	return deleteKey(txn, indexKey(l))
}

// replace writes l in place of cur, a record of the same lock: the record
// and its index entry, which may move.
func replace(txn *bdg.Txn, cur, l locklock.Lock) error {
	// Delete before put: when the index key does not change, the put
	// writes it again and must win (last write wins within a transaction).
	if err := deleteKey(txn, indexKey(cur)); err != nil {
		return err
	}
	return put(txn, l)
}

func deleteKey(txn *bdg.Txn, k []byte) error {
	if err := txn.Delete(k); err != nil {
		return storageErr("delete", err)
	}
	return nil
}

// settle writes what judging cur, which is not live at now, leaves: cur
// marked Ended while its lock-delay runs (returned, with keep true), else
// nothing (cur deleted). A record already marked Ended whose lock-delay runs
// is left unwritten. A record not Ended yet is reported expired (events.go).
// It does not check for space: see end.
func settle(txn *bdg.Txn, ev *eventLog, cur locklock.Lock, now time.Time) (ended locklock.Lock, keep bool, err error) {
	ended, keep = cur.End(now)
	switch {
	case keep && cur.Ended:
		return ended, true, nil
	case keep:
		err = replace(txn, cur, ended)
	default:
		ended, err = locklock.Lock{}, remove(txn, cur)
	}
	if err == nil {
		ev.expired(cur)
	}
	return ended, keep, err
}

// end is settle for a step that has written nothing yet. Settling uses the
// releases' share of the free-space reserve; when that is refused, end
// writes nothing and returns answer(ErrStorageFull).
func (e *Engine) end(txn *bdg.Txn, ev *eventLog, cur locklock.Lock, now time.Time) (locklock.Lock, bool, error) {
	if ended, keep := cur.End(now); !(keep && cur.Ended) {
		if err := e.admit(needRelease); err != nil {
			return ended, keep, answer(err)
		}
	}
	return settle(txn, ev, cur, now)
}

// gone is the answer for a record that is not live at now, as a step would
// settle it: a *DelayedError while its lock-delay runs, else ErrNotFound.
func gone(cur locklock.Lock, now time.Time) error {
	if ended, keep := cur.End(now); keep {
		return &locklock.DelayedError{Lock: ended}
	}
	return locklock.ErrNotFound
}

// nextToken takes a fencing token.
func (e *Engine) nextToken() (uint64, error) {
	n, err := e.tokens.take()
	if err != nil {
		return 0, storageErr("reserve fencing tokens", err)
	}
	return n, nil
}

// TryAcquire implements locklock.Engine. The returned lock is normalized
// (record.go: UTC times at millisecond precision), exactly as stored.
func (e *Engine) TryAcquire(ctx context.Context, l locklock.Lock, now time.Time) (locklock.Lock, error) {
	done, err := e.enterID(ctx, l.ID)
	if err != nil {
		return locklock.Lock{}, err
	}
	defer done()
	cand := l // Bars reads Reclaims, which normalize drops
	l = normalize(l)
	var barred error // a lock-delay's answer, after its record was marked Ended
	err = e.update(ctx, func(txn *bdg.Txn, ev *eventLog) error {
		barred = nil // a rerun starts over
		cur, found, err := getLock(txn, l.ID)
		if err != nil {
			return err
		}
		if found {
			if cur.Live(now) {
				return answer(&locklock.HeldError{Lock: cur}) // not a write: served however full the disk
			}
			if ended, keep := cur.End(now); keep {
				if bar := ended.Bars(cand, now); bar != nil {
					// The lock-delay holds: record the lock's end in
					// this step (see the top of this file) and answer
					// after the commit. Without room to write it, answer
					// at once, as Get does.
					if _, _, err := e.end(txn, ev, cur, now); err != nil {
						if errors.Is(err, locklock.ErrStorageFull) {
							return answer(bar)
						}
						return err
					}
					barred = bar
					return nil
				}
			}
		}
		if err := e.admit(needWrite); err != nil {
			return answer(err)
		}
		if found {
			// An expired record, or one whose lock-delay is over or that
			// this acquire reclaims: replaced, index entry too.
			if err := deleteKey(txn, indexKey(cur)); err != nil {
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
		if found {
			ev.expired(cur) // judged expired here, unless ended before
		}
		ev.add(locklock.EventAcquired, now, l)
		return nil
	})
	switch {
	case err != nil:
		return locklock.Lock{}, err
	case barred != nil:
		return locklock.Lock{}, barred
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
		case cur.Live(now):
			out = cur
			return nil
		case cur.Ended:
			return gone(cur, now) // settled already: nothing to write
		}
		out, expired = cur, true
		return nil
	})
	if expired {
		// Rare (expired, not yet swept): settle it in a read-write
		// transaction for the reason the top of this file gives.
		return e.deleteExpired(ctx, out, now)
	}
	// What was read may be a commit whose events are not reported yet
	// (events.go): a stream starting from this state must not get them
	// after it.
	if werr := e.commit.awaitReported(ctx); werr != nil {
		return locklock.Lock{}, werr
	}
	return out, err
}

// deleteExpired settles seen, a record read expired at now (deleted, or
// marked Ended), and then answers as gone does. If the record is live by
// now (acquired anew, or refreshed by an operation judged at an earlier
// instant that committed first), it returns that lock: the caller's
// operation then takes effect after that commit.
//
// Reads are served however full the disk: when settling is refused for
// lack of space (ErrStorageFull, below the releases' reserve), no write is
// admitted that could make the lock live again, and the answer is as if
// it had been settled.
func (e *Engine) deleteExpired(ctx context.Context, seen locklock.Lock, now time.Time) (locklock.Lock, error) {
	l, err := e.changeEntered(ctx, seen.ID, now, allowAny,
		func(_ *bdg.Txn, _ *eventLog, cur locklock.Lock) (locklock.Lock, error) { return cur, nil })
	if errors.Is(err, locklock.ErrStorageFull) {
		return locklock.Lock{}, gone(seen, now)
	}
	return l, err
}

// Release implements locklock.Engine. It deletes the record outright: a
// release by the holder leaves no lock-delay.
func (e *Engine) Release(ctx context.Context, id locklock.ID, now time.Time, allow func(locklock.Lock) error) (locklock.Lock, error) {
	return e.change(ctx, id, now, allow, func(txn *bdg.Txn, ev *eventLog, cur locklock.Lock) (locklock.Lock, error) {
		// Refusing a release keeps the lock held: releases may use more
		// of the free-space reserve than acquires and refreshes.
		if err := e.admit(needRelease); err != nil {
			return locklock.Lock{}, answer(err)
		}
		if err := remove(txn, cur); err != nil {
			return locklock.Lock{}, err
		}
		ev.add(locklock.EventReleased, now, cur)
		return cur, nil
	})
}

// Revoke implements locklock.Engine. With a lock-delay the record stays,
// Ended and Revoked, its index entry moved to the delay index.
func (e *Engine) Revoke(ctx context.Context, id locklock.ID, now time.Time) (locklock.Lock, error) {
	return e.change(ctx, id, now, allowAny, func(txn *bdg.Txn, ev *eventLog, cur locklock.Lock) (locklock.Lock, error) {
		if err := e.admit(needRelease); err != nil {
			return locklock.Lock{}, answer(err)
		}
		ended, keep := cur.Revoke(now)
		ended = normalize(ended)
		var err error
		if keep {
			err = replace(txn, cur, ended)
		} else {
			err = remove(txn, cur)
		}
		if err != nil {
			return locklock.Lock{}, err
		}
		ev.add(locklock.EventRevoked, now, ended)
		return cur, nil
	})
}

func allowAny(locklock.Lock) error { return nil }

// Refresh implements locklock.Engine. It moves the lock's expiry index
// entry along with its expiry.
func (e *Engine) Refresh(ctx context.Context, id locklock.ID, now time.Time, ch locklock.Change, allow func(locklock.Lock) error) (locklock.Lock, error) {
	return e.change(ctx, id, now, allow, func(txn *bdg.Txn, ev *eventLog, cur locklock.Lock) (locklock.Lock, error) {
		if err := e.admit(needWrite); err != nil {
			return locklock.Lock{}, answer(err)
		}
		updated := normalize(ch.Apply(cur))
		if err := replace(txn, cur, updated); err != nil {
			return locklock.Lock{}, err
		}
		ev.add(locklock.EventRefreshed, now, updated)
		return updated, nil
	})
}

// change is Release's and Refresh's common step: in one transaction, find
// the live lock (settling an expired one), ask allow, and apply write.
func (e *Engine) change(ctx context.Context, id locklock.ID, now time.Time, allow func(locklock.Lock) error,
	write func(txn *bdg.Txn, ev *eventLog, cur locklock.Lock) (locklock.Lock, error)) (locklock.Lock, error) {
	done, err := e.enterID(ctx, id)
	if err != nil {
		return locklock.Lock{}, err
	}
	defer done()
	return e.changeEntered(ctx, id, now, allow, write)
}

// changeEntered is change for a caller that has already entered the engine.
func (e *Engine) changeEntered(ctx context.Context, id locklock.ID, now time.Time, allow func(locklock.Lock) error,
	write func(txn *bdg.Txn, ev *eventLog, cur locklock.Lock) (locklock.Lock, error)) (locklock.Lock, error) {
	var (
		out    locklock.Lock
		absent error // ErrNotFound or a *DelayedError: no live lock
	)
	err := e.update(ctx, func(txn *bdg.Txn, ev *eventLog) error {
		out, absent = locklock.Lock{}, nil // a rerun starts over
		cur, err := e.liveLock(txn, ev, id, now, &absent)
		if err != nil || absent != nil {
			return err // commits the settling of an expired record, if any
		}
		if err := allow(cur); err != nil {
			return answer(err)
		}
		out, err = write(txn, ev, cur)
		return err
	})
	switch {
	case err != nil:
		return locklock.Lock{}, err
	case absent != nil:
		return locklock.Lock{}, absent
	}
	return out, nil
}

// liveLock reads the live lock for id. When there is none it sets *absent
// to the answer (as gone gives it, or ErrNotFound without a record), after
// settling an expired record it found: once one operation has judged a
// lock expired, an operation still carrying an earlier clock reading must
// not find it alive again (the Service reads the clock before calling the
// engine). The answer is the caller's to give after the commit: the step
// may have written.
func (e *Engine) liveLock(txn *bdg.Txn, ev *eventLog, id locklock.ID, now time.Time, absent *error) (locklock.Lock, error) {
	cur, found, err := getLock(txn, id)
	switch {
	case err != nil:
		return locklock.Lock{}, err
	case !found:
		*absent = locklock.ErrNotFound
		return locklock.Lock{}, nil
	case cur.Live(now):
		return cur, nil
	}
	if _, _, err := e.end(txn, ev, cur, now); err != nil {
		return locklock.Lock{}, err
	}
	*absent = gone(cur, now)
	return locklock.Lock{}, nil
}
