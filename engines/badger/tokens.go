package badger

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	bdg "github.com/dgraph-io/badger/v4"
)

// tokenLease hands out fencing tokens from a block reserved on disk: the
// stored value is the lowest token the next start may issue, and a block is
// used only after the write that reserves it has committed (synced). So no
// token is ever issued twice, even when a reservation fails or the process
// dies: after a crash the next start continues above the last reserved
// block, which leaves a gap and never a repeat.
//
// Badger's own Sequence is not used because it marks a block reserved before
// the reserving write commits; after a failed write it would hand out tokens
// that a later start could issue again.
type tokenLease struct {
	db        *bdg.DB
	bandwidth uint64
	// persist writes the reserved bound; a seam for tests that make it fail.
	persist func(db *bdg.DB, bound uint64) error

	mu     sync.Mutex
	next   uint64 // the next token to issue
	leased uint64 // tokens below this are covered by the stored bound
}

// loadTokenLease continues from the larger of the stored bound and the wall
// clock in milliseconds × 1024 (wallBase), the memory engine's starting
// point. The stored bound alone is not enough: a deployment that moved to
// the memory engine (or to a newer directory) after this directory was last
// used has issued tokens from a later wall clock, and this directory's
// counter, which rises by one per grant, lags far behind those. Starting at
// the wall clock on every open keeps tokens rising across such moves; the
// stored bound keeps them rising if the clock went back. Nothing is issued
// until the first block above the start has been reserved on disk (take), so
// raising the start needs no write of its own.
func loadTokenLease(db *bdg.DB, bandwidth, wallBase uint64) (*tokenLease, error) {
	t := &tokenLease{db: db, bandwidth: bandwidth, persist: storeBound, next: max(wallBase, 1)} // tokens start at 1
	err := db.View(func(txn *bdg.Txn) error {
		item, err := txn.Get(seqKey)
		if errors.Is(err, bdg.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if len(v) != 8 {
				return fmt.Errorf("%w: token bound of %d bytes", errCorrupt, len(v))
			}
			t.next = max(t.next, binary.BigEndian.Uint64(v))
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	t.leased = t.next // nothing reserved by this process yet
	return t, nil
}

// wallBase is the wall clock in milliseconds × 1024: every engine's floor
// for fencing tokens (see engines/memory's WithTokenFloor). It stays below
// 2^53 until the year 2248.
func wallBase(now time.Time) uint64 { return uint64(now.UnixMilli()) << 10 }

// take returns a token greater than every token issued before.
func (t *tokenLease) take() (uint64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.next >= t.leased {
		bound := t.next + t.bandwidth
		if err := t.persist(t.db, bound); err != nil {
			return 0, err // nothing reserved: nothing issued
		}
		t.leased = bound
	}
	n := t.next
	t.next++
	return n, nil
}

// giveBack stores the next unissued token as the bound, so that a clean stop
// wastes none of the reserved block.
func (t *tokenLease) giveBack() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.next == t.leased {
		return nil
	}
	if err := t.persist(t.db, t.next); err != nil {
		return err
	}
	t.leased = t.next
	return nil
}

func storeBound(db *bdg.DB, bound uint64) error {
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], bound)
	return db.Update(func(txn *bdg.Txn) error { return txn.Set(seqKey, buf[:]) })
}
