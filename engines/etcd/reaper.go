package etcd

import (
	"container/heap"
	"context"
	"errors"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// errPoolClosed is get's answer once the engine is closing; the engine
// refuses operations before they get that far.
var errPoolClosed = errors.New("etcd engine: lease pool closed")

// startWatchLocked starts the watch from revision from, unless it runs
// already, and returns the revision it started from. It starts with the
// first lease — so that an engine that never acquires costs etcd no watch
// — or, earlier, when the engine is to report events (SetEventSink). After
// close it starts nothing (and returns from).
func (p *leasePool) startWatchLocked(from int64) int64 {
	if p.watchFrom == 0 && !p.closed {
		p.watchFrom = from
		p.goroutines.Add(1)
		go p.watchKeys(from)
	}
	if p.watchFrom == 0 {
		return from
	}
	return p.watchFrom
}

// startWatch is startWatchLocked for callers that do not hold p.mu.
func (p *leasePool) startWatch(from int64) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.startWatchLocked(from)
}

// spawn runs f in a goroutine that close stops (through ctx) and waits
// for; after close it runs nothing.
func (p *leasePool) spawn(f func(ctx context.Context)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.goroutines.Add(1)
	go func() {
		defer p.goroutines.Done()
		f(p.ctx)
	}()
}

// watchKeys reports every removal of a key from one of this engine's
// leases (see "Lease accounting"): one watch on the engine's keys, without
// previous values, from the first lease's grant on. clientv3 resumes a
// broken watch by itself; when it gives up (compaction, no leader,
// cancelled by the server), the watch starts again where it stopped, and
// events it can no longer get mark a gap.
func (p *leasePool) watchKeys(from int64) {
	defer p.goroutines.Done()
	retry := 50 * time.Millisecond
	for p.ctx.Err() == nil {
		wctx, cancel := context.WithCancel(p.ctx)
		// Requiring a leader: a member cut off from the cluster cancels the
		// watch (instead of silently delivering nothing), and the next one
		// may reach a member that has a leader.
		wch := p.client.Watch(clientv3.WithRequireLeader(wctx), p.watchKey,
			clientv3.WithPrefix(), clientv3.WithRev(from))
		for resp := range wch {
			if resp.CompactRevision != 0 {
				// Events from from to the compaction are gone.
				p.mu.Lock()
				p.gapLocked(resp.CompactRevision)
				p.mu.Unlock()
				p.poke()
				from = resp.CompactRevision
			}
			if resp.Err() == nil && len(resp.Events) > 0 {
				from = p.count(resp.Events) + 1
				retry = 50 * time.Millisecond
			}
			if p.observe != nil {
				p.observe(&resp)
			}
			if resp.Err() != nil {
				break
			}
		}
		cancel()
		select {
		case <-p.ctx.Done():
		case <-time.After(retry):
			retry = min(2*retry, 5*time.Second)
		}
	}
}

// count applies a watch response's events to the leases' key counts and
// returns the revision of the last one. The events come in revision order,
// and the watch has seen every one since before the first put on any of
// the engine's leases (or a gap was marked): a key's last put seen is its
// previous value.
func (p *leasePool) count(events []*clientv3.Event) int64 {
	wake := false
	p.mu.Lock()
	for _, ev := range events {
		if id, ok := p.onLease[string(ev.Kv.Key)]; ok {
			if ev.Type == clientv3.EventTypePut && clientv3.LeaseID(ev.Kv.Lease) == id {
				continue // rewritten on the lease it was on: no change
			}
			// A delete, or a put onto another lease: the key left the
			// lease its previous value was on.
			delete(p.onLease, string(ev.Kv.Key))
			if p.removedLocked(id) {
				wake = true
			}
		}
		if ev.Type != clientv3.EventTypePut || ev.Kv.Lease == 0 {
			continue
		}
		l := p.all[clientv3.LeaseID(ev.Kv.Lease)]
		switch {
		case l == nil:
			// Another server's lease, or one already gone.
		case len(p.onLease) < p.maxKeys:
			p.onLease[string(ev.Kv.Key)] = l.id
		case !l.unverified:
			// The key's removal will go uncounted: etcd decides.
			l.unverified = true
			p.queueLocked(l)
			wake = true
		}
	}
	last := events[len(events)-1].Kv.ModRevision
	p.watched = max(p.watched, last)
	p.mu.Unlock()
	if wake {
		p.poke()
	}
	return last
}

// reap checks and revokes leases whenever there is something to look at.
func (p *leasePool) reap() {
	defer p.goroutines.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := p.reapDue(p.ctx, false)
		wait := time.Hour
		if !next.IsZero() {
			wait = max(time.Until(next), 0)
		}
		timer.Reset(wait)
		select {
		case <-p.ctx.Done():
			return
		case <-p.wake:
		case <-timer.C:
		}
	}
}

// reapDue checks the leases that are due (all candidates, ignoring backoff,
// when final) and returns when to look again (zero: no time set).
func (p *leasePool) reapDue(ctx context.Context, final bool) time.Time {
	p.mu.Lock()
	now := time.Now()
	p.pruneLocked(now)
	for len(p.later) > 0 && !p.later[0].at.After(now) {
		p.queueLocked(heap.Pop(&p.later).(checkAt).lease)
	}
	if final {
		for _, l := range p.all {
			l.notBefore = time.Time{}
			p.queueLocked(l)
		}
	}
	var due []*pooledLease
	for _, l := range p.ready {
		l.queued = false
		if p.reapableLocked(l, now) {
			l.checking = true
			due = append(due, l)
		}
	}
	clear(p.ready)
	p.ready = p.ready[:0]
	p.mu.Unlock()

	for _, l := range due {
		p.check(ctx, l)
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.ready) > 0 {
		return time.Now() // queued meanwhile
	}
	if len(p.later) > 0 {
		return p.later[0].at
	}
	return time.Time{}
}

// check asks etcd whether l still has keys, and revokes it if not. l is
// closed and has nothing pending, so no key can join it meanwhile.
func (p *leasePool) check(ctx context.Context, l *pooledLease) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	gone := false
	resp, err := p.client.TimeToLive(ctx, l.id, clientv3.WithAttachedKeys())
	switch {
	case err != nil:
	case resp.TTL < 0:
		gone = true // ended already
	case len(resp.Keys) > 0:
		// The watch has not reported every removal yet (or the count is
		// unverified and the locks are live): look again later.
	default:
		_, err = p.client.Revoke(ctx, l.id)
		gone = err == nil || errors.Is(err, rpctypes.ErrLeaseNotFound)
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	l.checking = false
	if gone {
		p.forgetLocked(l)
		return
	}
	l.recheck = min(max(2*l.recheck, firstRecheck), maxRecheck)
	l.notBefore = time.Now().Add(l.recheck)
	heap.Push(&p.later, checkAt{at: l.notBefore, lease: l})
}

// close stops the watch and the reaper, and then — by deadline — revokes
// the leases that are left without keys: all are closed now. It first lets
// the watch catch up with this engine's last write, so that the removals of
// its own last releases are counted.
func (p *leasePool) close(deadline time.Time) {
	p.mu.Lock()
	p.closed = true
	started := p.started
	p.mu.Unlock()
	if !started { // no lease: nothing to revoke (the watch may run, for events)
		p.stop()
		p.goroutines.Wait()
		return
	}
	catchUp := time.Now().Add(closeCatchUp)
	if deadline.Before(catchUp) {
		catchUp = deadline
	}
	for p.watchedBelow(p.lastWrite()) && time.Now().Before(catchUp) && p.ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	p.stop()
	p.goroutines.Wait()
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	p.reapDue(ctx, true)
}

func (p *leasePool) watchedBelow(rev int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.watched < rev
}
