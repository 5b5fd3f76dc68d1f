package etcd

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/locklock/locklock/locklock"
)

// Events (API.md §9).
//
// The engine's one watch on the prefix (the lease watch, see leases.go)
// is also where its events come from: every server sees every change,
// wherever it was made, in etcd's order. A change of a lock key is an
// event (and so is a change of a slot key, see slot_events.go):
//
//   - a put that creates the key: acquired (at the record's AcquiredAt);
//   - a put that rewrites it (expiry, holder or metadata): refreshed, at
//     the record's UpdatedAt, which Refresh writes for that;
//   - a delete: released when the same revision puts the lock's release
//     marker, revoked when that marker says so (an operator's forced
//     release, API.md §11, writes one), and expired otherwise — etcd
//     deleted the key because its lease ended (at the lock's ExpiresAt).
//
// A delete event carries no value, but released, expired and revoked
// events carry the lock as it was. etcd could add the previous value to
// every event (WithPrevKV), but it reads it from its backend for each
// one, which on etcd 3.4 cost about as much CPU as the steps themselves.
// So the feed remembers the last put of every live lock key and slot key
// (memory, fed by the watch itself): memory per live lock instead of etcd
// work per change. A lock (or slot) it does not know — put before the
// engine started watching, or beyond maxKnown — is read from etcd's
// history at the revision before its delete, once per such delete.
//
// Release markers. A release deletes the lock key and puts
// <prefix>released/<namespace>/<kind>/<name> — the lock's token and the
// instant of the release — in one transaction: the watch sees both in one
// response, at one revision. A marker only has to exist as an event, so it
// goes on a shared lease of markerTTL seconds (the pool's, like a lock's),
// and etcd removes it a second or two later. Listing, counting and acquire
// never look under released/.
//
// Positions: Epoch names the cluster and the prefix (etcd's cluster ID and
// the token base, which a new prefix or cluster chooses afresh), Seq is the
// etcd revision, Sub the index of the change among the lock-key changes of
// that revision, from 1, and then among its slot-key changes — a batch of
// steps, or one shared lease ending, changes several locks and slots in
// one revision. Sub 0 is thus never an event:
// (rev, 0) stands for "everything before rev", which is where a stream
// starts (SetEventSink). Events of one revision go to the sink in one
// call, in Sub order. Positions are the same on every server, so a stream
// resumes on any of them (EventsAfter, in replay.go).

const (
	// locksSegment holds lock records, releasedSegment release markers.
	locksSegment    = "locks/"
	releasedSegment = "released/"
	// markerTTL is the lease TTL class of release markers, in seconds.
	markerTTL = 1
	// maxKnown bounds the feed's memory of live locks and slots (about
	// 300 bytes each, 300 MB): beyond it, an end reads the lock or slot
	// from etcd's history.
	maxKnown = 1 << 20
	// sinkStartWait bounds how long SetEventSink waits for etcd to tell
	// the current position; a server that starts while etcd is down must
	// not hang there. It learns the position later (see locate).
	sinkStartWait = 2 * time.Second
	// pendingEpoch is the epoch of a stream whose etcd position is not
	// known yet; it is never the epoch of an event.
	pendingEpoch = "e0"
	// prevReadBatch bounds the reads of one transaction that looks up
	// locks the feed does not know (etcd allows 128 operations).
	prevReadBatch = 64
)

// feed turns the engine's watch into events for the Service's sink.
type feed struct {
	e *Engine

	mu        sync.Mutex
	sink      locklock.EventSink // nil: nobody wants events
	epoch     string             // "" until known
	from      locklock.Position  // the sink's stream starts after it: earlier events are not sent
	processed int64              // the last revision the feed has seen from the watch

	// mem is what the feed knows of live keys. Only the watch goroutine
	// uses it.
	mem memory
}

func newFeed(e *Engine) *feed {
	return &feed{e: e, mem: memory{locks: make(map[string]locklock.Lock), slots: make(map[string]locklock.Slot)}}
}

// memory is the feed's past (see changes): the last put of each live lock
// key and slot key, by the key's tail (<namespace>/<kind>/<name>, and
// #<slot> for a slot), at most maxKnown in all; and what readUnknown read
// for the watch response at hand.
type memory struct {
	locks        map[string]locklock.Lock
	slots        map[string]locklock.Slot
	fetchedLocks map[string]locklock.Lock
	fetchedSlots map[string]locklock.Slot
}

func (m *memory) lock(_ *clientv3.Event, tail string) (locklock.Lock, bool) {
	return forget(tail, m.locks, m.fetchedLocks)
}

func (m *memory) slot(_ *clientv3.Event, tail string) (locklock.Slot, bool) {
	return forget(tail, m.slots, m.fetchedSlots)
}

// forget takes the record under tail out of the feed's memory: remembered
// from a put, else read for the response at hand.
func forget[T any](tail string, remembered, fetched map[string]T) (T, bool) {
	if v, ok := remembered[tail]; ok {
		delete(remembered, tail)
		return v, true
	}
	v, ok := fetched[tail]
	delete(fetched, tail)
	return v, ok
}

func (m *memory) putLock(tail string, l locklock.Lock) { remember(m, m.locks, tail, l) }

func (m *memory) putSlot(tail string, sl locklock.Slot) { remember(m, m.slots, tail, sl) }

// remember keeps v under tail, while the feed's memory has room.
func remember[T any](m *memory, into map[string]T, tail string, v T) {
	if _, ok := into[tail]; ok || m.room() {
		into[tail] = v
	}
}

func (m *memory) room() bool { return len(m.locks)+len(m.slots) < maxKnown }

// knows says whether the record a delete of key removes is known (or the
// key is neither a lock's nor a slot's).
func (m *memory) knows(e *Engine, key []byte) bool {
	if tail, ok := e.tailBytes(key, locksSegment); ok {
		_, known := m.locks[string(tail)]
		return known
	}
	if tail, ok := e.tailBytes(key, semsSegment); ok {
		_, known := m.slots[string(tail)]
		return known
	}
	return true
}

func (m *memory) forget() {
	clear(m.locks)
	clear(m.slots)
}

var (
	_ locklock.EventSource  = (*Engine)(nil)
	_ locklock.EventHistory = (*Engine)(nil)
)

// SetEventSink implements locklock.EventSource: etcd numbers the events,
// and the stream starts after the current revision. When etcd does not
// answer within sinkStartWait, the stream starts on a pending epoch, and
// restarts (locklock.EventRestart) on etcd's once etcd answers.
func (e *Engine) SetEventSink(sink locklock.EventSink) locklock.Position {
	f := e.feed
	ctx, cancel := context.WithTimeout(e.client.Ctx(), min(e.timeout, sinkStartWait))
	epoch, rev, err := e.position(ctx)
	cancel()
	if err != nil {
		f.mu.Lock()
		f.sink, f.epoch = sink, ""
		f.from = locklock.Position{Epoch: pendingEpoch}
		f.mu.Unlock()
		e.leases.spawn(f.locate)
		return locklock.Position{Epoch: pendingEpoch}
	}
	started := e.leases.startWatch(rev + 1)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sink, f.epoch = sink, epoch
	f.from = f.startLocked(rev, started)
	return f.from
}

// startLocked is where a sink's stream starts: after revision rev (read
// just now), but never before what the watch has already shown the feed
// (those events went elsewhere, or nowhere), nor before the revision the
// watch started from (earlier ones it never shows).
func (f *feed) startLocked(rev, watchFrom int64) locklock.Position {
	seq := max(rev+1, watchFrom, f.processed+1)
	return locklock.Position{Epoch: f.epoch, Seq: uint64(seq)}
}

// locate learns the position SetEventSink could not, retrying until etcd
// answers, and restarts the sink's stream there.
func (f *feed) locate(ctx context.Context) {
	wait := 100 * time.Millisecond
	for ctx.Err() == nil {
		octx, cancel := context.WithTimeout(ctx, f.e.timeout)
		epoch, rev, err := f.e.position(octx)
		cancel()
		if err == nil {
			started := f.e.leases.startWatch(rev + 1)
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.epoch != "" {
				return // a later SetEventSink got there first
			}
			f.epoch = epoch
			f.from = f.startLocked(rev, started)
			f.sink(&locklock.Event{Type: locklock.EventRestart, Pos: f.from})
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
			wait = min(2*wait, 5*time.Second)
		}
	}
}

// position reads etcd's current revision and the stream's epoch.
func (e *Engine) position(ctx context.Context) (epoch string, rev int64, err error) {
	base, hdr, err := e.readTokenBase(ctx, ctx)
	if err != nil {
		return "", 0, err
	}
	return epochOf(hdr.GetClusterId(), base), hdr.GetRevision(), nil
}

// epochOf names the stream of one cluster and prefix.
func epochOf(cluster, base uint64) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], cluster)
	binary.BigEndian.PutUint64(b[8:], base)
	h := fnv.New64a()
	_, _ = h.Write(b[:])
	return fmt.Sprintf("e%016x", h.Sum64())
}

// currentEpoch is the stream's epoch, "" while it is not known.
func (f *feed) currentEpoch() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.epoch
}

// observe takes one response of the watch (on the watch's goroutine).
func (f *feed) observe(resp *clientv3.WatchResponse) {
	if resp.CompactRevision != 0 {
		// The watch missed the events before the compaction: what the
		// feed knows may be stale, and the streams have gaps.
		f.mem.forget()
		f.restart(resp.CompactRevision)
		return
	}
	evs := resp.Events
	if len(evs) == 0 {
		return
	}
	f.mu.Lock()
	active := f.sink != nil && f.epoch != ""
	if !active {
		f.processed = max(f.processed, evs[len(evs)-1].Kv.ModRevision)
	}
	f.mu.Unlock()
	if !active {
		return
	}
	f.readUnknown(evs)
	for len(evs) > 0 {
		rev := evs[0].Kv.ModRevision
		n := 1
		for n < len(evs) && evs[n].Kv.ModRevision == rev {
			n++
		}
		run := evs[:n]
		evs = evs[n:]
		f.publish(rev, f.e.changes(rev, run, &f.mem))
	}
	f.mem.fetchedLocks, f.mem.fetchedSlots = nil, nil
}

// publish hands the events of revision rev to the sink, with the epoch,
// unless they come before the sink's stream starts.
func (f *feed) publish(rev int64, evs []*locklock.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.processed = max(f.processed, rev)
	if f.sink == nil || f.epoch == "" {
		return
	}
	out := evs[:0]
	for _, ev := range evs {
		ev.Pos.Epoch = f.epoch
		if ev.Pos.After(f.from) {
			out = append(out, ev)
		}
	}
	if len(out) > 0 {
		f.sink(out...)
	}
}

// restart starts the sink's stream again from revision rev: the watch
// missed what came before.
func (f *feed) restart(rev int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sink == nil || f.epoch == "" {
		return
	}
	f.from = locklock.Position{Epoch: f.epoch, Seq: uint64(rev)}
	f.sink(&locklock.Event{Type: locklock.EventRestart, Pos: f.from})
}

// readUnknown reads, from etcd's history, the locks and slots whose
// deletes in evs (one watch response) the feed cannot tell from what it
// knows, into f.mem's fetched maps, by tail: all in one transaction (or a
// few), each at the revision before its delete, so that a watch that
// lags, and gets many revisions at once, reads them together. (A tail has
// at most one such delete in evs: after it, the key is put again, which
// the feed learns, before another delete.) What it cannot read (etcd does
// not answer, or compacted that revision) stays unknown: those events
// carry what the feed has — the lock's or slot's name, and the token of a
// release.
func (f *feed) readUnknown(evs []*clientv3.Event) {
	// Usually every key deleted is known: find that out without
	// allocating (a map index of string(bytes) does not copy).
	unknown := false
	for _, ev := range evs {
		if ev.Type == clientv3.EventTypeDelete && !f.mem.knows(f.e, ev.Kv.Key) {
			unknown = true
			break
		}
	}
	if !unknown {
		return
	}
	var (
		ops []clientv3.Op
		put = make(map[string]bool) // keys put earlier in evs: the feed will know them
	)
	for _, ev := range evs {
		_, isLock := f.e.tailBytes(ev.Kv.Key, locksSegment)
		_, isSlot := f.e.tailBytes(ev.Kv.Key, semsSegment)
		switch {
		case !isLock && !isSlot:
		case ev.Type == clientv3.EventTypePut:
			put[string(ev.Kv.Key)] = true
		case !put[string(ev.Kv.Key)] && !f.mem.knows(f.e, ev.Kv.Key):
			ops = append(ops, clientv3.OpGet(string(ev.Kv.Key), clientv3.WithRev(ev.Kv.ModRevision-1)))
		}
	}
	if len(ops) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(f.e.leases.ctx, f.e.timeout)
	defer cancel()
	f.mem.fetchedLocks = make(map[string]locklock.Lock)
	f.mem.fetchedSlots = make(map[string]locklock.Slot)
	for len(ops) > 0 {
		n := min(len(ops), prevReadBatch)
		resp, err := f.e.client.Txn(ctx).Then(ops[:n]...).Commit()
		if err != nil {
			return
		}
		for _, r := range resp.Responses {
			for _, kv := range r.GetResponseRange().GetKvs() {
				f.remember(kv.Key, kv.Value, kv.CreateRevision)
			}
		}
		ops = ops[n:]
	}
}

// remember puts a record read from etcd's history among the fetched.
func (f *feed) remember(key, value []byte, createRev int64) {
	if tail, ok := f.e.tailOf(key, locksSegment); ok {
		if id, ok := parseTail(tail); ok {
			if l, _, err := f.e.decodeEvent(id, value, createRev); err == nil {
				f.mem.fetchedLocks[tail] = l
			}
		}
		return
	}
	if tail, ok := f.e.tailOf(key, semsSegment); ok {
		if id, slot, ok := parseSlotTail(tail); ok {
			if sl, _, err := f.e.decodeSlotEvent(id, slot, value, createRev); err == nil {
				f.mem.fetchedSlots[tail] = sl
			}
		}
	}
}
