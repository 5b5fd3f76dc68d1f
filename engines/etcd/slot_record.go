package etcd

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/locklock/locklock/locklock"
)

// slotRecord is what is stored under a slot's key (see "Semaphores" in
// semaphore.go). As in a lock record, the token is not stored — it is the
// key's create revision — and the lease decides expiry; the semaphore and
// the slot id are the key. Slot steps are far fewer than lock steps, so
// plain encoding/json does.
type slotRecord struct {
	Limit      int               `json:"limit"`
	Weight     int               `json:"weight"`
	AcquiredAt int64             `json:"acquired_at_ms"`
	ExpiresAt  int64             `json:"expires_at_ms"`
	Guard      []byte            `json:"guard,omitempty"` // salt and HMAC of the secret, never the secret
	Lease      int64             `json:"lease"`           // for whoever reads the store; the engine reads the key's own
	Holder     string            `json:"holder,omitempty"`
	Metadata   map[string]string `json:"metadata,omitempty"`
	// UpdatedAt, in a record a refresh or PATCH wrote, is the instant the
	// step was judged at, as in a lock record: for the slot events to come.
	UpdatedAt int64 `json:"updated_at_ms,omitempty"`
}

// slotRecordOf is the record of sl on lease.
func slotRecordOf(sl locklock.Slot, lease clientv3.LeaseID) slotRecord {
	return slotRecord{
		Limit:      sl.Limit,
		Weight:     sl.Weight,
		AcquiredAt: sl.AcquiredAt.UnixMilli(),
		ExpiresAt:  sl.ExpiresAt.UnixMilli(),
		Guard:      []byte(sl.Guard),
		Lease:      int64(lease),
		Holder:     sl.Holder,
		Metadata:   sl.Metadata,
	}
}

func (r *slotRecord) encode() []byte {
	b, err := json.Marshal(r)
	if err != nil {
		panic(fmt.Sprintf("etcd engine: encode slot record: %v", err)) // ints, strings and bytes always encode
	}
	return b
}

// parseSlotRecord reads slot of id's record; a record that could not hold
// a slot (limit or weight out of range) is corrupt, like one that is not
// JSON: AdmitSlot must never judge by it.
func parseSlotRecord(id locklock.ID, slot string, value []byte) (slotRecord, error) {
	var r slotRecord
	if err := json.Unmarshal(value, &r); err != nil {
		return slotRecord{}, fmt.Errorf("etcd engine: corrupt record of slot %s of semaphore %s: %w", slot, id, err)
	}
	if r.Limit < 1 || r.Weight < 1 || r.Weight > r.Limit {
		return slotRecord{}, fmt.Errorf("etcd engine: corrupt record of slot %s of semaphore %s: weight %d, limit %d", slot, id, r.Weight, r.Limit)
	}
	if len(r.Metadata) == 0 {
		r.Metadata = nil // a slot without metadata has nil, as given
	}
	return r, nil
}

// slot is the slot r describes, without its token and revision.
func (r *slotRecord) slot(id locklock.ID, slot string) locklock.Slot {
	return locklock.Slot{
		Semaphore:  id,
		ID:         slot,
		Limit:      r.Limit,
		Weight:     r.Weight,
		AcquiredAt: time.UnixMilli(r.AcquiredAt).UTC(),
		ExpiresAt:  time.UnixMilli(r.ExpiresAt).UTC(),
		Guard:      locklock.Guard(r.Guard),
		Holder:     r.Holder,
		Metadata:   r.Metadata,
	}
}

// turns lets the acquires of one semaphore through this engine go one at a
// time (see "Semaphores"). Turns go roughly in the order they were asked
// for (a channel serves its blocked senders first come, first served); an
// entry lives only while someone holds or waits for it.
type turns struct {
	mu sync.Mutex
	m  map[string]*turn
}

type turn struct {
	held  chan struct{} // full while someone has the turn
	users int           // who holds or waits for it
}

func newTurns() *turns { return &turns{m: make(map[string]*turn)} }

// take waits for key's turn until ctx is done (its error) or until
// deadline (ErrUnavailable: the steps before it took too long), and
// returns the function that ends the turn.
func (t *turns) take(ctx context.Context, key string, deadline time.Time) (func(), error) {
	t.mu.Lock()
	tr := t.m[key]
	if tr == nil {
		tr = &turn{held: make(chan struct{}, 1)}
		t.m[key] = tr
	}
	tr.users++
	t.mu.Unlock()
	leave := func() {
		t.mu.Lock()
		if tr.users--; tr.users == 0 {
			delete(t.m, key)
		}
		t.mu.Unlock()
	}
	select {
	case tr.held <- struct{}{}:
		return func() { <-tr.held; leave() }, nil
	default:
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case tr.held <- struct{}{}:
		return func() { <-tr.held; leave() }, nil
	case <-ctx.Done():
		leave()
		return nil, ctx.Err()
	case <-timer.C:
		leave()
		return nil, fmt.Errorf("%w: etcd acquire slot: earlier acquires of the semaphore took too long", locklock.ErrUnavailable)
	}
}
