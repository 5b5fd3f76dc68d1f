package etcd

import (
	"container/heap"
	"context"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// leaseWindow is how long one lease takes in new locks of the same TTL.
// Granting a lease per lock costs a round trip to etcd on every acquire and
// one more to revoke it on release; sharing one among the locks acquired
// within a window removes both from the hot path. The price: a lease must
// outlive the last lock that joins it, so it gets the TTL plus one second
// (etcd counts whole seconds), and a lock may outlive its expires_at by up
// to that second — never end before it.
const leaseWindow = time.Second

// Lease accounting: when may a shared lease be revoked?
//
// A lease ends with its TTL (30 days by default) unless it is revoked, and
// etcd keeps every lease in memory and checks it until then; one server
// grants one per TTL per second. So a lease should be revoked once no lock
// uses it. Revoking one too early, though, deletes live locks: that must
// never happen.
//
// Counting references locally is not enough: a lock acquired through this
// server is typically released, or refreshed onto another lease, through
// another server behind the same load balancer, and this server would
// never hear of it. So each engine counts, per lease of its own:
//
//   - keys: puts on the lease that etcd acknowledged (counted when the
//     answer arrives), minus removals reported by one watch on all the
//     engine's keys — lock keys and delay keys (watchKeys). A removal is
//     any event on a key whose previous value was on the lease — a delete
//     (release, expiry, an acquire that replaces a delay record) or a put
//     onto another lease (a refresh, through any server). Our own
//     releases are counted by the watch as well, so nothing is counted
//     twice. A removal may overtake the acknowledgement of its put, so
//     keys may briefly be negative.
//
//     A put that leaves a key on the lease it was on counts for nothing,
//     neither as a removal nor as a put: a PATCH of holder or metadata
//     rewrites a lock on its own lease, whichever server's that is, and
//     a server cannot tell another of a put; and a refresh may land on
//     the shared lease it was on. The step that makes such a put knows it
//     does (it compares the key's mod revision, so the lease it read is
//     the one the key is on) and settles it as stepKept.
//
//     The watch learns which lease a key's previous value was on from its
//     own earlier events, not from etcd's previous values (WithPrevKV): it
//     sees every put since before the engine's first lease, so the last
//     put it saw on a key is the key's previous value. It remembers, for
//     each key whose last put was on one of the engine's leases, that lease
//     (onLease). etcd would read each event's previous value from its
//     backend, a read that on etcd 3.4 copies its whole write buffer: that
//     cost etcd more CPU per lock cycle than the steps themselves.
//   - pending: steps in flight that may put a key on it; they are settled
//     (applied, kept, not applied, unknown) before their caller returns.
//   - tainted: a step on it ended with an unknown outcome (a timeout, a
//     lost leader): the put may still be applied later, unseen by keys. A
//     tainted lease is never revoked; it ends with its TTL.
//
// A lease is a candidate for revocation when it is closed (its window is
// over, so no new step can take it), nothing is pending, keys <= 0 and it
// is not tainted. Only this engine puts new keys on its leases (other
// servers only rewrite keys already on them, in place), so then every put
// on it was applied and acknowledged, and the watch has reported as many
// removals as there were puts: no key is left, and none can come. (A
// rewrite in place lands only while its key is on the lease — it compares
// the key's mod revision — so it never brings a key back to a lease etcd
// has found empty.)
// Before revoking, the reaper still asks etcd (TimeToLive with the
// attached keys) and revokes only a lease that has none — a check that
// costs nothing on the request path and guards the counting. etcd 3.5+
// answers it on the leader after applying everything committed, so every
// acknowledged put is visible to it (3.4 does not wait for the leader's
// apply; there the check guards the counting, which is exact by itself
// while the watch misses nothing).
//
// When the watch misses events (its history was compacted while it was
// away), the counts of the leases it may concern can only be too high,
// never too low (events are only removals): those leases are marked
// unverified, and for them etcd's TimeToLive alone decides, re-asked with
// backoff while keys are attached. The same goes for a lease whose key the
// watch cannot remember because it already remembers maxOnLease keys.
//
// What stays until its TTL: tainted leases; the leases of a server that
// stopped or was killed while they still carried locks (another server
// cannot know they were this one's, and a restarted server starts afresh);
// and, on etcd servers with etcd-io/etcd#18089 (3.4.23, for one), a lease
// whose last removal was a delete at exactly the revision etcd compacted to
// while the watch was away — such a server drops that event without an
// error.
//
// Revocations and checks run in one reaper goroutine per engine, off the
// request path: it looks at a lease when its count drops to zero, when its
// window closes (so the last lease of a burst goes too), and on retries.

const (
	// firstRecheck and maxRecheck bound the backoff for a lease that etcd
	// still reports keys on (or that could not be checked).
	firstRecheck = time.Second
	maxRecheck   = 10 * time.Minute
	// closeCatchUp is how long Close lets the watch catch up with this
	// engine's own last write, so that leases emptied just before are
	// revoked too.
	closeCatchUp = time.Second
	// maxOnLease bounds onLease (about 120 bytes a key, 120 MB): beyond it, a
	// lease whose key cannot be remembered is left to etcd's count.
	maxOnLease = 1 << 20
)

// stepOutcome is how a step that get gave a lease to ended.
type stepOutcome int

const (
	stepNotApplied stepOutcome = iota // etcd did not apply it (refused, failed compare, never sent)
	stepApplied                       // etcd applied the put: one more key on the lease
	stepKept                          // etcd applied the put, but the key was on the lease already
	stepUnknown                       // it may have been applied, or may still be
)

// leasePool hands out shared leases and revokes them when no key is left
// on them (see "Lease accounting" above). It tracks only leases this
// engine granted.
type leasePool struct {
	client     *clientv3.Client
	timeout    time.Duration
	watchKey   string // the prefix the watch covers: every key the engine puts on a lease is under it
	lastWrite  func() int64
	wake       chan struct{} // the reaper has leases to look at
	ctx        context.Context
	stop       context.CancelFunc
	goroutines sync.WaitGroup // the watch and the reaper

	// observe, when set, is given every response of the watch, after the
	// lease accounting has seen it: the engine's events (see events.go).
	observe func(*clientv3.WatchResponse)

	mu        sync.Mutex
	closed    bool
	started   bool                              // the reaper
	watchFrom int64                             // the revision the watch started from; 0: not started
	open      map[int64]*pooledLease            // by TTL: the lease new locks join
	all       map[clientv3.LeaseID]*pooledLease // every lease not yet revoked or ended
	byEnd     endHeap                           // all, soonest end first
	granting  map[int64]chan struct{}           // one Grant per TTL at a time
	ready     []*pooledLease                    // for the reaper, now
	later     checkHeap                         // for the reaper, at a time
	watched   int64                             // highest revision the watch has reported
	gapBelow  int64                             // the watch missed events below this revision
	onLease   map[string]clientv3.LeaseID       // lock key → the lease of its last put, where that is one in all
	maxKeys   int                               // bound of onLease (maxOnLease; tests set less)
}

type pooledLease struct {
	id        clientv3.LeaseID
	ttl       int64
	granted   int64     // the revision at its grant: every put on it comes later
	openUntil time.Time // new locks join until then
	endsAt    time.Time // etcd has ended it by then at the latest (unless a leader change renewed it)

	// See "Lease accounting".
	pending    int  // steps in flight that may put a key on it
	keys       int  // acknowledged puts minus removals the watch reported
	tainted    bool // a step on it ended with an unknown outcome: never revoked
	unverified bool // the watch may have missed removals: etcd decides
	queued     bool // in ready
	checking   bool // the reaper is asking etcd about it
	recheck    time.Duration
	notBefore  time.Time // no check before then (backoff)
	index      int       // in byEnd; -1 once forgotten
}

// newLeasePool returns a pool for leases whose keys live under watchKey;
// lastWrite reports the revision of this engine's last write (for Close).
func newLeasePool(client *clientv3.Client, timeout time.Duration, watchKey string, lastWrite func() int64) *leasePool {
	// The client's context too: goroutines of an engine that is never
	// closed stop with its client.
	ctx, stop := context.WithCancel(client.Ctx())
	return &leasePool{
		client: client, timeout: timeout, watchKey: watchKey, lastWrite: lastWrite,
		wake: make(chan struct{}, 1), ctx: ctx, stop: stop,
		open:     make(map[int64]*pooledLease),
		all:      make(map[clientv3.LeaseID]*pooledLease),
		granting: make(map[int64]chan struct{}),
		onLease:  make(map[string]clientv3.LeaseID),
		maxKeys:  maxOnLease,
	}
}

// get returns a lease that lasts at least ttl seconds from now, with a
// pending step on it: the caller must settle it.
func (p *leasePool) get(ctx context.Context, ttl int64) (clientv3.LeaseID, error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return 0, errPoolClosed
		}
		p.pruneLocked(time.Now())
		if l := p.open[ttl]; l != nil && time.Now().Before(l.openUntil) {
			l.pending++
			p.mu.Unlock()
			return l.id, nil
		}
		if wait, busy := p.granting[ttl]; busy {
			p.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
		done := make(chan struct{})
		p.granting[ttl] = done
		p.mu.Unlock()

		l, err := p.grant(ctx, ttl)
		p.mu.Lock()
		delete(p.granting, ttl)
		close(done)
		if err != nil {
			p.mu.Unlock()
			return 0, err
		}
		l.pending++
		l.unverified = l.granted < p.gapBelow
		p.open[ttl] = l // the one it replaces is past its window
		p.all[l.id] = l
		heap.Push(&p.byEnd, l)
		heap.Push(&p.later, checkAt{at: l.openUntil, lease: l})
		if !p.started {
			p.started = true
			p.goroutines.Add(1)
			go p.reap()
		}
		if from := p.startWatchLocked(l.granted + 1); from > l.granted+1 {
			// The watch was started for events (SetEventSink) from a
			// revision read just after this grant: puts on the lease
			// before it go unseen, so etcd decides for it.
			p.gapLocked(from)
		}
		p.mu.Unlock()
		p.poke() // the reaper's next timer may now be earlier
		return l.id, nil
	}
}

// grant asks etcd for a lease of ttl+1 seconds. The window is counted from
// before the request, so every lock that joins lives at least ttl seconds.
func (p *leasePool) grant(ctx context.Context, ttl int64) (*pooledLease, error) {
	sent := time.Now()
	// Not the caller's context alone: other acquires wait on this grant.
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.timeout)
	defer cancel()
	resp, err := p.client.Grant(gctx, ttl+1)
	if err != nil {
		return nil, err
	}
	return &pooledLease{
		id:        resp.ID,
		ttl:       ttl,
		granted:   resp.ResponseHeader.GetRevision(),
		openUntil: sent.Add(leaseWindow),
		endsAt:    time.Now().Add(time.Duration(resp.TTL+1) * time.Second),
	}, nil
}

// settle ends a step that get gave id to.
func (p *leasePool) settle(id clientv3.LeaseID, outcome stepOutcome) {
	p.mu.Lock()
	l := p.all[id]
	if l == nil {
		p.mu.Unlock()
		return // ended meanwhile
	}
	l.pending--
	switch outcome {
	case stepApplied:
		l.keys++
	case stepUnknown:
		l.tainted = true
	}
	wake := p.mayReapLocked(l)
	p.mu.Unlock()
	if wake {
		p.poke()
	}
}

// mayReapLocked queues l for the reaper if it may have just become a
// candidate, and says so. A lease still open is left to its window's
// close, so that the reaper does not wake for every release of a lock on
// the lease new locks are joining.
func (p *leasePool) mayReapLocked(l *pooledLease) bool {
	if l.pending > 0 || l.keys > 0 || l.tainted || (!p.closed && time.Now().Before(l.openUntil)) {
		return false
	}
	p.queueLocked(l)
	return true
}

// removedLocked counts the removal of a key from lease id, reported by the
// watch, and reports whether the reaper should look at the lease.
func (p *leasePool) removedLocked(id clientv3.LeaseID) bool {
	l := p.all[id]
	if l == nil {
		return false // another server's lease, or one already gone
	}
	l.keys--
	return p.mayReapLocked(l)
}

// gapLocked records that the watch may have missed removals at revisions
// below rev: the counts of leases granted before then may be too high.
func (p *leasePool) gapLocked(rev int64) {
	p.gapBelow = max(p.gapBelow, rev)
	// Every key remembered so far was put before the gap, on a lease
	// granted before it, which etcd now checks: their removals need not be
	// counted, and keys removed within the gap would be remembered forever.
	clear(p.onLease)
	for _, l := range p.all {
		if l.granted < rev && !l.unverified {
			l.unverified = true
			p.queueLocked(l)
		}
	}
}

func (p *leasePool) queueLocked(l *pooledLease) {
	if !l.queued {
		l.queued = true
		p.ready = append(p.ready, l)
	}
}

// poke wakes the reaper, if it is not awake already.
func (p *leasePool) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// reapableLocked says whether l may be checked and, if etcd agrees it has
// no keys, revoked now.
func (p *leasePool) reapableLocked(l *pooledLease, now time.Time) bool {
	closed := p.closed || !now.Before(l.openUntil)
	return p.all[l.id] == l && closed && l.pending == 0 && !l.tainted && !l.checking &&
		(l.keys <= 0 || l.unverified) && !now.Before(l.notBefore)
}

func (p *leasePool) forgetLocked(l *pooledLease) {
	delete(p.all, l.id)
	if p.open[l.ttl] == l {
		delete(p.open, l.ttl)
	}
	if l.index >= 0 {
		heap.Remove(&p.byEnd, l.index)
	}
}

// pruneLocked forgets leases etcd has ended: their locks went with them.
// The heap makes it cost only what it removes.
func (p *leasePool) pruneLocked(now time.Time) {
	for len(p.byEnd) > 0 && now.After(p.byEnd[0].endsAt) {
		p.forgetLocked(p.byEnd[0])
	}
}

// endHeap orders leases by endsAt (container/heap).
type endHeap []*pooledLease

func (h endHeap) Len() int           { return len(h) }
func (h endHeap) Less(i, j int) bool { return h[i].endsAt.Before(h[j].endsAt) }
func (h endHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *endHeap) Push(x any) {
	l := x.(*pooledLease)
	l.index = len(*h)
	*h = append(*h, l)
}
func (h *endHeap) Pop() any {
	old := *h
	l := old[len(old)-1]
	old[len(old)-1] = nil
	l.index = -1
	*h = old[:len(old)-1]
	return l
}

// checkAt asks the reaper to look at a lease at a time: when its window
// closes, or to retry a check. Entries are hints; the lease's state then
// decides.
type checkAt struct {
	at    time.Time
	lease *pooledLease
}

// checkHeap orders checkAt entries by time (container/heap).
type checkHeap []checkAt

func (h checkHeap) Len() int           { return len(h) }
func (h checkHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h checkHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *checkHeap) Push(x any)        { *h = append(*h, x.(checkAt)) }
func (h *checkHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	old[len(old)-1] = checkAt{}
	*h = old[:len(old)-1]
	return c
}
