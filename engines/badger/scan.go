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

// List implements locklock.Engine as one prefix scan in key order, which is
// name order. Expired locks not yet swept are skipped.
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
	prefix := append(bytes.Clone(base), q.Prefix...)
	start := prefix
	if q.After != "" {
		// Names contain no NUL, so After+"\x00" is the first key after After.
		after := append(append(bytes.Clone(base), q.After...), sep)
		if bytes.Compare(after, start) > 0 {
			start = after
		}
	}
	var out []locklock.Lock
	var expired []locklock.ID
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
			if l.Live(now) {
				out = append(out, l)
			} else {
				expired = append(expired, id)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Left out as expired, they must stay gone (see liveLock).
	for _, id := range expired {
		if _, err := e.deleteExpired(ctx, id, now); err != nil && !errors.Is(err, locklock.ErrNotFound) {
			return nil, err
		}
	}
	return out, nil
}

// Sweep implements locklock.Engine. It reads the expiry index from its
// start, so its cost follows the number of expired locks, in rounds of at
// most sweepBatch locks, each a step of the group commit (commit.go). Each index entry is checked against the lock's
// record: only a lock whose own ExpiresAt has passed is deleted.
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
		err := e.update(ctx, func(txn *bdg.Txn) error {
			var keys [][]byte
			n, more = 0, false // a retried attempt starts over
			keys, more = dueKeys(txn, now, sweepBatch)
			for _, k := range keys {
				_, id, err := parseExpiryKey(k)
				if err != nil {
					return err
				}
				if err := deleteKey(txn, k); err != nil {
					return err
				}
				cur, found, err := getLock(txn, id)
				if err != nil {
					return err
				}
				if !found || cur.Live(now) {
					continue // a stale index entry; the lock's own entry stays
				}
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

// dueKeys returns up to max expiry index keys at or before now, and whether
// more are due. The iterator is closed before returning because Badger
// allows only one iterator at a time in a read-write transaction.
func dueKeys(txn *bdg.Txn, now time.Time, max int) (keys [][]byte, more bool) {
	io := bdg.DefaultIteratorOptions
	io.Prefix = expiryPrefix
	io.PrefetchValues = false // the index has no values
	it := txn.NewIterator(io)
	defer it.Close()
	var limit [expiryKeyMin - 1]byte
	copy(limit[:], expiryPrefix)
	// Expiries are whole milliseconds, so "at or before now" is "at or
	// before now's millisecond".
	putOrdered(limit[len(expiryPrefix):], now)
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
// on: every write of a lock replaces its one index entry, so the entries
// after now are the live locks, and keys alone answer (no value is read).
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
