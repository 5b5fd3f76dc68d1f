// Package etcd is a Locklock engine on an etcd cluster, for several
// locklock servers that must agree: every step is one etcd transaction, so
// exactly one acquire of a free lock wins across all servers.
//
// Keys live under a prefix (default "/locklock/"), so that deployments can
// share one etcd:
//
//	<prefix>locks/<namespace>/<kind>/<name>    → lock record (JSON), on a lease
//	<prefix>delays/<namespace>/<kind>/<name>   → delay record (JSON), on a lease; only for locks with a lock-delay
//	<prefix>released/<namespace>/<kind>/<name> → release marker (JSON), on a lease of two seconds; see events.go
//	<prefix>token-base                         → the token base (see tokenBase), written once
//	<prefix>sems/<namespace>/<kind>/<name>#<slot> → slot record (JSON), on a lease; see semaphore.go
//	<prefix>released/<namespace>/<kind>/<name>#<slot> → a slot's release marker; see slot_events.go
//	<prefix>replay                             → empty, rewritten by replays of events; see replay.go
//
// One watch on the prefix sees every kind of record, told apart by the
// segment after it; it is the engine's lease watch (see "Lease accounting"
// in leases.go) and the source of its events (API.md §9, see events.go). A
// step on a lock writes its keys in one transaction, so their events share
// a revision. Listing, counting and acquiring look under locks/ and
// delays/ only.
//
// Guarantees and how they are kept:
//
//   - Acquire is one transaction: if the lock key's create revision is 0
//     (no such key) and there is no delay record, put it with a lease that
//     lasts at least expires_in. Otherwise the same transaction reads both
//     keys: a holder, or a lock-delay to judge (see "Lock-delay" below). Leases are shared by the locks one
//     server acquires with the same TTL within a second (see leaseWindow), so
//     an acquire costs no lease grant and a release no revocation; a lock
//     therefore ends up to a second after its expires_at, never before.
//   - A server revokes its leases once no key is left on them, wherever the
//     locks were released, in the background: it counts the keys on its own
//     leases from the answers to its steps and one watch on the prefix,
//     and etcd confirms a lease has no keys before it is revoked (see "Lease
//     accounting" in leases.go). A lease under a step whose outcome is
//     unknown, and the leases of a server that stopped while they still
//     carried locks, end with their TTL.
//   - The fencing token is the key's create revision (plus a base chosen
//     once per cluster, see tokenBase): etcd's revision counter rises with
//     every write to the cluster, so tokens rise across all servers and
//     restarts, and a refresh (a put to an existing key) keeps it.
//   - Steps that arrive while another is in flight go to etcd together, as
//     nested transactions of one (see batcher): each stays atomic, and the
//     batch costs one round trip and one raft entry. Locks granted in one
//     batch share a revision, hence a token; tokens rise per lock name.
//   - Release and refresh read the lock, check the secret, and commit only
//     if the key's mod revision is still the one they read — no
//     check-then-act race between servers. For a lock this server wrote
//     last, the read comes from memory (see heldCache) and the compare
//     proves it current: one round trip.
//   - Expiry is etcd's: a lock is held until its lease ends, whatever the
//     locklock servers' clocks say. The now an operation is given is not
//     used to judge expiry; expires_at in answers is the acquiring server's
//     reading plus the TTL, for display. etcd rounds a lease TTL below its
//     minimum up (about 1.5 × the election timeout, at least a second: 2 s
//     with etcd's defaults), and removes expired leases on a short cycle
//     (500 ms), so a very short expires_in can outlive what it asked for by
//     a second or two — never the other way round.
//   - Sweep has nothing to do: leases expire by themselves (delay records'
//     too).
//
// Lock-delay (API.md §8). When a lock with a lock-delay expires, etcd
// deletes its key with its lease; the delay must outlive that, and be seen
// by every server. So every write of such a lock (acquire, refresh) also
// puts its delay record — the lock's token, guard, times and lock-delay —
// under the delay key, on a lease of its own that lasts at least until
// expires_at + lock_delay (a shared one, like the locks' own). Then:
//
//   - A release deletes both keys in one transaction: no delay after it.
//   - An acquire that finds no lock key but a delay record judges it at the
//     now it is given (Lock.Bars): while the delay runs, a *DelayedError,
//     unless the acquire reclaims it (the lost holder's secret, after an
//     expiry). Otherwise a second transaction takes the lock if the delay
//     record is still the one judged (its mod revision), replacing the
//     record with the new lock's, or deleting it.
//   - Get, Release and Refresh that find only a delay record in force give
//     a *DelayedError; one that has run out is ignored until its lease
//     takes it.
//
// The delay runs from expires_at, not from the moment etcd ended the
// lease, which may be a second or two later: the lost holder, whose clock
// told it the lock was over at expires_at, is the one the delay protects
// against. A PATCH that changes neither expiry nor lock-delay rewrites
// only the lock record, on the lease it is on: the delay record holds no
// holder or metadata.
//   - A failed or timed-out request is reported as ErrUnavailable — never
//     as success or "not found". When a write timed out (the leader was
//     lost) its outcome is unknown; clients retry with the same secret,
//     which the idempotent re-acquire makes safe.
package etcd

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/locklock/locklock/locklock"
)

// closeGrace bounds Close's own work: a batch still in flight, and the last
// revocations of leases left without keys.
const closeGrace = 2 * time.Second

// Engine is the etcd engine. Create it with New.
type Engine struct {
	client  *clientv3.Client
	prefix  string
	timeout time.Duration

	// base is added to etcd's revisions to make tokens (see tokenBase);
	// zero until first read from etcd.
	base atomic.Uint64

	mu     sync.RWMutex
	closed bool

	leases *leasePool
	held   *heldCache[locklock.ID, stored]
	// heldSlots is heldCache for slots, by slot key.
	heldSlots *heldCache[string, storedSlot]
	batch     *batcher
	feed      *feed
	turns     *turns // of semaphore acquires (see semaphore.go)

	listPage int // slot keys per read of ListSemaphores (listPage)

	// replaying bounds the replays of etcd history that run at once
	// (see EventsAfter).
	replaying chan struct{}
}

var (
	_ locklock.Engine         = (*Engine)(nil)
	_ locklock.ReleaseWatcher = (*Engine)(nil)
)

// Option configures the engine.
type Option func(*Engine)

// WithPrefix sets the key prefix (default "/locklock/").
func WithPrefix(p string) Option { return func(e *Engine) { e.prefix = p } }

// WithRequestTimeout bounds each etcd request (default 5 s), so that an
// unreachable or leaderless cluster gives ErrUnavailable instead of hanging.
func WithRequestTimeout(d time.Duration) Option { return func(e *Engine) { e.timeout = d } }

// New returns an engine on client. The caller keeps ownership of client:
// Close does not close it.
func New(client *clientv3.Client, opts ...Option) *Engine {
	e := &Engine{client: client, prefix: "/locklock/", timeout: 5 * time.Second, listPage: listPage}
	for _, o := range opts {
		o(e)
	}
	e.held = newHeldCache[locklock.ID, stored]()
	e.heldSlots = newHeldCache[string, storedSlot]()
	e.batch = newBatcher(client, e.timeout)
	e.leases = newLeasePool(client, e.timeout, e.prefix, e.batch.lastWrite.Load)
	e.feed = newFeed(e)
	e.turns = newTurns()
	e.leases.observe = e.feed.observe
	e.replaying = make(chan struct{}, maxReplays)
	return e
}

// Prefix is the engine's key prefix.
func (e *Engine) Prefix() string { return e.prefix }

func (e *Engine) key(id locklock.ID) string {
	return e.prefix + "locks/" + id.Namespace + "/" + string(id.Kind) + "/" + id.Name
}

// delayKey is where the delay record of a lock with a lock-delay lives.
func (e *Engine) delayKey(id locklock.ID) string {
	return e.prefix + "delays/" + id.Namespace + "/" + string(id.Kind) + "/" + id.Name
}

// enter is every operation's preamble: it refuses after Close or a done
// context, and learns the token base if it is not known yet. done ends the
// operation. Operations bound their requests by the request timeout
// themselves (see bounded): a step's write has a context of its own.
func (e *Engine) enter(ctx context.Context) (done func(), err error) {
	e.mu.RLock()
	if e.closed {
		e.mu.RUnlock()
		return nil, locklock.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		e.mu.RUnlock()
		return nil, err
	}
	if e.base.Load() == 0 {
		octx, cancel := context.WithTimeout(ctx, e.timeout)
		_, err := e.tokenBase(ctx, octx)
		cancel()
		if err != nil {
			e.mu.RUnlock()
			return nil, err
		}
	}
	return e.mu.RUnlock, nil
}

// bounded is enter for operations that only read: it returns ctx bounded
// by the request timeout.
func (e *Engine) bounded(ctx context.Context) (context.Context, func(), error) {
	done, err := e.enter(ctx)
	if err != nil {
		return nil, nil, err
	}
	octx, cancel := context.WithTimeout(ctx, e.timeout)
	return octx, func() { cancel(); done() }, nil
}

// storeErr classifies an etcd failure. The caller's own cancellation stays
// itself; everything else (unreachable, no leader, timed out) means the
// outcome is unknown or the store cannot answer: ErrUnavailable.
func storeErr(parent context.Context, op string, err error) error {
	if perr := parent.Err(); perr != nil && errors.Is(err, perr) {
		return perr
	}
	return fmt.Errorf("%w: etcd %s: %w", locklock.ErrUnavailable, op, err)
}

// ttlSeconds is the lease TTL for a lock from granted to expires, rounded up
// to whole seconds (etcd's unit) and at least one.
func ttlSeconds(from, to time.Time) int64 {
	d := to.Sub(from)
	s := int64((d + time.Second - 1) / time.Second)
	return max(s, 1)
}

// List implements locklock.Engine as one range read in key order, which is
// name order.
func (e *Engine) List(ctx context.Context, q locklock.ListQuery, now time.Time) ([]locklock.Lock, error) {
	octx, done, err := e.bounded(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	if q.Limit <= 0 {
		return nil, nil
	}
	base := e.key(locklock.ID{Namespace: q.Namespace, Kind: q.Kind})
	prefix := base + q.Prefix
	start := prefix
	if q.After != "" && base+q.After+"\x00" > start {
		start = base + q.After + "\x00" // the first key after After
	}
	resp, err := e.client.Get(octx, start,
		clientv3.WithRange(clientv3.GetPrefixRangeEnd(prefix)),
		clientv3.WithLimit(int64(q.Limit)),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, storeErr(ctx, "list", err)
	}
	out := make([]locklock.Lock, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		id := locklock.ID{Namespace: q.Namespace, Kind: q.Kind, Name: string(kv.Key[len(base):])}
		l, _, err := e.decode(id, kv.Value, kv.CreateRevision, resp.Header.Revision)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}

// Sweep implements locklock.Engine. etcd ends leases by itself, so there is
// nothing to sweep.
func (e *Engine) Sweep(ctx context.Context, now time.Time) (int, error) {
	done, err := e.enter(ctx)
	if err != nil {
		return 0, err
	}
	done()
	return 0, nil
}

// Ping implements locklock.Engine with a linearizable read, which needs a
// leader and a quorum: exactly what serving locks needs.
func (e *Engine) Ping(ctx context.Context) error {
	octx, done, err := e.bounded(ctx)
	if err != nil {
		return err
	}
	defer done()
	if _, err := e.client.Get(octx, e.prefix+"ping", clientv3.WithCountOnly()); err != nil {
		return storeErr(ctx, "ping", err)
	}
	return nil
}

// CountHeld implements locklock.Engine with a count-only range read of the
// lock keys: etcd's leases delete expired locks, so every key is live.
func (e *Engine) CountHeld(ctx context.Context, now time.Time) (int, error) {
	octx, done, err := e.bounded(ctx)
	if err != nil {
		return 0, err
	}
	defer done()
	resp, err := e.client.Get(octx, e.prefix+"locks/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, storeErr(ctx, "count", err)
	}
	return int(resp.Count), nil
}

// WatchRelease implements locklock.ReleaseWatcher: it watches the lock's key
// from just after the revision it was read at, for a delete (release or
// lease expiry).
func (e *Engine) WatchRelease(ctx context.Context, held locklock.Lock) <-chan struct{} {
	return e.watchDelete(ctx, e.key(held.ID), held.Revision+1)
}

// WatchSlotRelease implements locklock.ReleaseWatcher: it watches the
// semaphore's range from just after the revision it was judged full at,
// for the delete of any slot key (a release, a revoke, a lease's end).
// Puts — other acquires, refreshes — make no room and are filtered out.
func (e *Engine) WatchSlotRelease(ctx context.Context, full *locklock.FullError) <-chan struct{} {
	if full.Revision == 0 {
		return make(chan struct{}) // not judged by this engine: nothing to watch from
	}
	return e.watchDelete(ctx, e.semKey(full.ID), full.Revision+1, clientv3.WithPrefix())
}

// watchDelete returns a channel closed at the first delete of key (or of
// the keys opts select) from revision from on.
func (e *Engine) watchDelete(ctx context.Context, key string, from int64, opts ...clientv3.OpOption) <-chan struct{} {
	gone := make(chan struct{})
	opts = append(opts, clientv3.WithRev(from), clientv3.WithFilterPut())
	wch := e.client.Watch(clientv3.WithRequireLeader(ctx), key, opts...)
	go func() {
		for resp := range wch {
			if resp.Err() != nil {
				// The watch failed (no leader, compaction, auth). Do not
				// wake the waiter: it would set up a new watch at once and
				// could spin. Its poll and expiry timers cover the rest.
				return
			}
			if len(resp.Events) > 0 {
				close(gone)
				return
			}
		}
	}()
	return gone
}

// Close implements locklock.Engine. It does not close the client.
// Operations have finished when it takes the lock; then the batcher stops
// (nothing is sent after Close), and the leases left without keys are
// revoked, all within closeGrace (a lease not revoked ends with its TTL).
func (e *Engine) Close() error {
	e.mu.Lock()
	already := e.closed
	e.closed = true
	e.mu.Unlock()
	if already {
		return nil
	}
	deadline := time.Now().Add(closeGrace)
	e.batch.close(deadline)
	e.leases.close(deadline)
	return nil
}
