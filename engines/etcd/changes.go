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
