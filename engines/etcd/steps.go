package etcd

import (
	"context"
	"errors"
	"fmt"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/locklock/locklock/locklock"
)

// maxAcquireTries bounds the transactions of one TryAcquire. Each try after
// the first follows a change by someone else (a delay record judged, then
// replaced or gone), so a few are plenty; more means a pathological race.
const maxAcquireTries = 8

// TryAcquire implements locklock.Engine.
func (e *Engine) TryAcquire(ctx context.Context, l locklock.Lock, now time.Time) (locklock.Lock, error) {
	done, err := e.enter(ctx)
	if err != nil {
		return locklock.Lock{}, err
	}
	defer done()
	cand := l
	l.Reclaims = 0
	// Once a lease is taken, see the step through even if the client goes
	// away, so that the lease learns its outcome; the request timeout
	// still bounds it.
	octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.timeout)
	defer cancel()
	lease, delayLease, err := e.leasesFor(octx, l.AcquiredAt, l)
	if err != nil {
		return locklock.Lock{}, storeErr(ctx, "grant lease", err)
	}
	key, delayKey := e.key(l.ID), e.delayKey(l.ID)
	lr := lockRecord(l, lease, delayLease)
	value := lr.encode()
	var delay *delayPut
	if delayLease != 0 {
		// No token: it is this transaction's revision (see decodeDelay).
		dr := delayRecord(l, delayLease)
		delay = &delayPut{value: dr.encode(), lease: delayLease}
	}

	var (
		resp      txnResult
		commitErr error            // the transaction's own failure: outcome unknown, or not sent
		refusal   error            // why the lock is not this acquire's
		delayRev  int64            // the delay record judged; 0: none
		prev      clientv3.LeaseID // the lease it is on
	)
	for try := 1; refusal == nil; try++ {
		resp, commitErr = e.batch.commit(octx, key, acquireTxn(key, delayKey, value, lease, delay, delayRev))
		if commitErr != nil || resp.succeeded {
			break
		}
		if len(resp.responses) != 2 {
			refusal = fmt.Errorf("%w: etcd acquire: %d answers to 2 reads", locklock.ErrUnavailable, len(resp.responses))
			break
		}
		f, err := e.found(l.ID, resp.responses[0], resp.responses[1], resp.revision)
		switch {
		case err != nil:
			refusal = err
		case f.hasLock:
			refusal = &locklock.HeldError{Lock: f.lock.lock}
		case !f.hasDelay:
			// The delay record judged last time is gone (its lease
			// ended): try as for a free lock.
			delayRev, prev = 0, 0
		default:
			refusal = f.delay.Bars(cand, now)
			delayRev, prev = f.delayRev, f.delayLease
		}
		if refusal == nil && try == maxAcquireTries {
			refusal = fmt.Errorf("%w: etcd acquire: the lock kept changing", locklock.ErrUnavailable)
		}
	}
	// A delay record put on the lease the one it replaces was on stays
	// where it was, for the lease accounting.
	e.settle(resp, commitErr, lease, 0)
	e.settle(resp, commitErr, delayLease, prev)
	if commitErr != nil {
		return locklock.Lock{}, storeErr(ctx, "acquire", commitErr)
	}
	if refusal != nil {
		return locklock.Lock{}, refusal
	}
	l.Token = e.base.Load() + uint64(resp.revision)
	l.Revision = resp.revision
	e.held.set(l.ID, stored{lock: l, modRev: resp.revision, lease: lease, delayLease: delayLease})
	return l, nil
}

// leasesFor takes the leases a write of l puts its keys on, from the pool,
// with a step pending on each (see settle): one that lasts from from until
// l's expiry, and for a lock with a lock-delay, one that lasts until the
// delay that may follow it has run out (zero without).
func (e *Engine) leasesFor(ctx context.Context, from time.Time, l locklock.Lock) (lease, delayLease clientv3.LeaseID, err error) {
	lease, err = e.leases.get(ctx, ttlSeconds(from, l.ExpiresAt))
	if err != nil || l.LockDelay <= 0 {
		return lease, 0, err
	}
	delayLease, err = e.leases.get(ctx, ttlSeconds(from, l.DelayedUntil()))
	if err != nil {
		e.leases.settle(lease, stepNotApplied)
		return 0, 0, err
	}
	return lease, delayLease, nil
}

// settle ends the step on lease (none when zero) that a step put a key on,
// given the step's answer. prev is the lease the key was on before the
// step (zero: the key did not exist): a put that leaves it there adds no
// key (see "Lease accounting").
func (e *Engine) settle(resp txnResult, err error, lease, prev clientv3.LeaseID) {
	if lease == 0 {
		return
	}
	outcome := putOutcome(resp, err)
	if outcome == stepApplied && lease == prev {
		outcome = stepKept
	}
	e.leases.settle(lease, outcome)
}

// putOutcome is how a step that puts a key on a lease ended, for the lease
// accounting: a transaction that was never sent, or that etcd answered
// without taking the put branch, did not put it.
func putOutcome(resp txnResult, err error) stepOutcome {
	switch {
	case errors.Is(err, errNotSent):
		return stepNotApplied
	case err != nil:
		return stepUnknown
	case resp.succeeded:
		return stepApplied
	default:
		return stepNotApplied
	}
}

// found is what one read of a lock's two keys found.
type found struct {
	lock    stored // the lock record, when hasLock
	hasLock bool

	delay      locklock.Lock // the delay record, as the lost lock (Ended), when hasDelay
	hasDelay   bool
	delayRev   int64            // its mod revision
	delayLease clientv3.LeaseID // the lease it is on
}

// found decodes the answers to reads of id's lock key and delay key, made
// at readRev.
func (e *Engine) found(id locklock.ID, lockRead, delayRead *pb.ResponseOp, readRev int64) (found, error) {
	var f found
	if kvs := lockRead.GetResponseRange().GetKvs(); len(kvs) > 0 {
		kv := kvs[0]
		l, delayLease, err := e.decode(id, kv.Value, kv.CreateRevision, readRev)
		if err != nil {
			return found{}, err
		}
		f.lock = stored{lock: l, modRev: kv.ModRevision, lease: clientv3.LeaseID(kv.Lease), delayLease: delayLease}
		f.hasLock = true
	}
	if kvs := delayRead.GetResponseRange().GetKvs(); len(kvs) > 0 {
		kv := kvs[0]
		d, err := e.decodeDelay(id, kv.Value, kv.ModRevision, readRev)
		if err != nil {
			return found{}, err
		}
		f.delay, f.hasDelay, f.delayRev, f.delayLease = d, true, kv.ModRevision, clientv3.LeaseID(kv.Lease)
	}
	return f, nil
}

// read returns the lock under id as stored; a *DelayedError when only its
// delay record is left and the delay runs at now; else ErrNotFound. A lock
// is live as long as its key exists.
func (e *Engine) read(ctx, octx context.Context, id locklock.ID, now time.Time) (stored, error) {
	resp, err := e.batch.txn(octx, readTxn(e.key(id), e.delayKey(id)))
	if err != nil {
		return stored{}, storeErr(ctx, "read", err)
	}
	if len(resp.Responses) != 2 {
		return stored{}, fmt.Errorf("%w: etcd read: %d answers to 2 reads", locklock.ErrUnavailable, len(resp.Responses))
	}
	f, err := e.found(id, resp.Responses[0], resp.Responses[1], resp.Header.Revision)
	switch {
	case err != nil:
		return stored{}, err
	case f.hasLock:
		return f.lock, nil
	case f.hasDelay && f.delay.Delaying(now):
		return stored{}, &locklock.DelayedError{Lock: f.delay}
	}
	// With the revision it was read at: a stream's state "no lock" then
	// holds events up to it back (Service.Watch).
	return stored{}, &locklock.NotFoundError{ID: id, Revision: resp.Header.Revision}
}

// Get implements locklock.Engine.
func (e *Engine) Get(ctx context.Context, id locklock.ID, now time.Time) (locklock.Lock, error) {
	octx, done, err := e.bounded(ctx)
	if err != nil {
		return locklock.Lock{}, err
	}
	defer done()
	s, err := e.read(ctx, octx, id, now)
	return s.lock, err
}

// change is Release's and Refresh's common step: find the lock, ask allow,
// and commit write only if the key's mod revision is still the one found;
// retry if a concurrent write came first. The lock is found in the held
// cache when this engine wrote it last (one round trip in all), else read.
func (e *Engine) change(ctx context.Context, id locklock.ID, now time.Time, allow func(locklock.Lock) error,
	write func(octx context.Context, cur stored) (locklock.Lock, bool, error)) (locklock.Lock, error) {
	done, err := e.enter(ctx)
	if err != nil {
		return locklock.Lock{}, err
	}
	defer done()
	// Reads are bounded by the request timeout from now on, all together;
	// a lock found in the cache needs none.
	deadline := time.Now().Add(e.timeout)
	var octx context.Context
	cached, useCache := e.held.get(id)
	for {
		var cur stored
		if useCache {
			useCache = false
			cur = cached
			if allow(cur.lock) != nil {
				continue // a refusal must rest on a fresh read
			}
		} else {
			if octx == nil {
				var cancel context.CancelFunc
				octx, cancel = context.WithDeadline(ctx, deadline)
				defer cancel()
			}
			cur, err = e.read(ctx, octx, id, now)
			if err != nil {
				e.held.forget(id)
				return locklock.Lock{}, err
			}
			if err := allow(cur.lock); err != nil {
				return locklock.Lock{}, err
			}
		}
		// Like TryAcquire: see a write that takes a lease through, even if
		// the client goes away meanwhile.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.timeout)
		out, ok, err := write(wctx, cur)
		cancel()
		if err != nil {
			e.held.forget(id)
			return locklock.Lock{}, storeErr(ctx, "write", err)
		}
		if ok {
			return out, nil
		}
		e.held.forget(id)
	}
}

// Release implements locklock.Engine: the lock key and its delay record go
// in one transaction, so no lock-delay follows a release; so does the
// release marker, which tells the watches of every server that this delete
// is a release, not an expiry (see events.go).
func (e *Engine) Release(ctx context.Context, id locklock.ID, now time.Time, allow func(locklock.Lock) error) (locklock.Lock, error) {
	key, markerKey := e.key(id), e.markerKey(id)
	// The leases the keys were on learn of the deletes from their owners'
	// watches (see "Lease accounting"), whichever servers those are.
	return e.change(ctx, id, now, allow, func(octx context.Context, cur stored) (locklock.Lock, bool, error) {
		delayKey := ""
		if cur.lock.LockDelay > 0 {
			delayKey = e.delayKey(id)
		}
		markerLease, err := e.leases.get(octx, markerTTL)
		if err != nil {
			return locklock.Lock{}, false, err
		}
		mk := marker{Token: cur.lock.Token, At: now.UnixMilli()}
		resp, err := e.batch.commit(octx, key, releaseTxn(key, delayKey, markerKey, mk.encode(), markerLease, cur.modRev))
		// Settled as a new key on the lease: the marker key may have been
		// on it already (an earlier release of the lock within its
		// window), which leaves the count one too high — that only keeps
		// the lease until its TTL, two seconds — never too low.
		e.settle(resp, err, markerLease, 0)
		if err != nil || !resp.succeeded {
			return locklock.Lock{}, false, err
		}
		e.held.forget(id)
		return cur.lock, true, nil
	})
}

// Revoke implements locklock.Engine as Release does, but for two things:
// its marker says Revoked, so that every server's watch reports the delete
// as `revoked`; and a lock with a lock-delay leaves its delay record, now
// Revoked and ended at now, on a lease that ends with the new lock-delay.
func (e *Engine) Revoke(ctx context.Context, id locklock.ID, now time.Time) (locklock.Lock, error) {
	key, delayKey, markerKey := e.key(id), e.delayKey(id), e.markerKey(id)
	return e.change(ctx, id, now, allowAny, func(octx context.Context, cur stored) (locklock.Lock, bool, error) {
		ended, keep := cur.lock.Revoke(now)
		var (
			delay      *delayPut
			delayLease clientv3.LeaseID
			err        error
		)
		if keep {
			if delayLease, err = e.leases.get(octx, ttlSeconds(now, ended.DelayedUntil())); err != nil {
				return locklock.Lock{}, false, err
			}
			dr := delayRecord(ended, delayLease)
			delay = &delayPut{value: dr.encode(), lease: delayLease}
		}
		markerLease, err := e.leases.get(octx, markerTTL)
		if err != nil {
			if delayLease != 0 {
				e.leases.settle(delayLease, stepNotApplied)
			}
			return locklock.Lock{}, false, err
		}
		mk := marker{Token: cur.lock.Token, At: now.UnixMilli(), Revoked: true}
		resp, err := e.batch.commit(octx, key, revokeTxn(key, delayKey, delay, markerKey, mk.encode(), markerLease, cur.modRev))
		e.settle(resp, err, markerLease, 0) // as in Release
		e.settle(resp, err, delayLease, cur.delayLease)
		if err != nil || !resp.succeeded {
			return locklock.Lock{}, false, err
		}
		e.held.forget(id)
		return cur.lock, true, nil
	})
}

func allowAny(locklock.Lock) error { return nil }

// Refresh implements locklock.Engine. A change of expiry puts the key again
// on a lease for the new TTL (a lease's TTL cannot change), with its delay
// record if it has a lock-delay; the leases they leave learn of the move
// from their owners' watches. A change of holder or metadata alone
// rewrites the lock record on the lease it is on, expiry untouched. Either
// way the put keeps the key's create revision: the token.
func (e *Engine) Refresh(ctx context.Context, id locklock.ID, now time.Time, ch locklock.Change, allow func(locklock.Lock) error) (locklock.Lock, error) {
	key, delayKey := e.key(id), e.delayKey(id)
	return e.change(ctx, id, now, allow, func(octx context.Context, cur stored) (locklock.Lock, bool, error) {
		next := cur
		next.lock = ch.Apply(cur.lock)
		var delay *delayPut
		if ch.ChangesExpiry() {
			var err error
			next.lease, next.delayLease, err = e.leasesFor(octx, now, next.lock)
			if err != nil {
				return locklock.Lock{}, false, err
			}
			if next.delayLease != 0 {
				dr := delayRecord(next.lock, next.delayLease)
				delay = &delayPut{value: dr.encode(), lease: next.delayLease}
			}
		}
		lr := lockRecord(next.lock, next.lease, next.delayLease)
		lr.UpdatedAt = now.UnixMilli() // the time of its `refreshed` event
		resp, err := e.batch.commit(octx, key, refreshTxn(key, delayKey, lr.encode(), next.lease, delay, cur.modRev))
		if ch.ChangesExpiry() {
			// The compare proves cur's leases are where the keys were.
			e.settle(resp, err, next.lease, cur.lease)
			e.settle(resp, err, next.delayLease, cur.delayLease)
		}
		if err != nil || !resp.succeeded {
			return locklock.Lock{}, false, err
		}
		next.modRev = resp.revision
		next.lock.Revision = resp.revision
		e.held.set(id, next)
		return next.lock, true, nil
	})
}
