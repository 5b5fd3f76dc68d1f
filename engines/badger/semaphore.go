package badger

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	bdg "github.com/dgraph-io/badger/v4"

	"github.com/locklock/locklock/locklock"
)

var _ locklock.SemaphoreEngine = (*Engine)(nil)

// Semaphores (API.md §10): steps on one semaphore.
//
// A slot is a record of its own (keys.go, slotrecord.go) with an entry in the
// slot expiry index, written like a lock's: every writing step is a step of
// the group commit (commit.go), answered once its batch is durable, so an
// acknowledged acquire survives a crash. Tokens come from the counter the
// locks use (tokens.go), taken inside the acquiring step after the
// semaphore's slots were read: steps run one at a time in commit order, so
// tokens rise per semaphore across all its slots, and across restarts.
//
// Atomicity. TryAcquireSlot reads all of the semaphore's slot records,
// applies locklock.AdmitSlot to the live ones, and writes the new slot, in
// one step. Within a batch the steps run one after another against one
// transaction and see each other's writes, so two acquires in one batch
// cannot both fit into the same room. Across batches there is a gap: the
// committer runs a batch while the one before it commits, on a snapshot
// without it, and relies on Badger's conflict detection to rerun it. That
// detection covers only keys read (Get, or an iterator's items): a slot
// record that the batch in flight inserts is a phantom that a prefix scan
// of the snapshot neither sees nor registers. So every semaphore has a head
// key that every step adding or deleting one of its slot records reads (Get,
// registered even when absent) and writes: an acquire on a stale snapshot
// always conflicts with a change of its semaphore in flight and runs again.
// The head holds the number of slot records, so that the step deleting the
// last one deletes the head too. A refresh changes only its slot record,
// which any scan that counted the slot has registered.
//
// Expiry. A step that finds expired slots deletes them in the same step
// (locklock.Engine), so that no later step carrying an earlier clock reading
// finds them alive again: an acquire deletes every expired slot of its
// semaphore, a release or refresh the slot it names; reads that find
// expired slots delete them in a step of their own before they answer.
// Deleting uses the releases' share of the free-space reserve (space.go);
// when even that is refused, the step answers as if it had deleted them —
// no write that could revive them (an acquire or refresh) is admitted then.
// A step deletes at most maxSettle of them, to stay far below Badger's
// transaction limit; an operation that finds more first deletes them in
// steps of their own (settleSemaphore) — they are expired at its now, so
// deleting them early changes no answer — and then runs its step again.
//
// Events (API.md §9, events.go). Each step records its slots' events as
// it makes the change: acquired after storing a new slot, refreshed after
// a refresh, released, and expired for every expired slot it deletes —
// whichever step deletes it first: an acquire, a release, a refresh, a
// read's settling step, or a round of Sweep —, at the slot's ExpiresAt.
// They are reported with the lock events, once the batch has committed.
// A slot the free-space guard keeps from being deleted is reported by the
// step that deletes it later (the sweeper, once there is room). Reads
// (GetSemaphore, GetSlot) wait, as Get does, until what they read has been
// reported.

// maxSettle bounds the expired slots one step deletes (three or four writes
// each), as sweepBatch bounds a round of Sweep.
const maxSettle = sweepBatch

// errTooManyExpired is a step's answer when its semaphore has more expired
// slots than it may delete: see settleSemaphore.
var errTooManyExpired = errors.New("badger engine: too many expired slots for one step")

// TryAcquireSlot implements locklock.SemaphoreEngine. The returned slot is
// normalized (UTC times at millisecond precision), exactly as stored.
func (e *Engine) TryAcquireSlot(ctx context.Context, cand locklock.Slot, now time.Time, same func(locklock.Slot) bool) (locklock.Slot, bool, error) {
	if !checkSlotID(cand.ID) {
		return locklock.Slot{}, false, fmt.Errorf("%w: slot ids must be non-empty and free of NUL bytes", locklock.ErrInvalidArgument)
	}
	done, err := e.enterID(ctx, cand.Semaphore)
	if err != nil {
		return locklock.Slot{}, false, err
	}
	defer done()
	id := cand.Semaphore
	cand = normalizeSlot(cand)
	if same, err = e.presame(ctx, id, same); err != nil {
		return locklock.Slot{}, false, err
	}
	var (
		out     locklock.Slot
		created bool
		refused error // AdmitSlot's answer, given after the step committed
	)
	step := func(txn *bdg.Txn, ev *eventLog) error {
		out, created, refused = locklock.Slot{}, false, nil // a rerun starts over
		head, err := readHead(txn, id)
		if err != nil {
			return err
		}
		live, expired, err := scanSlots(txn, id, now, head, 0)
		if err != nil {
			return err
		}
		got, retry, aerr := locklock.AdmitSlot(live, cand, same)
		if retry || aerr != nil {
			out, refused = got, aerr
			return e.settleIn(txn, ev, id, head, expired)
		}
		if err := e.admit(needWrite); err != nil {
			return answer(err)
		}
		if len(expired) > maxSettle {
			return answer(errTooManyExpired)
		}
		if slices.ContainsFunc(live, func(s locklock.Slot) bool { return s.ID == cand.ID }) {
			return answer(fmt.Errorf("%w: slot id %s is taken", locklock.ErrInvalidArgument, cand.ID))
		}
		if err := dropSlots(txn, expired); err != nil {
			return err
		}
		// The token only now, after the slots were read (see above). A
		// failure here follows writes: not an answer (commit.go).
		if cand.Token, err = e.nextToken(); err != nil {
			return err
		}
		if err := putSlot(txn, cand); err != nil {
			return err
		}
		if err := writeHead(txn, id, head-len(expired)+1); err != nil {
			return err
		}
		ev.expiredSlots(expired)
		ev.addSlot(locklock.EventAcquired, now, cand)
		out, created = cand, true
		return nil
	}
	for {
		err = e.update(ctx, step)
		if !errors.Is(err, errTooManyExpired) {
			break
		}
		if err := e.settleSemaphore(ctx, id, now); err != nil {
			return locklock.Slot{}, false, err
		}
	}
	switch {
	case err != nil:
		return locklock.Slot{}, false, err
	case refused != nil:
		return locklock.Slot{}, false, refused
	}
	return out, created, nil
}

// presameMin is the number of slot records from which TryAcquireSlot tests
// the retry callback outside the committer first (presame).
const presameMin = 64

// presame returns same, or for a semaphore with many slots a stand-in that
// answers as same does. same (a retry's test of a slot's secret: an HMAC)
// runs in the committer, which runs every writing step of the engine one
// at a time: on a semaphore of 10,000 protected slots it would hold up all
// other writes for some 15 ms per acquire. So presame reads the semaphore's
// slots first, outside the committer, and remembers same's answer for each
// by token; in the step, same runs only for slots granted since. That
// changes no answer: a slot's guard never changes (Change.ApplySlot), and a
// token names one grant. A semaphore with no retry test, or few slots,
// gets same back.
func (e *Engine) presame(ctx context.Context, id locklock.ID, same func(locklock.Slot) bool) (func(locklock.Slot) bool, error) {
	if same == nil {
		return nil, nil
	}
	var tested map[uint64]bool
	err := e.view(func(txn *bdg.Txn) error {
		head, err := readHead(txn, id)
		if err != nil || head < presameMin {
			return err
		}
		slots, _, err := scanSlots(txn, id, time.Time{}, head, 0) // every record is live at the zero time
		if err != nil {
			return err
		}
		tested = make(map[uint64]bool, len(slots))
		for i, s := range slots {
			if i%256 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			tested[s.Token] = same(s)
		}
		return nil
	})
	if err != nil || tested == nil {
		return same, err
	}
	return func(s locklock.Slot) bool {
		if ok, known := tested[s.Token]; known {
			return ok
		}
		return same(s)
	}, nil
}

// settleIn deletes expired, slots of id expired at now, in a step that
// writes nothing else; head is the head's count as the step read it. When
// the free-space reserve refuses the deletion it writes nothing (see the
// top of this file).
func (e *Engine) settleIn(txn *bdg.Txn, ev *eventLog, id locklock.ID, head int, expired []locklock.Slot) error {
	if len(expired) == 0 || e.admit(needRelease) != nil {
		return nil
	}
	if len(expired) > maxSettle {
		return answer(errTooManyExpired)
	}
	if err := dropSlots(txn, expired); err != nil {
		return err
	}
	ev.expiredSlots(expired)
	return writeHead(txn, id, head-len(expired))
}

// settleSemaphore deletes id's slots expired at now, up to maxSettle per
// step, until none is left. Those slots are gone for every operation judged
// at now or later, so deleting them ahead of an operation's own step
// changes none of its answers. It returns an error wrapping ErrStorageFull
// when the free-space reserve refuses a deletion.
func (e *Engine) settleSemaphore(ctx context.Context, id locklock.ID, now time.Time) error {
	for {
		more := false
		err := e.update(ctx, func(txn *bdg.Txn, ev *eventLog) error {
			more = false
			head, err := readHead(txn, id)
			if err != nil {
				return err
			}
			_, expired, err := scanSlots(txn, id, now, 0, maxSettle)
			if err != nil || len(expired) == 0 {
				return err
			}
			if err := e.admit(needRelease); err != nil {
				return answer(err)
			}
			if err := dropSlots(txn, expired); err != nil {
				return err
			}
			ev.expiredSlots(expired)
			more = len(expired) == maxSettle
			return writeHead(txn, id, head-len(expired))
		})
		if err != nil || !more {
			return err
		}
	}
}

// GetSemaphore implements locklock.SemaphoreEngine. It reads the
// semaphore's slots in one read-only transaction; when some have expired it
// deletes them first (settleSemaphore) and reads again.
func (e *Engine) GetSemaphore(ctx context.Context, id locklock.ID, now time.Time) (locklock.Semaphore, error) {
	done, err := e.enterID(ctx, id)
	if err != nil {
		return locklock.Semaphore{}, err
	}
	defer done()
	for {
		var live, expired []locklock.Slot
		err := e.view(func(txn *bdg.Txn) error {
			head, err := readHead(txn, id)
			if err != nil {
				return err
			}
			live, expired, err = scanSlots(txn, id, now, head, 0)
			return err
		})
		if err != nil {
			return locklock.Semaphore{}, err
		}
		if len(expired) > 0 {
			err := e.settleSemaphore(ctx, id, now)
			if err == nil {
				continue
			}
			if !errors.Is(err, locklock.ErrStorageFull) {
				return locklock.Semaphore{}, err
			}
			// Reads are served however full the disk: as if deleted.
		}
		// What was read may be a commit whose events are not reported yet
		// (events.go): a one-semaphore stream starts from this state and
		// must not get them after it.
		if err := e.commit.awaitReported(ctx); err != nil {
			return locklock.Semaphore{}, err
		}
		if len(live) == 0 {
			return locklock.Semaphore{}, locklock.ErrSemaphoreNotFound
		}
		byToken(live)
		sem := locklock.Semaphore{ID: id, Limit: live[0].Limit, Slots: live}
		for _, s := range live {
			sem.InUse += s.Weight
		}
		return sem, nil
	}
}

// GetSlot implements locklock.SemaphoreEngine: a read-only transaction,
// unless the slot has expired, which a step then deletes.
func (e *Engine) GetSlot(ctx context.Context, id locklock.ID, slot string, now time.Time) (locklock.Slot, error) {
	if !checkSlotID(slot) {
		return locklock.Slot{}, locklock.SlotNotFound(id, slot)
	}
	done, err := e.enterID(ctx, id)
	if err != nil {
		return locklock.Slot{}, err
	}
	defer done()
	var (
		cur   locklock.Slot
		found bool
	)
	err = e.view(func(txn *bdg.Txn) error {
		var err error
		cur, found, err = getSlot(txn, id, slot)
		return err
	})
	if err == nil && (!found || cur.Live(now)) {
		// As in GetSemaphore: a read answers only once what it saw has
		// been reported, so that no stream opened after it gets an event
		// of a change this caller has already seen.
		err = e.commit.awaitReported(ctx)
	}
	switch {
	case err != nil:
		return locklock.Slot{}, err
	case !found:
		return locklock.Slot{}, locklock.SlotNotFound(id, slot)
	case cur.Live(now):
		return cur, nil
	}
	// Rare (expired, not yet swept): delete it in a step, for the reason
	// the top of this file gives. Should it be live by then (refreshed by
	// a step judged earlier that committed first), this answers after that.
	return e.changeSlot(ctx, id, slot, now, allowAnySlot,
		func(_ *bdg.Txn, _ *eventLog, cur locklock.Slot) (locklock.Slot, error) { return cur, nil })
}

// ReleaseSlot implements locklock.SemaphoreEngine.
func (e *Engine) ReleaseSlot(ctx context.Context, id locklock.ID, slot string, now time.Time, allow func(locklock.Slot) error) (locklock.Slot, error) {
	return e.enterSlot(ctx, id, slot, now, allow, e.dropSlot(id, locklock.EventReleased, now))
}

// RevokeSlot implements locklock.SemaphoreEngine.
func (e *Engine) RevokeSlot(ctx context.Context, id locklock.ID, slot string, now time.Time) (locklock.Slot, error) {
	return e.enterSlot(ctx, id, slot, now, allowAnySlot, e.dropSlot(id, locklock.EventRevoked, now))
}

func allowAnySlot(locklock.Slot) error { return nil }

// dropSlot is the write of ReleaseSlot and RevokeSlot: the slot goes,
// reported as typ.
func (e *Engine) dropSlot(id locklock.ID, typ locklock.EventType, now time.Time) func(*bdg.Txn, *eventLog, locklock.Slot) (locklock.Slot, error) {
	return func(txn *bdg.Txn, ev *eventLog, cur locklock.Slot) (locklock.Slot, error) {
		// Refusing a release keeps the slot held: releases may use more of
		// the free-space reserve than acquires and refreshes.
		if err := e.admit(needRelease); err != nil {
			return locklock.Slot{}, answer(err)
		}
		if err := dropSlots(txn, []locklock.Slot{cur}); err != nil {
			return locklock.Slot{}, err
		}
		ev.addSlot(typ, now, cur)
		return cur, adjustHead(txn, id, -1)
	}
}

// RefreshSlot implements locklock.SemaphoreEngine. The slot's expiry index
// entry moves with its expiry.
func (e *Engine) RefreshSlot(ctx context.Context, id locklock.ID, slot string, now time.Time, ch locklock.Change, allow func(locklock.Slot) error) (locklock.Slot, error) {
	return e.enterSlot(ctx, id, slot, now, allow, func(txn *bdg.Txn, ev *eventLog, cur locklock.Slot) (locklock.Slot, error) {
		if err := e.admit(needWrite); err != nil {
			return locklock.Slot{}, answer(err)
		}
		updated := normalizeSlot(ch.ApplySlot(cur))
		if err := deleteKey(txn, slotExpiryKey(cur.ExpiresAt, id, slot)); err != nil {
			return locklock.Slot{}, err
		}
		ev.addSlot(locklock.EventRefreshed, now, updated)
		return updated, putSlot(txn, updated)
	})
}

// enterSlot is changeSlot for an operation that has not entered the engine.
func (e *Engine) enterSlot(ctx context.Context, id locklock.ID, slot string, now time.Time, allow func(locklock.Slot) error,
	write func(txn *bdg.Txn, ev *eventLog, cur locklock.Slot) (locklock.Slot, error)) (locklock.Slot, error) {
	if !checkSlotID(slot) {
		return locklock.Slot{}, locklock.SlotNotFound(id, slot)
	}
	done, err := e.enterID(ctx, id)
	if err != nil {
		return locklock.Slot{}, err
	}
	defer done()
	return e.changeSlot(ctx, id, slot, now, allow, write)
}

// changeSlot is the step of ReleaseSlot and RefreshSlot (and of GetSlot for
// an expired slot): find the live slot — deleting it if it has expired —,
// ask allow, and apply write.
func (e *Engine) changeSlot(ctx context.Context, id locklock.ID, slot string, now time.Time, allow func(locklock.Slot) error,
	write func(txn *bdg.Txn, ev *eventLog, cur locklock.Slot) (locklock.Slot, error)) (locklock.Slot, error) {
	var (
		out    locklock.Slot
		absent bool
	)
	err := e.update(ctx, func(txn *bdg.Txn, ev *eventLog) error {
		out, absent = locklock.Slot{}, false // a rerun starts over
		cur, found, err := getSlot(txn, id, slot)
		switch {
		case err != nil:
			return err
		case !found:
			absent = true
			return nil
		case !cur.Live(now):
			absent = true
			if e.admit(needRelease) != nil {
				return nil // answered as if deleted (see the top of this file)
			}
			return expireSlot(txn, ev, cur)
		}
		if err := allow(cur); err != nil {
			return answer(err)
		}
		out, err = write(txn, ev, cur)
		return err
	})
	switch {
	case err != nil:
		return locklock.Slot{}, err
	case absent:
		return locklock.Slot{}, locklock.SlotNotFound(id, slot)
	}
	return out, nil
}
