package etcd

import (
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/locklock/locklock/locklock"
)

// Slot events (API.md §9, §10): a semaphore's slots report acquired,
// refreshed, released and expired, as locks do and from the same watch
// (see "Events" in events.go), with the same guarantees:
//
//   - a put that creates a slot key: acquired, at the slot's AcquiredAt;
//   - a put that rewrites it (RefreshSlot, a PATCH): refreshed, at the
//     record's UpdatedAt;
//   - a delete: released (revoked, when its marker says so) when the same
//     revision puts the slot's release marker, expired otherwise — etcd deleted the key because its lease
//     ended (at the slot's ExpiresAt).
//
// A slot's release marker is the lock's, under the slot key's tail:
//
//	<prefix>released/<namespace>/<kind>/<name>#<slot> → marker (JSON), on a lease of markerTTL
//
// written by ReleaseSlot in the delete's transaction. It is outside
// sems/, so outside every semaphore's range: acquire's compare of the
// create revisions in the range, listing and AdmitSlot never see it. And
// no lock marker has that tail ('#' is in no name), nor is any written
// twice (slot ids are random), so the lease accounting counts it exactly.
//
// The feed remembers live slots from the watch as it remembers locks, and
// reads the ones it does not know from etcd's history. Positions number a
// revision's slot keys after its lock keys (see changes).

// slotMarkerKey is where a release of slot of id puts its marker.
func (e *Engine) slotMarkerKey(id locklock.ID, slot string) string {
	return e.prefix + releasedSegment + id.Namespace + "/" + string(id.Kind) + "/" + id.Name + slotSep + slot
}

// parseSlotTail reads <namespace>/<kind>/<name>#<slot>.
func parseSlotTail(tail string) (locklock.ID, string, bool) {
	sem, slot, ok := strings.Cut(tail, slotSep)
	if !ok || slot == "" {
		return locklock.ID{}, "", false
	}
	id, ok := parseTail(sem)
	return id, slot, ok
}

// slotChange is the event of ev, a change of the slot key tail; nil for a
// key the engine does not write.
func (e *Engine) slotChange(ev *clientv3.Event, tail string, markers map[string]marker, p past, pos locklock.Position) *locklock.Event {
	id, slot, ok := parseSlotTail(tail)
	if !ok {
		return nil
	}
	if ev.Type == clientv3.EventTypePut {
		sl, updated, err := e.decodeSlotEvent(id, slot, ev.Kv.Value, ev.Kv.CreateRevision)
		if err != nil {
			return nil // a corrupt record: no event to tell
		}
		p.putSlot(tail, sl)
		if ev.IsCreate() {
			return &locklock.Event{Type: locklock.EventAcquired, At: sl.AcquiredAt, Slot: &sl, Pos: pos}
		}
		if updated.IsZero() {
			updated = time.Now().UTC().Truncate(time.Millisecond)
		}
		return &locklock.Event{Type: locklock.EventRefreshed, At: updated, Slot: &sl, Pos: pos}
	}
	sl, known := p.slot(ev, tail)
	m, marked := markers[tail]
	if !known {
		// What is known without it: which slot, and a release's token.
		sl = locklock.Slot{Semaphore: id, ID: slot, Token: m.Token}
	}
	out := &locklock.Event{Slot: &sl, Pos: pos}
	switch {
	case marked && m.Revoked:
		out.Type, out.At = locklock.EventRevoked, time.UnixMilli(m.At).UTC()
	case marked:
		out.Type, out.At = locklock.EventReleased, time.UnixMilli(m.At).UTC()
	case known:
		out.Type, out.At = locklock.EventExpired, sl.ExpiresAt
	default:
		out.Type, out.At = locklock.EventExpired, time.Now().UTC().Truncate(time.Millisecond)
	}
	return out
}

// decodeSlotEvent is decodeSlot for events: the slot put under its key
// with createRev, and the instant a refresh wrote it (zero when not
// recorded).
func (e *Engine) decodeSlotEvent(id locklock.ID, slot string, value []byte, createRev int64) (locklock.Slot, time.Time, error) {
	r, err := parseSlotRecord(id, slot, value)
	if err != nil {
		return locklock.Slot{}, time.Time{}, err
	}
	sl := r.slot(id, slot)
	sl.Token = e.base.Load() + uint64(createRev)
	var updated time.Time
	if r.UpdatedAt != 0 {
		updated = time.UnixMilli(r.UpdatedAt).UTC()
	}
	return sl, updated, nil
}

// slotReleaseTxn deletes key and puts the release marker on markerLease,
// if key's mod revision is still modRev.
func slotReleaseTxn(key, markerKey string, markerValue []byte, markerLease clientv3.LeaseID, modRev int64) *pb.TxnRequest {
	k := []byte(key)
	return &pb.TxnRequest{
		Compare: []*pb.Compare{{
			Target: pb.Compare_MOD, Result: pb.Compare_EQUAL, Key: k,
			TargetUnion: &pb.Compare_ModRevision{ModRevision: modRev},
		}},
		Success: []*pb.RequestOp{
			{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: k}}},
			{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(markerKey), Value: markerValue, Lease: int64(markerLease)}}},
		},
	}
}
