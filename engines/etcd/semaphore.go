package etcd

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/locklock/locklock/locklock"
)

// Semaphores (API.md §10).
//
// Each slot is one key, on a lease like a lock's (the pool's shared
// leases, so a slot too ends up to a second after its expires_at, never
// before; and the lease accounting counts slot keys like lock keys, since
// the engine's one watch covers the whole prefix):
//
//	<prefix>sems/<namespace>/<kind>/<name>#<slot id> → slot record (JSON), on a lease
//
// A semaphore is thus the range of keys that start with
// <prefix>sems/<namespace>/<kind>/<name># — it exists while that range
// holds a key, and its limit is the one its slot records carry. '#' cannot
// occur in a name, so no other semaphore's keys fall in the range; and it
// sorts below every character a name may hold, so keys sort by name first
// and a listing reads them in name order (see ListSemaphores). The space is
// separate from locks/: a lock and a semaphore may share a name.
//
// Guarantees and how they are kept:
//
//   - Acquire reads the semaphore's range at a revision R, applies
//     locklock.AdmitSlot to the slots found, and commits the new slot key
//     in a transaction that succeeds only if no key in the range was
//     created after R (a compare on the create revision of every key in
//     the range, which etcd offers since 3.3). Another acquire that got in
//     first makes the compare fail; the failed transaction reads the range
//     again, at its own revision, and the acquire judges afresh. Deletes
//     (releases, expiries) do not fail the compare: they only free room,
//     so a slot admitted before them still fits. Nor do refreshes: a put
//     to an existing key keeps its create revision, and a refresh changes
//     nothing AdmitSlot looks at (limit, weight, guard). So the sum of the
//     live slots' weights never exceeds the limit, across all servers.
//   - etcd evaluates all the compares of a batch (see batcher) before it
//     applies any of its writes, so two acquires of one semaphore in one
//     batch would both pass: slot steps are batched under their
//     semaphore's range (the batcher's key), never two of one semaphore in
//     one batch. Within one engine, acquires of one semaphore also take
//     turns (see turns): otherwise each one committed would fail the
//     compares of all the others queued behind it in the batcher.
//   - A slot's fencing token is its key's create revision plus the token
//     base, as for locks: it rises per semaphore across servers and
//     restarts (one transaction per semaphore per revision), and a refresh
//     keeps it.
//   - Release and refresh read the slot, ask allow, and commit only if the
//     key's mod revision is still the one read.
//   - Expiry is etcd's, as for locks: a slot is live while its key exists;
//     now is not used to judge it. Sweep has nothing to do.
//   - Slots report events (API.md §9) from the engine's watch, as locks
//     do; a release puts a marker outside sems/ (see slot_events.go).
const (
	semsSegment = "sems/"
	// slotSep ends a semaphore's name in its slots' keys; slotSepNext is
	// the byte after it, the first key past a semaphore's range.
	slotSep     = "#"
	slotSepNext = "$"
	// maxSlotTries bounds the transactions of one TryAcquireSlot. A try
	// fails only when another server's acquire of the same semaphore came
	// in between (this engine's take turns); past a few dozen, the
	// semaphore is too contended to promise an answer in time.
	maxSlotTries = 32
	// listPage is how many slot keys one read of a listing takes (the
	// engine's listPage; tests set less).
	listPage = 1000
)

var _ locklock.SemaphoreEngine = (*Engine)(nil)

// semKey is the prefix of the keys of id's slots: the semaphore's range.
func (e *Engine) semKey(id locklock.ID) string {
	return e.prefix + semsSegment + id.Namespace + "/" + string(id.Kind) + "/" + id.Name + slotSep
}

// storedSlot is a slot as read, with what a later write of it compares
// and must know: its key's mod revision and the lease it is on.
type storedSlot struct {
	slot   locklock.Slot
	modRev int64
	lease  clientv3.LeaseID
}

// TryAcquireSlot implements locklock.SemaphoreEngine.
func (e *Engine) TryAcquireSlot(ctx context.Context, cand locklock.Slot, now time.Time, same func(locklock.Slot) bool) (locklock.Slot, bool, error) {
	done, err := e.enter(ctx)
	if err != nil {
		return locklock.Slot{}, false, err
	}
	defer done()
	sem := e.semKey(cand.Semaphore)
	leave, err := e.turns.take(ctx, sem, time.Now().Add(e.timeout))
	if err != nil {
		return locklock.Slot{}, false, err
	}
	defer leave()

	// The first try assumes the semaphore has no slot: judged against
	// none, at revision 0, its transaction puts the slot only if the range
	// holds no key at all (every key's create revision is at least 1) and
	// otherwise reads the range, which the next try is judged against. A
	// free semaphore so costs one transaction, batched with others, and a
	// busy one the read it would have cost anyway.
	var (
		live []locklock.Slot
		rev  int64
	)

	// Once a lease is taken, see the step through even if the client goes
	// away, so that the lease learns its outcome (as TryAcquire does).
	octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.timeout)
	defer cancel()
	var (
		lease     clientv3.LeaseID
		value     []byte
		res       txnResult
		commitErr error
	)
	// The lease, once taken, is settled with the last transaction's
	// outcome, whatever ends the step.
	defer func() {
		if lease != 0 {
			e.settle(res, commitErr, lease, 0)
		}
	}()
	key := sem + cand.ID
	for try := 1; ; try++ {
		got, retry, err := locklock.AdmitSlot(live, cand, same)
		var full *locklock.FullError
		if errors.As(err, &full) {
			full.Revision = rev // where a waiter's watch for room starts
		}
		switch {
		case err != nil:
			return locklock.Slot{}, false, err
		case retry:
			return got, false, nil
		case try > maxSlotTries:
			return locklock.Slot{}, false, fmt.Errorf("%w: etcd acquire slot: the semaphore kept changing", locklock.ErrUnavailable)
		}
		if lease == 0 {
			if lease, err = e.leases.get(octx, ttlSeconds(cand.AcquiredAt, cand.ExpiresAt)); err != nil {
				lease = 0
				return locklock.Slot{}, false, storeErr(ctx, "grant lease", err)
			}
			r := slotRecordOf(cand, lease)
			value = r.encode()
		}
		res, commitErr = e.batch.commit(octx, sem, slotAcquireTxn(sem, key, value, lease, rev))
		if commitErr != nil {
			return locklock.Slot{}, false, storeErr(ctx, "acquire slot", commitErr)
		}
		if res.succeeded {
			cand.Token = e.base.Load() + uint64(res.revision)
			cand.Revision = res.revision
			e.heldSlots.set(key, storedSlot{slot: cand, modRev: res.revision, lease: lease})
			return cand, true, nil
		}
		if len(res.responses) != 1 {
			return locklock.Slot{}, false, fmt.Errorf("%w: etcd acquire slot: %d answers to 1 read", locklock.ErrUnavailable, len(res.responses))
		}
		rev = res.revision
		if live, err = e.decodeSlots(cand.Semaphore, sem, res.responses[0].GetResponseRange().GetKvs(), rev); err != nil {
			return locklock.Slot{}, false, err
		}
	}
}

// slotAcquireTxn puts key (a slot of the semaphore whose range is sem) on
// lease if no key in the range was created after revision rev; otherwise
// it reads the range.
func slotAcquireTxn(sem, key string, value []byte, lease clientv3.LeaseID, rev int64) *pb.TxnRequest {
	k, end := []byte(sem), []byte(clientv3.GetPrefixRangeEnd(sem))
	return &pb.TxnRequest{
		Compare: []*pb.Compare{{
			Target: pb.Compare_CREATE, Result: pb.Compare_LESS, Key: k, RangeEnd: end,
			TargetUnion: &pb.Compare_CreateRevision{CreateRevision: rev + 1},
		}},
		Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(key), Value: value, Lease: int64(lease)}}}},
		Failure: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: k, RangeEnd: end}}}},
	}
}

// slotPutTxn puts key on lease, if its mod revision is still modRev.
func slotPutTxn(key string, value []byte, lease clientv3.LeaseID, modRev int64) *pb.TxnRequest {
	k := []byte(key)
	return &pb.TxnRequest{
		Compare: []*pb.Compare{{
			Target: pb.Compare_MOD, Result: pb.Compare_EQUAL, Key: k,
			TargetUnion: &pb.Compare_ModRevision{ModRevision: modRev},
		}},
		Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: k, Value: value, Lease: int64(lease)}}}},
	}
}

// GetSemaphore implements locklock.SemaphoreEngine with one range read.
func (e *Engine) GetSemaphore(ctx context.Context, id locklock.ID, now time.Time) (locklock.Semaphore, error) {
	octx, done, err := e.bounded(ctx)
	if err != nil {
		return locklock.Semaphore{}, err
	}
	defer done()
	sem := e.semKey(id)
	resp, err := e.client.Get(octx, sem, clientv3.WithPrefix())
	if err != nil {
		return locklock.Semaphore{}, storeErr(ctx, "read semaphore", err)
	}
	slots, err := e.decodeSlots(id, sem, resp.Kvs, resp.Header.Revision)
	if err != nil {
		return locklock.Semaphore{}, err
	}
	if len(slots) == 0 {
		// With the revision it was found empty at: a stream's state
		// (locklock.Service.Watch) drops the events up to it.
		return locklock.Semaphore{ID: id, Revision: resp.Header.Revision}, locklock.ErrSemaphoreNotFound
	}
	out := locklock.Semaphore{ID: id, Limit: slots[0].Limit, Slots: slots, Revision: resp.Header.Revision}
	for _, sl := range slots {
		out.InUse += sl.Weight
	}
	return out, nil
}

// GetSlot implements locklock.SemaphoreEngine.
func (e *Engine) GetSlot(ctx context.Context, id locklock.ID, slot string, now time.Time) (locklock.Slot, error) {
	octx, done, err := e.bounded(ctx)
	if err != nil {
		return locklock.Slot{}, err
	}
	defer done()
	s, err := e.readSlot(ctx, octx, id, slot)
	return s.slot, err
}

// readSlot reads one slot; locklock.SlotNotFound when its key is gone.
func (e *Engine) readSlot(ctx, octx context.Context, id locklock.ID, slot string) (storedSlot, error) {
	resp, err := e.client.Get(octx, e.semKey(id)+slot)
	if err != nil {
		return storedSlot{}, storeErr(ctx, "read slot", err)
	}
	if len(resp.Kvs) == 0 {
		return storedSlot{}, locklock.SlotNotFound(id, slot)
	}
	kv := resp.Kvs[0]
	sl, err := e.decodeSlot(id, slot, kv.Value, kv.CreateRevision, resp.Header.Revision)
	if err != nil {
		return storedSlot{}, err
	}
	return storedSlot{slot: sl, modRev: kv.ModRevision, lease: clientv3.LeaseID(kv.Lease)}, nil
}

// changeSlot is ReleaseSlot's and RefreshSlot's common step: find the slot,
// ask allow, and commit write only if the key's mod revision is still the
// one found; read again if another write came first. As change does for
// locks, it finds the slot in heldSlots when this engine wrote it last (one
// round trip in all), else reads it. write reports the slot's record after
// it (zero when deleted), for heldSlots.
func (e *Engine) changeSlot(ctx context.Context, id locklock.ID, slot string, allow func(locklock.Slot) error,
	write func(octx context.Context, cur storedSlot) (locklock.Slot, storedSlot, bool, error)) (locklock.Slot, error) {
	done, err := e.enter(ctx)
	if err != nil {
		return locklock.Slot{}, err
	}
	defer done()
	key := e.semKey(id) + slot
	// Reads are bounded by the request timeout, all together.
	octx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	cached, useCache := e.heldSlots.get(key)
	for {
		var cur storedSlot
		if useCache {
			useCache = false
			cur = cached
			if allow(cur.slot) != nil {
				continue // a refusal must rest on a fresh read
			}
		} else {
			if cur, err = e.readSlot(ctx, octx, id, slot); err != nil {
				e.heldSlots.forget(key)
				return locklock.Slot{}, err
			}
			if err := allow(cur.slot); err != nil {
				return locklock.Slot{}, err
			}
		}
		// Like TryAcquireSlot: see a write that may take a lease through.
		wctx, wcancel := context.WithTimeout(context.WithoutCancel(ctx), e.timeout)
		out, after, ok, err := write(wctx, cur)
		wcancel()
		switch {
		case err != nil:
			e.heldSlots.forget(key)
			return locklock.Slot{}, storeErr(ctx, "write slot", err)
		case !ok:
			e.heldSlots.forget(key)
		case after.modRev == 0:
			e.heldSlots.forget(key)
			return out, nil
		default:
			e.heldSlots.set(key, after)
			return out, nil
		}
	}
}

// ReleaseSlot implements locklock.SemaphoreEngine. The slot's release
// marker goes in the delete's transaction: it tells every server's watch
// that this delete is a release, not an expiry (see slot_events.go). The
// lease the key was on learns of the delete from its owner's watch (see
// "Lease accounting").
func (e *Engine) ReleaseSlot(ctx context.Context, id locklock.ID, slot string, now time.Time, allow func(locklock.Slot) error) (locklock.Slot, error) {
	return e.dropSlot(ctx, id, slot, now, allow, false)
}

// RevokeSlot implements locklock.SemaphoreEngine as ReleaseSlot, with a
// marker that says Revoked.
func (e *Engine) RevokeSlot(ctx context.Context, id locklock.ID, slot string, now time.Time) (locklock.Slot, error) {
	return e.dropSlot(ctx, id, slot, now, func(locklock.Slot) error { return nil }, true)
}

// dropSlot deletes the slot with its marker, revoked or not.
func (e *Engine) dropSlot(ctx context.Context, id locklock.ID, slot string, now time.Time, allow func(locklock.Slot) error, revoked bool) (locklock.Slot, error) {
	sem, markerKey := e.semKey(id), e.slotMarkerKey(id, slot)
	return e.changeSlot(ctx, id, slot, allow, func(octx context.Context, cur storedSlot) (locklock.Slot, storedSlot, bool, error) {
		markerLease, err := e.leases.get(octx, markerTTL)
		if err != nil {
			return locklock.Slot{}, storedSlot{}, false, err
		}
		mk := marker{Token: cur.slot.Token, At: now.UnixMilli(), Revoked: revoked}
		res, err := e.batch.commit(octx, sem, slotReleaseTxn(sem+slot, markerKey, mk.encode(), markerLease, cur.modRev))
		// A new key on the lease: slot ids are never reused, so no
		// earlier marker of the slot can be on it.
		e.settle(res, err, markerLease, 0)
		if err != nil || !res.succeeded {
			return locklock.Slot{}, storedSlot{}, false, err
		}
		return cur.slot, storedSlot{}, true, nil
	})
}

// RefreshSlot implements locklock.SemaphoreEngine as Refresh does for a
// lock: a change of expiry puts the key on a lease for the new TTL; a
// change of holder or metadata alone rewrites it on the lease it is on.
// The put keeps the key's create revision: the token.
func (e *Engine) RefreshSlot(ctx context.Context, id locklock.ID, slot string, now time.Time, ch locklock.Change, allow func(locklock.Slot) error) (locklock.Slot, error) {
	sem := e.semKey(id)
	return e.changeSlot(ctx, id, slot, allow, func(octx context.Context, cur storedSlot) (locklock.Slot, storedSlot, bool, error) {
		next := ch.ApplySlot(cur.slot)
		lease := cur.lease
		if ch.ChangesExpiry() {
			var err error
			if lease, err = e.leases.get(octx, ttlSeconds(now, next.ExpiresAt)); err != nil {
				return locklock.Slot{}, storedSlot{}, false, err
			}
		}
		r := slotRecordOf(next, lease)
		r.UpdatedAt = now.UnixMilli()
		res, err := e.batch.commit(octx, sem, slotPutTxn(sem+slot, r.encode(), lease, cur.modRev))
		if ch.ChangesExpiry() {
			// The compare proves cur.lease is the one the key was on.
			e.settle(res, err, lease, cur.lease)
		}
		if err != nil || !res.succeeded {
			return locklock.Slot{}, storedSlot{}, false, err
		}
		next.Revision = res.revision
		return next, storedSlot{slot: next, modRev: res.revision, lease: lease}, true, nil
	})
}

// ListSemaphores implements locklock.SemaphoreEngine. Slot keys sort by
// semaphore name first (see slotSep), so it reads them in key order, a
// page at a time, all pages at the revision of the first, and sums each
// semaphore's slots, until it has q.Limit semaphores whole.
func (e *Engine) ListSemaphores(ctx context.Context, q locklock.ListQuery, now time.Time) ([]locklock.SemaphoreSummary, error) {
	octx, done, err := e.bounded(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	if q.Limit <= 0 || strings.Contains(q.Prefix, slotSep) {
		return nil, nil // no name holds the separator
	}
	// Nor does any name sort between After and what comes before a
	// separator in it (every name character sorts after the separator),
	// whose range would otherwise start within a semaphore's slots.
	after, _, _ := strings.Cut(q.After, slotSep)
	base := e.prefix + semsSegment + q.Namespace + "/" + string(q.Kind) + "/"
	start := base + q.Prefix
	end := clientv3.GetPrefixRangeEnd(start)
	if after != "" && base+after+slotSepNext > start {
		start = base + after + slotSepNext // past every slot of after
	}
	var (
		out []locklock.SemaphoreSummary
		rev int64
	)
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(int64(e.listPage)),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := e.client.Get(octx, start, opts...)
		if err != nil {
			return nil, storeErr(ctx, "list semaphores", err)
		}
		rev = resp.Header.Revision
		for _, kv := range resp.Kvs {
			name, slot, ok := strings.Cut(string(kv.Key[len(base):]), slotSep)
			if !ok {
				continue // not a key the engine writes
			}
			id := locklock.ID{Namespace: q.Namespace, Kind: q.Kind, Name: name}
			r, err := parseSlotRecord(id, slot, kv.Value)
			if err != nil {
				return nil, err
			}
			if len(out) == 0 || out[len(out)-1].Name != name {
				if len(out) == q.Limit {
					return out, nil
				}
				out = append(out, locklock.SemaphoreSummary{ID: id, Limit: r.Limit})
			}
			s := &out[len(out)-1]
			s.InUse += r.Weight
			s.Slots++
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return out, nil
		}
		start = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// decodeSlots rebuilds the slots of id from the keys of its range sem,
// read at readRev, in token order.
func (e *Engine) decodeSlots(id locklock.ID, sem string, kvs []*mvccpb.KeyValue, readRev int64) ([]locklock.Slot, error) {
	out := make([]locklock.Slot, 0, len(kvs))
	for _, kv := range kvs {
		sl, err := e.decodeSlot(id, string(kv.Key[len(sem):]), kv.Value, kv.CreateRevision, readRev)
		if err != nil {
			return nil, err
		}
		out = append(out, sl)
	}
	slices.SortFunc(out, func(a, b locklock.Slot) int { return cmp.Compare(a.Token, b.Token) })
	return out, nil
}

// decodeSlot rebuilds slot of id from its record and its key's create
// revision (the token), read at readRev.
func (e *Engine) decodeSlot(id locklock.ID, slot string, value []byte, createRev, readRev int64) (locklock.Slot, error) {
	r, err := parseSlotRecord(id, slot, value)
	if err != nil {
		return locklock.Slot{}, err
	}
	sl := r.slot(id, slot)
	sl.Token = e.base.Load() + uint64(createRev)
	sl.Revision = readRev
	return sl, nil
}
