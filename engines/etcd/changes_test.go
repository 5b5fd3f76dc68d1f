package etcd

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/locklock/locklock/locklock"
)

// TestChangesOfOneRevision: the changes of one etcd revision (a batch, or
// a lease ending) become events in order, numbered from 1 among the lock
// keys alone; a delete is released, revoked or expired by its marker, and
// carries the lock as it was.
func TestChangesOfOneRevision(t *testing.T) {
	e := &Engine{prefix: "/p/"}
	e.base.Store(1000)
	const rev = 100
	at := time.UnixMilli(1_700_000_000_000).UTC()
	lock := func(name string, delay time.Duration) locklock.Lock {
		return locklock.Lock{ID: locklock.ID{Namespace: "ns", Kind: locklock.KindKey, Name: name},
			AcquiredAt: at, ExpiresAt: at.Add(time.Minute), Token: 1000 + 40, Holder: "h-" + name, LockDelay: delay}
	}
	put := func(key string, value []byte, createRev int64) *clientv3.Event {
		return &clientv3.Event{Type: mvccpb.PUT, Kv: &mvccpb.KeyValue{Key: []byte(key), Value: value, CreateRevision: createRev, ModRevision: rev}}
	}
	del := func(key string) *clientv3.Event {
		return &clientv3.Event{Type: mvccpb.DELETE, Kv: &mvccpb.KeyValue{Key: []byte(key), ModRevision: rev}}
	}
	rec := func(l locklock.Lock, updated time.Time) []byte {
		r := lockRecord(l, 7, 0)
		if !updated.IsZero() {
			r.UpdatedAt = updated.UnixMilli()
		}
		return r.encode()
	}
	known := map[string]locklock.Lock{
		"ns/key/b": lock("b", 0),
		"ns/key/c": lock("c", 5*time.Second),
		"ns/key/d": lock("d", 3*time.Second),
	}
	refreshedAt := at.Add(10 * time.Second)
	run := []*clientv3.Event{
		put("/p/delays/ns/key/a", []byte(`{}`), rev), // not a lock key: no event, no index
		del("/p/locks/ns/key/b"),
		put("/p/released/ns/key/b", marker{Token: 1040, At: at.Add(time.Second).UnixMilli()}.encode(), rev),
		del("/p/locks/ns/key/c"),
		put("/p/released/ns/key/c", marker{Token: 1040, At: at.Add(2 * time.Second).UnixMilli(), Revoked: true}.encode(), rev),
		del("/p/locks/ns/key/d"),
		del("/p/delays/ns/key/d"),
		put("/p/locks/ns/key/e", rec(lock("e", 0), time.Time{}), rev),
		put("/p/locks/ns/key/f", rec(lock("f", 0), refreshedAt), 40),
		put("/p/locks/ns/bogus/x", []byte(`{}`), rev), // a lock key the engine does not write: indexed, no event
		del("/p/locks/ns/key/g"),
		put("/p/released/ns/key/g", marker{Token: 1033, At: at.UnixMilli()}.encode(), rev),
		del("/p/released/ns/key/z"), // a marker's lease ended: nothing
	}
	p := &testPast{locks: known}
	evs := e.changes(rev, run, p)
	learned := p.learned

	type want struct {
		typ   locklock.EventType
		name  string
		sub   uint32
		at    time.Time
		token uint64
	}
	wants := []want{
		{locklock.EventReleased, "b", 1, at.Add(time.Second), 1040},
		{locklock.EventRevoked, "c", 2, at.Add(2 * time.Second), 1040},
		{locklock.EventExpired, "d", 3, at.Add(time.Minute), 1040},
		{locklock.EventAcquired, "e", 4, at, 1000 + rev},
		{locklock.EventRefreshed, "f", 5, refreshedAt, 1000 + 40},
		{locklock.EventReleased, "g", 7, at, 1033},
	}
	if len(evs) != len(wants) {
		t.Fatalf("%d events, want %d: %+v", len(evs), len(wants), evs)
	}
	for i, w := range wants {
		ev := evs[i]
		if ev.Type != w.typ || ev.Lock.Name != w.name || ev.Pos.Seq != rev || ev.Pos.Sub != w.sub || !ev.At.Equal(w.at) || ev.Lock.Token != w.token {
			t.Errorf("event %d: %s %s at %v sub %d token %d; want %+v", i, ev.Type, ev.Lock.Name, ev.At, ev.Pos.Sub, ev.Lock.Token, w)
		}
	}
	if b := evs[0].Lock; b.Holder != "h-b" || !b.ExpiresAt.Equal(at.Add(time.Minute)) || b.Revoked {
		t.Errorf("released carries %+v, want the lock as it was", b)
	}
	if c := evs[1].Lock; !c.Revoked || !c.ExpiresAt.Equal(at.Add(2*time.Second)) || !c.DelayedUntil().Equal(at.Add(7*time.Second)) {
		t.Errorf("revoked carries %+v: want Revoked, ExpiresAt at the revocation, lock-delay from then", c)
	}
	if d := evs[2].Lock; d.Holder != "h-d" || !d.DelayedUntil().Equal(at.Add(time.Minute+3*time.Second)) {
		t.Errorf("expired carries %+v, want the lock as it was, with its lock-delay", d)
	}
	if len(learned) != 2 || learned[0] != "ns/key/e" || learned[1] != "ns/key/f" {
		t.Errorf("the feed learned %v, want the two locks put", learned)
	}
}

// TestMarkerEncodeIsJSON: the hand-written marker encoder writes what
// encoding/json writes, and parseMarker reads it back.
func TestMarkerEncodeIsJSON(t *testing.T) {
	for _, m := range []marker{{}, {Token: 1 << 60, At: 1_700_000_000_123}, {Token: 5, At: -1, Revoked: true}} {
		want, _ := json.Marshal(m)
		if got := m.encode(); string(got) != string(want) {
			t.Errorf("encode(%+v) = %s, want %s", m, got, want)
		}
		if back, ok := decodeMarker(m.encode()); !ok || back != m {
			t.Errorf("decodeMarker(%s) = %+v, %v", m.encode(), back, ok)
		}
	}
	// Anything else goes to encoding/json, which reads it alike.
	for _, s := range []string{`{"at_ms":5,"token":7}`, `{"token":7, "at_ms":5}`, `{"token":-7,"at_ms":5}`, `{"token":7,"at_ms":5,"revoked":false}`, `{"token":7}`, `{"token":`, ``} {
		fast, fastOK := decodeMarker([]byte(s))
		var want marker
		wantOK := json.Unmarshal([]byte(s), &want) == nil
		if fastOK && (!wantOK || fast != want) {
			t.Errorf("decodeMarker(%q) = %+v; encoding/json: %+v, %v", s, fast, want, wantOK)
		}
		if got, ok := parseMarker([]byte(s)); ok != wantOK || ok && got != want {
			t.Errorf("parseMarker(%q) = %+v, %v; want %+v, %v", s, got, ok, want, wantOK)
		}
	}
}

// FuzzDecodeMarker: whatever decodeMarker accepts, encoding/json reads the
// same way.
func FuzzDecodeMarker(f *testing.F) {
	for _, m := range []marker{{Token: 1 << 60, At: 1_700_000_000_123}, {Token: 5, At: -1, Revoked: true}} {
		f.Add(m.encode())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := decodeMarker(b)
		if !ok {
			return
		}
		var want marker
		if err := json.Unmarshal(b, &want); err != nil || got != want {
			t.Fatalf("decodeMarker(%q) = %+v; encoding/json: %+v, %v", b, got, want, err)
		}
	})
}

// testPast is a past of given records that notes what it learns.
type testPast struct {
	locks   map[string]locklock.Lock
	slots   map[string]locklock.Slot
	learned []string
}

func (p *testPast) lock(_ *clientv3.Event, tail string) (locklock.Lock, bool) {
	l, ok := p.locks[tail]
	return l, ok
}

func (p *testPast) slot(_ *clientv3.Event, tail string) (locklock.Slot, bool) {
	sl, ok := p.slots[tail]
	return sl, ok
}

func (p *testPast) putLock(tail string, _ locklock.Lock) { p.learned = append(p.learned, tail) }
func (p *testPast) putSlot(tail string, _ locklock.Slot) { p.learned = append(p.learned, tail) }

// TestSlotChangesOfOneRevision: slot keys' changes are events of their
// semaphore, numbered after every lock key of the revision (whose numbers
// stay those of lock keys alone); a delete is released only with the
// slot's own marker — not a lock's of the same name, nor the other way
// round — and carries the slot as it was.
func TestSlotChangesOfOneRevision(t *testing.T) {
	e := &Engine{prefix: "/p/"}
	e.base.Store(1000)
	const rev = 100
	at := time.UnixMilli(1_700_000_000_000).UTC()
	sem := locklock.ID{Namespace: "ns", Kind: locklock.KindKey, Name: "farm"}
	slot := func(id string, weight int) locklock.Slot {
		return locklock.Slot{Semaphore: sem, ID: id, Limit: 5, Weight: weight, AcquiredAt: at, ExpiresAt: at.Add(time.Minute),
			Token: 1000 + 30, Holder: "h-" + id}
	}
	rec := func(sl locklock.Slot, updated time.Time) []byte {
		r := slotRecordOf(sl, 7)
		if !updated.IsZero() {
			r.UpdatedAt = updated.UnixMilli()
		}
		return r.encode()
	}
	put := func(key string, value []byte, createRev int64) *clientv3.Event {
		return &clientv3.Event{Type: mvccpb.PUT, Kv: &mvccpb.KeyValue{Key: []byte(key), Value: value, CreateRevision: createRev, ModRevision: rev}}
	}
	del := func(key string) *clientv3.Event {
		return &clientv3.Event{Type: mvccpb.DELETE, Kv: &mvccpb.KeyValue{Key: []byte(key), ModRevision: rev}}
	}
	lr := lockRecord(locklock.Lock{ID: sem, AcquiredAt: at, ExpiresAt: at.Add(time.Hour)}, 7, 0)
	lockRec := lr.encode()
	p := &testPast{
		locks: map[string]locklock.Lock{"ns/key/farm": {ID: sem, Token: 1010, ExpiresAt: at.Add(time.Hour)}},
		slots: map[string]locklock.Slot{"ns/key/farm#rel": slot("rel", 2), "ns/key/farm#exp": slot("exp", 1), "ns/key/farm#lockmarked": slot("lockmarked", 1)},
	}
	refreshedAt := at.Add(10 * time.Second)
	run := []*clientv3.Event{
		del("/p/sems/ns/key/farm#rel"),
		put("/p/released/ns/key/farm#rel", marker{Token: 1030, At: at.Add(time.Second).UnixMilli()}.encode(), rev),
		put("/p/locks/ns/key/other", lockRec, rev),
		del("/p/sems/ns/key/farm#exp"),
		put("/p/sems/ns/key/farm#new", rec(slot("new", 3), time.Time{}), rev),
		put("/p/sems/ns/key/farm#ref", rec(slot("ref", 1), refreshedAt), 30),
		del("/p/sems/ns/key/farm#lockmarked"),
		del("/p/locks/ns/key/farm"), // released by its marker; the slot above is not
		put("/p/released/ns/key/farm", marker{Token: 1010, At: at.UnixMilli()}.encode(), rev),
		del("/p/sems/ns/key/farm#unknown"),
		put("/p/sems/ns/key/farm", []byte(`{}`), rev), // no slot id: indexed, no event
		del("/p/locks/ns/key/marked-by-slot"),
		put("/p/released/ns/key/marked-by-slot#x", marker{Token: 1, At: at.UnixMilli()}.encode(), rev),
	}
	before := time.Now().Add(-time.Millisecond)
	evs := e.changes(rev, run, p)

	type want struct {
		typ  locklock.EventType
		name string // a lock's name, or a slot's id
		sub  uint32
		at   time.Time
	}
	wants := []want{
		{locklock.EventAcquired, "other", 1, at},
		{locklock.EventReleased, "farm", 2, at},
		{locklock.EventExpired, "marked-by-slot", 3, time.Time{}},
		{locklock.EventReleased, "rel", 4, at.Add(time.Second)},
		{locklock.EventExpired, "exp", 5, at.Add(time.Minute)},
		{locklock.EventAcquired, "new", 6, at},
		{locklock.EventRefreshed, "ref", 7, refreshedAt},
		{locklock.EventExpired, "lockmarked", 8, at.Add(time.Minute)},
		{locklock.EventExpired, "unknown", 9, time.Time{}},
	}
	if len(evs) != len(wants) {
		t.Fatalf("%d events, want %d: %+v", len(evs), len(wants), evs)
	}
	for i, w := range wants {
		ev := evs[i]
		name := ev.Lock.Name
		if i >= 3 {
			if ev.Slot == nil || ev.Slot.Semaphore != sem || ev.Lock.ID != (locklock.ID{}) {
				t.Fatalf("event %d: %+v, want a slot of %s", i, ev, sem)
			}
			name = ev.Slot.ID
		} else if ev.Slot != nil {
			t.Fatalf("event %d: a slot's, want lock %s's", i, w.name)
		}
		if ev.Type != w.typ || name != w.name || ev.Pos.Seq != rev || ev.Pos.Sub != w.sub ||
			!w.at.IsZero() && !ev.At.Equal(w.at) || w.at.IsZero() && ev.At.Before(before.Truncate(time.Millisecond)) {
			t.Errorf("event %d: %s %s at %v sub %d; want %+v", i, ev.Type, name, ev.At, ev.Pos.Sub, w)
		}
	}
	if rel := evs[3].Slot; rel.Holder != "h-rel" || rel.Weight != 2 || rel.Token != 1030 || !rel.ExpiresAt.Equal(at.Add(time.Minute)) {
		t.Errorf("released carries %+v, want the slot as it was", rel)
	}
	if acq := evs[5].Slot; acq.Weight != 3 || acq.Limit != 5 || acq.Token != 1000+rev || acq.Holder != "h-new" {
		t.Errorf("acquired carries %+v, want the new slot with its create revision's token", acq)
	}
	if ref := evs[6].Slot; ref.Token != 1000+30 {
		t.Errorf("refreshed carries token %d, want the key's create revision's", ref.Token)
	}
	if u := evs[8].Slot; u.ID != "unknown" || u.Semaphore != sem || u.Token != 0 {
		t.Errorf("an unknown slot's expiry carries %+v, want its name alone", u)
	}
	if want := []string{"ns/key/other", "ns/key/farm#new", "ns/key/farm#ref"}; !slices.Equal(p.learned, want) {
		t.Errorf("learned %v, want %v", p.learned, want)
	}
}
