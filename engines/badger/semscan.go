package badger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	bdg "github.com/dgraph-io/badger/v4"

	"github.com/locklock/locklock/locklock"
)

// Scans over many semaphores: ListSemaphores, and Sweep's share (scan.go).

// ListSemaphores implements locklock.SemaphoreEngine as one prefix scan of
// the slot records of q's namespace and kind, which come grouped by
// semaphore in name order (keys.go). Expired slots are left out of the
// summaries and then deleted, as List does with expired locks.
func (e *Engine) ListSemaphores(ctx context.Context, q locklock.ListQuery, now time.Time) ([]locklock.SemaphoreSummary, error) {
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
	base := slotListPrefix(q.Namespace, q.Kind)
	// A name's slot records are <name>\x00<slot>, and names contain no
	// NUL: <after>\x01 is past all of After's and before any later name.
	prefix, start := scanRange(base, q, sep+1)
	var (
		out     []locklock.SemaphoreSummary
		expired []locklock.Slot
	)
	err = e.view(func(txn *bdg.Txn) error {
		it := txn.NewIterator(bdg.IteratorOptions{Prefix: prefix}) // values are inline (options.go): nothing to prefetch
		defer it.Close()
		var (
			cur     locklock.SemaphoreSummary
			started bool
		)
		flush := func() {
			if cur.Slots > 0 {
				out = append(out, cur)
			}
		}
		for it.Seek(start); it.Valid(); it.Next() {
			item := it.Item()
			name, slot, ok := bytes.Cut(item.Key()[len(base):], []byte{sep})
			if !ok {
				return fmt.Errorf("%w: not a slot key %q", errCorrupt, item.Key())
			}
			if !started || string(name) != cur.Name {
				started = true
				flush()
				if len(out) == q.Limit {
					return nil
				}
				// Many slots, or expired ones, could make this scan long.
				if err := ctx.Err(); err != nil {
					return err
				}
				cur = locklock.SemaphoreSummary{ID: locklock.ID{Namespace: q.Namespace, Kind: q.Kind, Name: string(name)}}
			}
			var s locklock.Slot
			err := item.Value(func(v []byte) error {
				var derr error
				s, derr = decodeSlot(cur.ID, string(slot), v)
				return derr
			})
			if errors.Is(err, errCorrupt) {
				return err
			}
			if err != nil {
				return storageErr("read", err)
			}
			if !s.Live(now) {
				expired = append(expired, s)
				continue
			}
			cur.Limit = s.Limit
			cur.InUse += s.Weight
			cur.Slots++
		}
		flush()
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Left out as expired, they must stay gone (see semaphore.go).
	if err := e.settleSlots(ctx, expired, now); err != nil && !errors.Is(err, locklock.ErrStorageFull) {
		return nil, err
	}
	return out, nil
}

// settleSlots deletes those of slots (as read earlier) that are still
// stored and expired at now, up to maxSettle per step.
func (e *Engine) settleSlots(ctx context.Context, slots []locklock.Slot, now time.Time) error {
	for len(slots) > 0 {
		chunk := slots[:min(len(slots), maxSettle)]
		slots = slots[len(chunk):]
		err := e.update(ctx, func(txn *bdg.Txn, ev *eventLog) error {
			if err := e.admit(needRelease); err != nil {
				return answer(err)
			}
			for _, seen := range chunk {
				cur, found, err := getSlot(txn, seen.Semaphore, seen.ID)
				if err != nil {
					return err
				}
				if !found || cur.Live(now) {
					continue // deleted, or refreshed by a step judged earlier
				}
				if err := expireSlot(txn, ev, cur); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// sweepSlots is Sweep's share for slots, inside one of its steps: it
// deletes up to max slots expired at now, found through the slot expiry
// index (keys.go), and says how many it deleted and whether more are due.
// Each index entry is checked against the slot's record, which alone
// decides.
func sweepSlots(txn *bdg.Txn, ev *eventLog, now time.Time, max int) (n int, more bool, err error) {
	due, more := dueKeys(txn, slotExpiryPrefix, now, max)
	for _, k := range due {
		_, id, slot, err := parseSlotExpiryKey(k)
		if err != nil {
			return n, more, err
		}
		if err := deleteKey(txn, k); err != nil {
			return n, more, err
		}
		cur, found, err := getSlot(txn, id, slot)
		if err != nil {
			return n, more, err
		}
		if !found || cur.Live(now) {
			continue // a stale index entry; the record's own entry stays
		}
		if err := expireSlot(txn, ev, cur); err != nil {
			return n, more, err
		}
		n++
	}
	return n, more, nil
}
