package badger

import (
	"context"
	"slices"
	"time"

	"github.com/locklock/locklock/locklock"
)

// Events (API.md §9): the engine implements locklock.EventSource, and the
// Service numbers the events it reports.
//
// Each step records the events of the changes it makes, as it makes them
// (eventLog); a rerun starts the record over. The committer reports a
// batch's events, in step order, from the callback of the batch's commit
// once that commit has succeeded — so after the batch is durable — and
// before it answers any of the batch's steps (commit.go). A commit that
// fails or conflicts reports nothing: a conflicting batch runs again and
// reports from the attempt that commits, and a step taken out of its batch
// reports nothing. A batch is launched only after the one before it has
// landed, so batches report in commit order, which is the order the steps
// were applied: the events of one lock, or of one semaphore's slots, come
// in the order of their changes.
// The sink runs on Badger's callback goroutine, holding none of the
// engine's locks.
//
// Expiry. `expired` is reported by the step that settles a lock not yet
// Ended: the one that deletes its record, marks it Ended for its
// lock-delay, or replaces it with a new grant (ops.go, settle and
// TryAcquire). Those are writes, committed in one total order, and a record
// leaves the not-Ended state once per grant: so `expired` is reported once
// per grant, and only once durable. A read (Get, List) that finds a lock
// expired reports nothing itself: it settles the lock in a step of its own
// (deleteExpired), which reports if it is the first to settle it — a step
// that finds the record already deleted or Ended (a Sweep came first, in
// this batch or an earlier one; on a stale snapshot, the conflict reruns it)
// reports nothing. An Ended record deleted once its lock-delay has run out
// reports nothing either: its expiry was reported when it was ended. When
// the disk is too full to settle a lock (space.go), the read answers as if
// it had been settled and nothing is reported yet: the sweeper settles and
// reports it once there is room.
//
// Slots (semaphore.go) follow the same rules: a step records acquired,
// refreshed and released as it makes the change, and expired for each
// expired slot record it deletes; a record is deleted once, by whichever
// step (an acquire, release or refresh, a read's settling step, a round of
// Sweep) comes first, and a step that finds it gone reports nothing.
//
// A crash loses nothing reported: events go out only after the commit's
// fsync. Events of a process that died are not reported again after a
// restart; positions hold for the life of a process (API.md §9).
//
// Reads and streams. Badger makes a commit visible to new transactions
// just before it runs the commit's callback, so a Get could read a change
// whose event has not been reported yet; a one-lock stream that starts with
// that state (Service.Watch) would then get the event again after it. So
// Get — and GetSemaphore, a one-semaphore stream's state, and GetSlot —
// waits, after reading, until the last flight launched has reported
// (awaitReported). It rarely waits at all: a transaction opened while a
// commit is being written waits for that commit already (Badger's txnMark),
// and the report follows at once.

// eventLog collects the events of one run of a step.
type eventLog struct {
	on     bool // a sink wants them
	events []*locklock.Event
}

// add records a change of l judged at at.
func (ev *eventLog) add(typ locklock.EventType, at time.Time, l locklock.Lock) {
	if ev.on {
		ev.events = append(ev.events, &locklock.Event{Type: typ, At: at, Lock: l})
	}
}

// expired records that the step settled cur, a record not live, if cur was
// not Ended already (then its expiry was reported when it was ended).
func (ev *eventLog) expired(cur locklock.Lock) {
	if !cur.Ended {
		ev.add(locklock.EventExpired, cur.ExpiresAt, cur)
	}
}

// addSlot records a change of slot s judged at at (Event.Slot; Lock zero).
func (ev *eventLog) addSlot(typ locklock.EventType, at time.Time, s locklock.Slot) {
	if ev.on {
		ev.events = append(ev.events, &locklock.Event{Type: typ, At: at, Slot: &s})
	}
}

// expiredSlots records that the step deleted slots, expired records still
// stored: each one's expiry, at its ExpiresAt. A slot record is deleted
// once (a step finding it gone reports nothing), so each grant's expiry is
// reported once. They go in token order, the order they were granted in,
// whatever order the step found them in.
func (ev *eventLog) expiredSlots(slots []locklock.Slot) {
	if !ev.on || len(slots) == 0 {
		return
	}
	if len(slots) > 1 {
		slots = slices.Clone(slots) // the caller's, in key order
		byToken(slots)
	}
	for _, s := range slots {
		ev.addSlot(locklock.EventExpired, s.ExpiresAt, s)
	}
}

// SetEventSink implements locklock.EventSource. The Service numbers the
// events, so the position returned is the zero one.
func (e *Engine) SetEventSink(sink locklock.EventSink) locklock.Position {
	e.commit.sink.Store(&sink)
	return locklock.Position{}
}

// report hands the events of steps, a committed batch, to the sink.
func (c *committer) report(steps []*step) {
	sink := c.sink.Load()
	if sink == nil {
		return
	}
	var evs []*locklock.Event
	for _, s := range steps {
		evs = append(evs, s.events.events...)
	}
	if len(evs) > 0 {
		(*sink)(evs...)
	}
}

// awaitReported waits until every commit a read could have seen has
// reported its events: the flight launched last (launch stores it before
// the commit starts) and, as flights land one after another, every one
// before it. Call it after reading.
func (c *committer) awaitReported(ctx context.Context) error {
	if c.sink.Load() == nil {
		return nil
	}
	reported := c.lastReported.Load()
	if reported == nil {
		return nil
	}
	select {
	case <-*reported:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
