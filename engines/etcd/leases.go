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

// leasePool hands out shared leases. It tracks only leases this engine
// granted; locks acquired through other servers carry theirs.
type leasePool struct {
	client  *clientv3.Client
	timeout time.Duration
	revoke  func(clientv3.LeaseID) // in the background

	mu       sync.Mutex
	open     map[int64]*pooledLease // by TTL: the lease new locks join
	all      map[clientv3.LeaseID]*pooledLease
	byEnd    endHeap                 // all, soonest end first
	granting map[int64]chan struct{} // one Grant per TTL at a time
}

type pooledLease struct {
	id        clientv3.LeaseID
	ttl       int64
	openUntil time.Time // new locks join until then
	endsAt    time.Time // etcd has ended it by then at the latest (unless a leader change renewed it)
	refs      int       // locks (and acquires in flight) on it
	index     int       // in byEnd; -1 once forgotten
}

func newLeasePool(client *clientv3.Client, timeout time.Duration, revoke func(clientv3.LeaseID)) *leasePool {
	return &leasePool{
		client: client, timeout: timeout, revoke: revoke,
		open:     make(map[int64]*pooledLease),
		all:      make(map[clientv3.LeaseID]*pooledLease),
		granting: make(map[int64]chan struct{}),
	}
}

// get returns a lease that lasts at least ttl seconds from now, and takes a
// reference on it: the caller must put its lock on it, or call put.
func (p *leasePool) get(ctx context.Context, ttl int64) (clientv3.LeaseID, error) {
	for {
		p.mu.Lock()
		p.pruneLocked()
		if l := p.open[ttl]; l != nil && time.Now().Before(l.openUntil) {
			l.refs++
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
		l.refs++
		if old := p.open[ttl]; old != nil {
			p.closeLocked(old)
		}
		p.open[ttl] = l
		p.all[l.id] = l
		heap.Push(&p.byEnd, l)
		p.mu.Unlock()
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
		openUntil: sent.Add(leaseWindow),
		endsAt:    time.Now().Add(time.Duration(resp.TTL+1) * time.Second),
	}, nil
}

// put drops a reference taken by get (the lock was not put on the lease,
// or it was released or moved to another lease). A lease nobody uses any
// more and that takes no new locks is revoked, so that etcd forgets it now
// rather than at the end of its TTL.
func (p *leasePool) put(id clientv3.LeaseID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.all[id]
	if l == nil {
		return // another server's lease, or one already pruned
	}
	l.refs--
	if l.refs <= 0 && !time.Now().Before(l.openUntil) {
		p.forgetLocked(l)
		p.revoke(l.id)
	}
}

// closeLocked stops l from taking new locks; unused, it is revoked.
func (p *leasePool) closeLocked(l *pooledLease) {
	if p.open[l.ttl] == l {
		delete(p.open, l.ttl)
	}
	if l.refs <= 0 {
		p.forgetLocked(l)
		p.revoke(l.id)
	}
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
func (p *leasePool) pruneLocked() {
	now := time.Now()
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
