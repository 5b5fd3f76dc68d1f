package badger

import (
	"bytes"
	"context"
	"errors"
	"time"

	bdg "github.com/dgraph-io/badger/v4"

	"github.com/locklock/locklock/locklock"
)

// Scans: operations that read many keys (List, Sweep, CountHeld).

// scanRange is where a listing scans: keys under base followed by names
// starting with q.Prefix (prefix), from the first one past q.After (start):
// base, q.After and then past, the first byte after every key of After's.
func scanRange(base []byte, q locklock.ListQuery, past byte) (prefix, start []byte) {
	prefix = append(bytes.Clone(base), q.Prefix...)
	start = prefix
	if q.After != "" {
		after := append(append(bytes.Clone(base), q.After...), past)
		if bytes.Compare(after, start) > 0 {
			start = after
		}
	}
	return prefix, start
}

// List implements locklock.Engine as one prefix scan in key order, which is
// name order. Expired locks not yet swept, and records kept for their
// lock-delay, are skipped.
func (e *Engine) List(ctx context.Context, q locklock.ListQuery, now time.Time) ([]locklock.Lock, error) {
	if err := checkID(locklock.ID{Namespace: q.Namespace, Kind: q.Kind}); err != nil {
		return nil, err
	}
	done, err := e.enter(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	if q.Limit <= 0 {
		return nil, nil
	}
	base := listPrefix(q.Namespace, q.Kind)
	// Names contain no NUL, so After+"\x00" is the first key after After.
	prefix, start := scanRange(base, q, sep)
	var out []locklock.Lock
	var expired []locklock.Lock
	err = e.view(func(txn *bdg.Txn) error {
		io := bdg.DefaultIteratorOptions
		io.Prefix = prefix
		io.PrefetchSize = min(q.Limit, io.PrefetchSize)
		it := txn.NewIterator(io)
		defer it.Close()
		for it.Seek(start); it.Valid() && len(out) < q.Limit; it.Next() {
			// Many expired, unswept locks could make this scan long.
			if err := ctx.Err(); err != nil {
				return err
			}
			item := it.Item()
			id := locklock.ID{Namespace: q.Namespace, Kind: q.Kind, Name: string(item.Key()[len(base):])}
			var l locklock.Lock
			err := item.Value(func(v []byte) error {
				var derr error
				l, derr = decodeRecord(id, v)
				return derr
			})
			if errors.Is(err, errCorrupt) {
				return err
			}
			if err != nil {
				return storageErr("read", err)
			}
			switch {
			case l.Live(now):
				out = append(out, l)
			case !l.Ended: // an Ended record is settled already
				expired = append(expired, l)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Left out as expired, they must stay gone (see ops.go).
	for _, l := range expired {
		_, err := e.deleteExpired(ctx, l, now)
		if err != nil && !errors.Is(err, locklock.ErrNotFound) && !errors.Is(err, locklock.ErrDelayed) {
			return nil, err
		}
	}
	return out, nil
}

// Sweep implements locklock.Engine. It reads the expiry index, the delay
// index and the slot expiry index (keys.go) from their starts, so its cost follows the number of
// locks due, in rounds of at most sweepBatch of them, each a step of the
// group commit (commit.go). Each index entry is checked against the lock's
// record, which alone decides: an expired lock is deleted, or marked Ended
// (its entry moves to the delay index) while its lock-delay runs; an Ended
// record is deleted once its lock-delay is over; an expired slot is
// deleted (semscan.go). All count.
func (e *Engine) Sweep(ctx context.Context, now time.Time) (int, error) {
	done, err := e.enter(ctx)
	if err != nil {
		return 0, err
	}
	defer done()
	removed := 0
	for {
		// Expired locks are free already; deleting them only reclaims
		// space, and first costs some (tombstones). Nearly out of space,
		// the sweeper waits for space instead of failing every round.
		if e.admit(needRelease) != nil {
			return removed, nil
		}
		n, more := 0, false
		err := e.update(ctx, func(txn *bdg.Txn, ev *eventLog) error {
			n, more = 0, false // a retried attempt starts over
			expired, moreExpired := dueKeys(txn, expiryPrefix, now, sweepBatch)
			ended, moreEnded := dueKeys(txn, delayPrefix, now, sweepBatch-len(expired))
			slots, moreSlots, err := sweepSlots(txn, ev, now, sweepBatch-len(expired)-len(ended))
			if err != nil {
				return err
			}
			n, more = slots, moreExpired || moreEnded || moreSlots
			for _, k := range expired {
				cur, ok, err := dueRecord(txn, expiryPrefix, k)
				if err != nil {
					return err
				}
				if !ok || cur.Live(now) || cur.Ended {
					continue // a stale index entry; the record's own entry stays
				}
				if _, _, err := settle(txn, ev, cur, now); err != nil {
					return err
				}
				n++
			}
			for _, k := range ended {
				cur, ok, err := dueRecord(txn, delayPrefix, k)
				if err != nil {
					return err
				}
				if !ok || !cur.Ended || !cur.Gone(now) {
					continue // a stale index entry; the record's own entry stays
				}
				// Its expiry was reported when it was ended: no event.
				if err := remove(txn, cur); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if err != nil {
			return removed, err
		}
		removed += n
		if !more {
			return removed, nil
		}
	}
}

// dueRecord deletes the due index entry k, of the index with prefix, and
// reads the record it names. The record's own entry is k again unless k is
// stale; the caller writes it back if it keeps the record.
func dueRecord(txn *bdg.Txn, prefix, k []byte) (locklock.Lock, bool, error) {
	_, id, err := parseTimeKey(prefix, k)
	if err != nil {
		return locklock.Lock{}, false, err
	}
	if err := deleteKey(txn, k); err != nil {
		return locklock.Lock{}, false, err
	}
	return getLock(txn, id)
}

// dueKeys returns up to max keys of the index with prefix at or before now,
// and whether more are due. The iterator is closed before returning because
// Badger allows only one iterator at a time in a read-write transaction.
func dueKeys(txn *bdg.Txn, prefix []byte, now time.Time, max int) (keys [][]byte, more bool) {
	io := bdg.DefaultIteratorOptions
	io.Prefix = prefix
	io.PrefetchValues = false // the indexes have no values
	it := txn.NewIterator(io)
	defer it.Close()
	var limit [expiryKeyMin - 1]byte
	copy(limit[:], prefix)
	// Index times are whole milliseconds, so "at or before now" is "at or
	// before now's millisecond".
	putOrdered(limit[len(prefix):], now)
	for it.Rewind(); it.Valid(); it.Next() {
		k := it.Item().Key()
		if bytes.Compare(k[:min(len(k), len(limit))], limit[:]) > 0 {
			break
		}
		if len(keys) == max {
			return keys, true
		}
		keys = append(keys, it.Item().KeyCopy(nil))
	}
	return keys, false
}

// CountHeld implements locklock.Engine by walking the expiry index from now
// on: every write of a lock replaces its one index entry, and Ended records
// (kept for their lock-delay) have theirs in the delay index, so the expiry
// index's entries after now are the live locks, and keys alone answer (no
// value is read).
func (e *Engine) CountHeld(ctx context.Context, now time.Time) (int, error) {
	done, err := e.enter(ctx)
	if err != nil {
		return 0, err
	}
	defer done()
	n := 0
	err = e.view(func(txn *bdg.Txn) error {
		io := bdg.DefaultIteratorOptions
		io.Prefix = expiryPrefix
		io.PrefetchValues = false
		it := txn.NewIterator(io)
		defer it.Close()
		var from [expiryKeyMin - 1]byte
		copy(from[:], expiryPrefix)
		putOrdered(from[len(expiryPrefix):], now.Add(time.Millisecond))
		for it.Seek(from[:]); it.Valid(); it.Next() {
			if n%4096 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			n++
		}
		return nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return 0, err
		}
		return 0, storageErr("count", err)
	}
	return n, nil
}
