package etcd

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/locklock/locklock/locklock"
)

// How the changes of one etcd revision become events (see "Events" in
// events.go), for the live watch and for replays alike, so that both give
// the same events at the same positions.

// past is what changes needs beyond a revision's own watch events, which
// carry no previous values: the record a delete removed. The live feed
// also learns, through it, every record put, to answer that later.
type past interface {
	// lock is the lock the delete ev of the lock key tail removed, and
	// slot the slot the delete of the slot key tail removed (false: not
	// known).
	lock(ev *clientv3.Event, tail string) (locklock.Lock, bool)
	slot(ev *clientv3.Event, tail string) (locklock.Slot, bool)
	// putLock and putSlot learn a record put under the key tail.
	putLock(tail string, l locklock.Lock)
	putSlot(tail string, sl locklock.Slot)
}

// changes turns the watch events of one revision into lock and slot
// events, in position order, with positions (but no epoch). Lock keys are
// numbered first, in etcd's order, from 1 — the numbers servers gave
// before slots had events, so that positions stay those of every server
// of a cluster that runs both —, then slot keys, after every lock key of
// the revision.
func (e *Engine) changes(rev int64, run []*clientv3.Event, p past) []*locklock.Event {
	var (
		markers map[string]marker
		locks   uint32 // lock keys changed
		slots   bool   // and slot keys
	)
	for _, ev := range run {
		if _, ok := e.tailBytes(ev.Kv.Key, locksSegment); ok {
			locks++
			continue
		}
		if _, ok := e.tailBytes(ev.Kv.Key, semsSegment); ok {
			slots = true
			continue
		}
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
		out      []*locklock.Event
		lockSub  uint32
		slotSub  = locks
		slotsOut []*locklock.Event
	)
	for _, ev := range run {
		if tail, ok := e.tailOf(ev.Kv.Key, locksSegment); ok {
			lockSub++
			if le := e.lockChange(ev, tail, markers, p, locklock.Position{Seq: uint64(rev), Sub: lockSub}); le != nil {
				out = append(out, le)
			}
			continue
		}
		if !slots {
			continue
		}
		if tail, ok := e.tailOf(ev.Kv.Key, semsSegment); ok {
			slotSub++
			if se := e.slotChange(ev, tail, markers, p, locklock.Position{Seq: uint64(rev), Sub: slotSub}); se != nil {
				slotsOut = append(slotsOut, se)
			}
		}
	}
	return append(out, slotsOut...)
}

// lockChange is the event of ev, a change of the lock key tail; nil for a
// key the engine does not write.
func (e *Engine) lockChange(ev *clientv3.Event, tail string, markers map[string]marker, p past, pos locklock.Position) *locklock.Event {
	id, ok := parseTail(tail)
	if !ok {
		return nil // not a key the engine writes
	}
	if ev.Type == clientv3.EventTypePut {
		l, updated, err := e.decodeEvent(id, ev.Kv.Value, ev.Kv.CreateRevision)
		if err != nil {
			return nil // a corrupt record: no event to tell
		}
		p.putLock(tail, l)
		return putEvent(ev, l, updated, pos)
	}
	l, known := p.lock(ev, tail)
	m, marked := markers[tail]
	return endEvent(id, l, known, m, marked, pos)
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

// tailOf returns what follows <prefix><segment> in key.
func (e *Engine) tailOf(key []byte, segment string) (string, bool) {
	tail, ok := e.tailBytes(key, segment)
	return string(tail), ok
}

// tailBytes is tailOf without a copy.
func (e *Engine) tailBytes(key []byte, segment string) ([]byte, bool) {
	p := len(e.prefix)
	if len(key) <= p+len(segment) || string(key[:p]) != e.prefix || string(key[p:p+len(segment)]) != segment {
		return nil, false
	}
	return key[p+len(segment):], true
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

// parseMarker reads a marker: what encode writes without reflection
// (one is read for every release), anything else with encoding/json.
func parseMarker(value []byte) (marker, bool) {
	if m, ok := decodeMarker(value); ok {
		return m, true
	}
	var m marker
	err := json.Unmarshal(value, &m)
	return m, err == nil
}

// decodeMarker reads exactly what encode writes.
func decodeMarker(b []byte) (m marker, ok bool) {
	d := recordScanner{b: b}
	var token, at int64
	ok = d.next('{') && d.literal(`"token":`) && !d.literal("-") // unsigned
	if ok {
		token, ok = d.int()
	}
	ok = ok && d.literal(`,"at_ms":`)
	if ok {
		at, ok = d.int()
	}
	if ok && d.literal(`,"revoked":true`) {
		m.Revoked = true
	}
	if !ok || !d.next('}') || d.i != len(b) {
		return marker{}, false
	}
	m.Token, m.At = uint64(token), at
	return m, true
}
