package badger

import (
	"cmp"
	"errors"
	"slices"
	"time"

	bdg "github.com/dgraph-io/badger/v4"

	"github.com/locklock/locklock/locklock"
)

// Reading and writing semaphore heads and slot records inside a step or a
// read-only transaction (keys.go has the layout, slotrecord.go the values).

// readHead returns the count in id's head, 0 when it has none. The read is
// what makes a step on a stale snapshot conflict (see the top of this
// file): every step that adds or deletes a slot record calls it.
func readHead(txn *bdg.Txn, id locklock.ID) (int, error) {
	item, err := txn.Get(headKey(id))
	if errors.Is(err, bdg.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, storageErr("read", err)
	}
	var n int
	err = item.Value(func(v []byte) error {
		var derr error
		n, derr = decodeHead(id, v)
		return derr
	})
	if err != nil && !errors.Is(err, errCorrupt) {
		err = storageErr("read", err)
	}
	return n, err
}

// writeHead stores n as id's count of slot records, deleting the head at 0.
func writeHead(txn *bdg.Txn, id locklock.ID, n int) error {
	if n <= 0 {
		return deleteKey(txn, headKey(id))
	}
	if err := txn.Set(headKey(id), encodeHead(n)); err != nil {
		return storageErr("write", err)
	}
	return nil
}

// adjustHead adds delta to id's count of slot records.
func adjustHead(txn *bdg.Txn, id locklock.ID, delta int) error {
	n, err := readHead(txn, id)
	if err != nil {
		return err
	}
	return writeHead(txn, id, n+delta)
}

// expireSlot deletes cur, a stored slot found expired, reports it and
// counts it out of its semaphore's head.
func expireSlot(txn *bdg.Txn, ev *eventLog, cur locklock.Slot) error {
	if err := dropSlots(txn, []locklock.Slot{cur}); err != nil {
		return err
	}
	ev.expiredSlots([]locklock.Slot{cur})
	return adjustHead(txn, cur.Semaphore, -1)
}

// getSlot reads the stored slot record, live or not.
func getSlot(txn *bdg.Txn, id locklock.ID, slot string) (locklock.Slot, bool, error) {
	item, err := txn.Get(slotKey(id, slot))
	if errors.Is(err, bdg.ErrKeyNotFound) {
		return locklock.Slot{}, false, nil
	}
	if err != nil {
		return locklock.Slot{}, false, storageErr("read", err)
	}
	var s locklock.Slot
	err = item.Value(func(v []byte) error {
		var derr error
		s, derr = decodeSlot(id, slot, v)
		return derr
	})
	if err != nil {
		if errors.Is(err, errCorrupt) {
			return locklock.Slot{}, false, err
		}
		return locklock.Slot{}, false, storageErr("read", err)
	}
	return s, true, nil
}

// scanSlots reads id's slot records and splits them at now, both in key
// order (by slot id); sizeHint is how many there may be (the head's
// count). With stopAfter > 0 it stops once it has found that many expired
// ones.
func scanSlots(txn *bdg.Txn, id locklock.ID, now time.Time, sizeHint, stopAfter int) (live, expired []locklock.Slot, err error) {
	// A semaphore may have 10,000 slots, of some 200 bytes each in memory:
	// growing the slice by appends would copy them over and over.
	live = make([]locklock.Slot, 0, min(max(sizeHint, 0), locklock.MaxSemaphoreLimit))
	prefix := semSlotsPrefix(id)
	it := txn.NewIterator(bdg.IteratorOptions{Prefix: prefix}) // values are inline (options.go): nothing to prefetch
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		slot := string(item.Key()[len(prefix):])
		var s locklock.Slot
		err := item.Value(func(v []byte) error {
			var derr error
			s, derr = decodeSlot(id, slot, v)
			return derr
		})
		if err != nil {
			if errors.Is(err, errCorrupt) {
				return nil, nil, err
			}
			return nil, nil, storageErr("read", err)
		}
		if s.Live(now) {
			live = append(live, s)
			continue
		}
		expired = append(expired, s)
		if len(expired) == stopAfter {
			break
		}
	}
	return live, expired, nil
}

// byToken sorts slots by token, the order the API lists them in.
func byToken(slots []locklock.Slot) {
	slices.SortFunc(slots, func(a, b locklock.Slot) int { return cmp.Compare(a.Token, b.Token) })
}

// putSlot writes s's record and its expiry index entry.
func putSlot(txn *bdg.Txn, s locklock.Slot) error {
	if err := txn.Set(slotKey(s.Semaphore, s.ID), encodeSlot(s)); err != nil {
		return storageErr("write", err)
	}
	if err := txn.Set(slotExpiryKey(s.ExpiresAt, s.Semaphore, s.ID), []byte{}); err != nil {
		return storageErr("write", err)
	}
	return nil
}

// dropSlots deletes the slots' records and expiry index entries; the
// caller adjusts the head.
func dropSlots(txn *bdg.Txn, slots []locklock.Slot) error {
	for _, s := range slots {
		if err := deleteKey(txn, slotKey(s.Semaphore, s.ID)); err != nil {
			return err
		}
		if err := deleteKey(txn, slotExpiryKey(s.ExpiresAt, s.Semaphore, s.ID)); err != nil {
			return err
		}
	}
	return nil
}
