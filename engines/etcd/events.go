package etcd

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
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
// event:
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
// So the feed remembers the last put of every live lock key (known, fed by
// the watch itself): memory per live lock instead of etcd work per change.
// A lock it does not know — put before the engine started watching, or
// beyond maxKnown — is read from etcd's history at the revision before its
// delete, once per such delete.
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
// that revision, from 1 — a batch of steps, or one shared lease ending,
// changes several locks in one revision. Sub 0 is thus never an event:
// (rev, 0) stands for "everything before rev", which is where a stream
// starts (SetEventSink). Events of one revision go to the sink in one
// call, in Sub order. Positions are the same on every server, so a stream
// resumes on any of them (EventsAfter, in replay.go).

const (
	// releasedSegment holds release markers.
	releasedSegment = "released/"
	// markerTTL is the lease TTL class of release markers, in seconds.
	markerTTL = 1
	// maxKnown bounds the feed's memory of live locks (about 300 bytes a
	// lock, 300 MB): beyond it, a lock's end reads it from etcd's history.
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

	// known is the last put of each live lock key, by the key's tail
	// (<namespace>/<kind>/<name>). Only the watch goroutine uses it.
	known map[string]locklock.Lock
}

func newFeed(e *Engine) *feed { return &feed{e: e, known: make(map[string]locklock.Lock)} }

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
		clear(f.known)
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
	fetched := f.readUnknown(evs)
	for len(evs) > 0 {
		rev := evs[0].Kv.ModRevision
		n := 1
		for n < len(evs) && evs[n].Kv.ModRevision == rev {
			n++
		}
		run := evs[:n]
		evs = evs[n:]
		out := f.e.changes(rev, run, func(_ *clientv3.Event, tail string) (locklock.Lock, bool) {
			if l, ok := f.known[tail]; ok {
				delete(f.known, tail)
				return l, true
			}
			l, ok := fetched[tail]
			delete(fetched, tail)
			return l, ok
		}, func(tail string, l locklock.Lock) {
			if _, ok := f.known[tail]; ok || len(f.known) < maxKnown {
				f.known[tail] = l
			}
		})
		f.publish(rev, out)
	}
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

// readUnknown reads, from etcd's history, the locks whose deletes in evs
// (one watch response) the feed cannot tell from what it knows, by tail:
// all in one transaction (or a few), each at the revision before its
// delete, so that a watch that lags, and gets many revisions at once,
// reads them together. (A tail has at most one such delete in evs: after
// it, the key is put again, which the feed learns, before another delete.)
// What it cannot read (etcd does not answer, or compacted that revision)
// stays unknown: those events carry what the feed has — the lock's name,
// and the token of a release.
func (f *feed) readUnknown(evs []*clientv3.Event) map[string]locklock.Lock {
	var (
		ops []clientv3.Op
		put map[string]bool // tails put earlier in evs: the feed will know them
	)
	for _, ev := range evs {
		tail, ok := f.e.tailOf(ev.Kv.Key, locksSegment)
		switch {
		case !ok:
		case ev.Type == clientv3.EventTypePut:
			if put == nil {
				put = make(map[string]bool)
			}
			put[tail] = true
		case !put[tail]:
			if _, known := f.known[tail]; !known {
				ops = append(ops, clientv3.OpGet(string(ev.Kv.Key), clientv3.WithRev(ev.Kv.ModRevision-1)))
			}
		}
	}
	if len(ops) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(f.e.leases.ctx, f.e.timeout)
	defer cancel()
	out := make(map[string]locklock.Lock, len(ops))
	for len(ops) > 0 {
		n := min(len(ops), prevReadBatch)
		resp, err := f.e.client.Txn(ctx).Then(ops[:n]...).Commit()
		if err != nil {
			return out
		}
		for _, r := range resp.Responses {
			for _, kv := range r.GetResponseRange().GetKvs() {
				tail, _ := f.e.tailOf(kv.Key, locksSegment)
				if id, ok := parseTail(tail); ok {
					if l, _, err := f.e.decodeEvent(id, kv.Value, kv.CreateRevision); err == nil {
						out[tail] = l
					}
				}
			}
		}
		ops = ops[n:]
	}
	return out
}

// changes turns the watch events of one revision into lock events, in
// order, with positions (but no epoch). prev gives the lock a delete
// removed (false: not known); put, when not nil, learns every lock put.
func (e *Engine) changes(rev int64, run []*clientv3.Event,
	prev func(ev *clientv3.Event, tail string) (locklock.Lock, bool), put func(tail string, l locklock.Lock)) []*locklock.Event {
	var markers map[string]marker
	for _, ev := range run {
		if ev.Type != clientv3.EventTypePut {
			continue
		}
		if tail, ok := e.tailOf(ev.Kv.Key, releasedSegment); ok {
			if m, ok := parseMarker(ev.Kv.Value); ok {
				if markers == nil {
					markers = make(map[string]marker)
				}
				markers[tail] = m
			}
		}
	}
	var (
		out []*locklock.Event
		sub uint32
	)
	for _, ev := range run {
		tail, ok := e.tailOf(ev.Kv.Key, locksSegment)
		if !ok {
			continue
		}
		sub++
		id, ok := parseTail(tail)
		if !ok {
			continue // not a key the engine writes
		}
		pos := locklock.Position{Seq: uint64(rev), Sub: sub}
		if ev.Type == clientv3.EventTypePut {
			l, updated, err := e.decodeEvent(id, ev.Kv.Value, ev.Kv.CreateRevision)
			if err != nil {
				continue // a corrupt record: no event to tell
			}
			if put != nil {
				put(tail, l)
			}
			out = append(out, putEvent(ev, l, updated, pos))
			continue
		}
		l, known := prev(ev, tail)
		m, marked := markers[tail]
		out = append(out, endEvent(id, l, known, m, marked, pos))
	}
	return out
}

// putEvent is the event of a put of lock l: acquired when it created the
// key, else refreshed, at updated (zero for records of servers from before
// events: then the time it is seen).
func putEvent(ev *clientv3.Event, l locklock.Lock, updated time.Time, pos locklock.Position) *locklock.Event {
	if ev.IsCreate() {
		return &locklock.Event{Type: locklock.EventAcquired, At: l.AcquiredAt, Lock: l, Pos: pos}
	}
	if updated.IsZero() {
		updated = time.Now().UTC().Truncate(time.Millisecond)
	}
	return &locklock.Event{Type: locklock.EventRefreshed, At: updated, Lock: l, Pos: pos}
}

// endEvent is the event of the delete of lock id's key: l is the lock as
// it was (when known), m the release marker of the same revision (when
// marked).
func endEvent(id locklock.ID, l locklock.Lock, known bool, m marker, marked bool, pos locklock.Position) *locklock.Event {
	if !known {
		l = locklock.Lock{ID: id, Token: m.Token}
	}
	ev := &locklock.Event{Lock: l, Pos: pos}
	switch {
	case marked && m.Revoked:
		// A revoked lock's ExpiresAt is the moment it was revoked: its
		// lock-delay runs from then (Lock.DelayedUntil).
		ev.Type, ev.At = locklock.EventRevoked, time.UnixMilli(m.At).UTC()
		ev.Lock.ExpiresAt, ev.Lock.Revoked = ev.At, true
	case marked:
		ev.Type, ev.At = locklock.EventReleased, time.UnixMilli(m.At).UTC()
	default:
		ev.Type, ev.At = locklock.EventExpired, l.ExpiresAt
		if !known {
			ev.At = time.Now().UTC().Truncate(time.Millisecond)
		}
	}
	return ev
}

// locksSegment holds lock records.
const locksSegment = "locks/"

// tailOf returns what follows <prefix><segment> in key.
func (e *Engine) tailOf(key []byte, segment string) (string, bool) {
	p := len(e.prefix)
	if len(key) <= p+len(segment) || string(key[:p]) != e.prefix || string(key[p:p+len(segment)]) != segment {
		return "", false
	}
	return string(key[p+len(segment):]), true
}

// parseTail reads <namespace>/<kind>/<name>; the ID shares tail's memory.
func parseTail(tail string) (locklock.ID, bool) {
	ns, rest, ok1 := strings.Cut(tail, "/")
	kind, name, ok2 := strings.Cut(rest, "/")
	if !ok1 || !ok2 || name == "" || (kind != string(locklock.KindUUID) && kind != string(locklock.KindKey)) {
		return locklock.ID{}, false
	}
	return locklock.ID{Namespace: ns, Kind: locklock.Kind(kind), Name: name}, true
}

// decodeEvent is decode for events: the lock put under id's key with
// createRev, and the instant a refresh wrote it (zero when not recorded).
func (e *Engine) decodeEvent(id locklock.ID, value []byte, createRev int64) (locklock.Lock, time.Time, error) {
	r, err := parseRecord(id, "lock", value)
	if err != nil {
		return locklock.Lock{}, time.Time{}, err
	}
	l := r.lock(id, 0)
	l.Token = e.base.Load() + uint64(createRev)
	var updated time.Time
	if r.UpdatedAt != 0 {
		updated = time.UnixMilli(r.UpdatedAt).UTC()
	}
	return l, updated, nil
}

// markerKey is where a release of id puts its marker.
func (e *Engine) markerKey(id locklock.ID) string {
	return e.prefix + releasedSegment + id.Namespace + "/" + string(id.Kind) + "/" + id.Name
}

// marker is a release marker's value: the released lock's token and the
// instant of the release; Revoked for an operator's forced release, whose
// instant is then the lock's new ExpiresAt.
type marker struct {
	Token   uint64 `json:"token"`
	At      int64  `json:"at_ms"`
	Revoked bool   `json:"revoked,omitempty"`
}

// encode is m as encoding/json writes it, without reflection: a release
// writes one.
func (m marker) encode() []byte {
	b := make([]byte, 0, 64)
	b = append(b, `{"token":`...)
	b = strconv.AppendUint(b, m.Token, 10)
	b = append(b, `,"at_ms":`...)
	b = strconv.AppendInt(b, m.At, 10)
	if m.Revoked {
		b = append(b, `,"revoked":true`...)
	}
	return append(b, '}')
}

func parseMarker(value []byte) (marker, bool) {
	var m marker
	err := json.Unmarshal(value, &m)
	return m, err == nil
}
