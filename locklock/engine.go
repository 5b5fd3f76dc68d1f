package locklock

import (
	"context"
	"time"
)

// Engine stores locks. Implementations must make each method one atomic
// step with respect to every other call on the same lock ID — also across
// processes when several share the storage — and must be safe for
// concurrent use.
//
// Time: the Service reads its clock once per operation and passes that
// instant as now. Engines judge expiry against it (a lock whose ExpiresAt is
// not after now is free, even if no Sweep has removed it yet). Because two
// operations can reach the engine out of clock order, an operation that
// finds an expired lock must delete it in the same atomic step: otherwise a
// refresh carrying an earlier reading could revive a lock that another
// operation already judged expired (the conformance suite checks this). An
// engine whose storage keeps its own time (etcd leases) may instead rely on
// that and say so in its documentation.
//
// Lock-delay (API.md §8): a lock with LockDelay > 0 that expires leaves its
// record behind, marked Ended, until DelayedUntil; meanwhile it bars
// acquires (Lock.Bars) and is neither listed nor counted. A release deletes
// the record outright. Engines store every field of Lock but ObservedAt,
// Revision and Reclaims, and return them as stored.
//
// Errors: ErrNotFound, ErrHeld (as *HeldError), ErrDelayed (as
// *DelayedError), the error returned by an
// allow callback, ErrClosed after Close, the context's error when ctx is done
// before the step was applied, and ErrUnavailable (wrapped) when storage
// cannot answer. An engine never reports success for a step it did not
// apply.
type Engine interface {
	// TryAcquire stores l unless the record stored for l.ID bars it at now
	// (Lock.Bars: a live lock gives a *HeldError carrying that lock,
	// unchanged; a lock-delay l does not reclaim gives a *DelayedError).
	// It fills in l.Token with a token greater than any ever issued for
	// l.ID and returns the stored lock. l.Reclaims is not stored.
	TryAcquire(ctx context.Context, l Lock, now time.Time) (Lock, error)

	// Get returns the live lock with id; a *DelayedError when only a
	// lock-delay keeps the lock's record; else ErrNotFound.
	Get(ctx context.Context, id ID, now time.Time) (Lock, error)

	// Release deletes the live lock with id — with no lock-delay after it —
	// if allow(lock) returns nil, and returns the lock as it was. allow
	// runs inside the atomic step: it must be quick and must not call the
	// engine. Errors as for Get.
	Release(ctx context.Context, id ID, now time.Time, allow func(Lock) error) (Lock, error)

	// Revoke ends the live lock with id at now whatever its secret (an
	// operator's forced release, API.md §11): it deletes the record, or
	// keeps it as Lock.Revoke makes it while its lock-delay runs. It
	// reports EventRevoked with that record (ExpiresAt now, Revoked set)
	// and returns the lock as it was. Errors as for Get.
	Revoke(ctx context.Context, id ID, now time.Time) (Lock, error)

	// Refresh applies ch (Change.Apply) to the live lock if allow(lock)
	// returns nil, keeping its token, AcquiredAt, guard and lock-delay, and
	// returns the updated lock. Errors as for Get.
	Refresh(ctx context.Context, id ID, now time.Time, ch Change, allow func(Lock) error) (Lock, error)

	// List returns live locks of q.Namespace and q.Kind whose names start
	// with q.Prefix and sort after q.After, in name order, at most q.Limit.
	List(ctx context.Context, q ListQuery, now time.Time) ([]Lock, error)

	// CountHeld returns the number of locks live at now, in all
	// namespaces, for the locks-held metric. The count may scan storage;
	// it is an operator's number, not a hot path. Spanning every lock, it
	// need not be one atomic step across them: locks acquired or released
	// during the count may or may not be in it.
	CountHeld(ctx context.Context, now time.Time) (int, error)

	// Sweep deletes records that are Gone at now (expired, lock-delay run
	// out), marks expired locks that have a lock-delay left Ended, and
	// returns how many locks it deleted or ended. Engines whose storage
	// expires entries itself may return 0.
	Sweep(ctx context.Context, now time.Time) (int, error)

	// Ping reports whether the storage answers.
	Ping(ctx context.Context) error

	// Close releases the engine's resources. Later calls return ErrClosed.
	Close() error
}

// ReleaseWatcher is implemented by engines whose locks can be released or
// expire outside this process (several servers on one etcd). The first
// waiter for a held lock watches it, so that it wakes as soon as the lock is
// gone, wherever that happened.
type ReleaseWatcher interface {
	// WatchRelease returns a channel that is closed once the lock held
	// (as read at held.Revision) may be gone: released or expired. It is
	// a hint to look again sooner, never proof: a closed channel only
	// means "try now", and a channel that stays open promises nothing —
	// when the watch cannot be kept up (no leader, compaction) it may stay
	// open, rather than wake the waiter into a new watch that could fail
	// the same way at once. Callers keep their own timers (the lock's
	// expiry, a poll interval) for that case. It stops watching when ctx
	// is done.
	WatchRelease(ctx context.Context, held Lock) <-chan struct{}

	// WatchSlotRelease is WatchRelease for a semaphore that was full (as
	// judged at full.Revision): the channel is closed once any of its
	// slots may be gone — released, revoked or expired — so that the
	// first waiter for room tries again. The same hint, never proof. An
	// engine that stores no semaphores returns a channel that stays open.
	WatchSlotRelease(ctx context.Context, full *FullError) <-chan struct{}
}

// ListQuery selects locks for Engine.List.
type ListQuery struct {
	Namespace string
	Kind      Kind
	Prefix    string
	After     string // exclusive; "" starts at the beginning
	Limit     int    // > 0
}

// Matches reports whether id falls under the query, ignoring Limit.
func (q ListQuery) Matches(id ID) bool {
	return id.Namespace == q.Namespace && id.Kind == q.Kind &&
		len(id.Name) >= len(q.Prefix) && id.Name[:len(q.Prefix)] == q.Prefix &&
		id.Name > q.After
}
