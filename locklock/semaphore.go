package locklock

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"time"

	"github.com/locklock/locklock/internal/abbrev"
)

// Semaphores (API.md §10): up to Limit units held at once, in slots of a
// weight each. A semaphore is named like a lock (ID) in a space of its own:
// a lock and a semaphore may share an ID. It exists while it has live slots;
// when the last one ends, the next acquire sets its limit afresh.
const (
	// MaxSemaphoreLimit is the largest limit a semaphore may have.
	MaxSemaphoreLimit = 10000
	// SlotIDLen is the length of a slot's id: 16 random bytes, base64url.
	SlotIDLen = 22
	// MaxSlotsPage is the most slots one GET of a semaphore lists.
	MaxSlotsPage = 1000
)

// Slot is one holder's share of a semaphore, as stored by an engine.
type Slot struct {
	// Semaphore names the semaphore the slot belongs to.
	Semaphore ID
	// ID is the slot's random id (SlotIDLen characters of base64url).
	ID string
	// Limit is the semaphore's limit the slot was taken under; every live
	// slot of a semaphore has the same.
	Limit int
	// Weight is how many of the limit's units the slot holds (1–Limit).
	Weight int
	// AcquiredAt, ExpiresAt, Token, Guard, Holder, Metadata, ObservedAt and
	// Revision mean what they mean for a Lock. Tokens rise per semaphore,
	// across all its slots.
	AcquiredAt time.Time
	ExpiresAt  time.Time
	Token      uint64
	Guard      Guard
	Holder     string
	Metadata   map[string]string
	ObservedAt time.Time
	Revision   int64
}

// Protected says whether a secret guards the slot.
func (s Slot) Protected() bool { return s.Guard.Protected() }

// Live says whether the slot is still held at now.
func (s Slot) Live(now time.Time) bool { return now.Before(s.ExpiresAt) }

// Remaining is how long the slot had left when it was observed (never
// negative).
func (s Slot) Remaining() time.Duration {
	return max(s.ExpiresAt.Sub(s.ObservedAt), 0)
}

// ApplySlot returns s with c applied, as Apply does for a lock: the id,
// token, acquisition time, guard, limit and weight never change.
func (c Change) ApplySlot(s Slot) Slot {
	c.apply(&s.ExpiresAt, &s.Holder, &s.Metadata)
	return s
}

// Semaphore is a semaphore as observed: its live slots, by token.
type Semaphore struct {
	ID
	Limit int
	// InUse is the sum of the live slots' weights.
	InUse int
	Slots []Slot
	// Next, when not empty, is the After of the next page of slots (a
	// token, in decimal); set by the Service, not engines.
	Next       string
	ObservedAt time.Time
	// Revision is the storage revision the engine read the semaphore at
	// (etcd), as for Lock.Revision; zero without revisions.
	Revision int64
}

// SemaphoreSummary is a semaphore in a listing.
type SemaphoreSummary struct {
	ID
	Limit int
	InUse int
	Slots int
}

// NewSlotID returns a fresh random slot id.
func NewSlotID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms.
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// ValidSlotID says whether id has the form of a slot id. A malformed id
// names no slot (404 slot_not_found, not 400).
func ValidSlotID(id string) bool {
	if len(id) != SlotIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// AdmitSlot is the rule every engine applies, inside the atomic step of
// SemaphoreEngine.TryAcquireSlot, to the live slots of cand's semaphore:
// a live slot that same accepts (a retry with its secret; same may be nil)
// is returned with retry true — checked first —; a limit other than the
// live slots' gives a *LimitMismatchError; a weight that does not fit a
// *FullError; otherwise cand may be stored (nil, false).
func AdmitSlot(live []Slot, cand Slot, same func(Slot) bool) (Slot, bool, error) {
	if same != nil {
		for _, s := range live {
			if same(s) {
				return s, true, nil
			}
		}
	}
	if len(live) == 0 {
		return Slot{}, false, nil
	}
	if limit := live[0].Limit; limit != cand.Limit {
		return Slot{}, false, &LimitMismatchError{ID: cand.Semaphore, Limit: limit, Asked: cand.Limit}
	}
	inUse := 0
	var frees time.Time
	for _, s := range live {
		inUse += s.Weight
		if frees.IsZero() || s.ExpiresAt.Before(frees) {
			frees = s.ExpiresAt
		}
	}
	if inUse+cand.Weight > cand.Limit {
		return Slot{}, false, &FullError{ID: cand.Semaphore, Limit: cand.Limit, InUse: inUse, Weight: cand.Weight, FreesAt: frees}
	}
	return Slot{}, false, nil
}

// SemaphoreEngine is implemented by engines that store semaphores. The rules
// of Engine apply (atomic steps, now, errors, closing); each method is one
// atomic step with respect to every other call on the same semaphore.
// Engine.Sweep deletes expired slots too, and Engine.Close ends both.
type SemaphoreEngine interface {
	// TryAcquireSlot stores cand as a slot of cand.Semaphore if
	// AdmitSlot(live slots at now, cand, same) allows it, filling in
	// cand.Token with a token greater than any issued before for that
	// semaphore, and returns it with created true. When AdmitSlot finds a
	// retry it returns that slot, unchanged, with created false; its
	// errors are returned as they are. same runs inside the atomic step:
	// it must be quick and must not call the engine.
	TryAcquireSlot(ctx context.Context, cand Slot, now time.Time, same func(Slot) bool) (Slot, bool, error)

	// GetSemaphore returns the semaphore's live slots, by token, with
	// Limit and InUse; ErrSemaphoreNotFound when it has none (an engine
	// with revisions then returns the Revision it read at, too).
	GetSemaphore(ctx context.Context, id ID, now time.Time) (Semaphore, error)

	// GetSlot returns the live slot; ErrSlotNotFound when there is none.
	GetSlot(ctx context.Context, id ID, slot string, now time.Time) (Slot, error)

	// ReleaseSlot deletes the live slot if allow(slot) returns nil and
	// returns it as it was. Errors as for GetSlot, or allow's.
	ReleaseSlot(ctx context.Context, id ID, slot string, now time.Time, allow func(Slot) error) (Slot, error)

	// RevokeSlot deletes the live slot whatever its secret (an operator's
	// forced release; slots have no lock-delay), reports EventRevoked and
	// returns the slot as it was. Errors as for GetSlot.
	RevokeSlot(ctx context.Context, id ID, slot string, now time.Time) (Slot, error)

	// RefreshSlot applies ch (Change.ApplySlot) to the live slot if
	// allow(slot) returns nil, and returns the slot after. Errors as for
	// ReleaseSlot.
	RefreshSlot(ctx context.Context, id ID, slot string, now time.Time, ch Change, allow func(Slot) error) (Slot, error)

	// ListSemaphores returns the semaphores with live slots of q.Namespace
	// and q.Kind whose names start with q.Prefix and sort after q.After,
	// in name order, at most q.Limit.
	ListSemaphores(ctx context.Context, q ListQuery, now time.Time) ([]SemaphoreSummary, error)
}

// FullError reports that a slot does not fit under its semaphore's limit.
// errors.Is(err, ErrSemaphoreFull) is true for it.
type FullError struct {
	ID     ID
	Limit  int
	InUse  int
	Weight int // what was asked for
	// Queued, when above zero, is how many earlier requests wait for the
	// semaphore on this server: this one may not pass them.
	Queued int
	// FreesAt is the earliest expiry of a live slot: the latest moment
	// room may come without a release (Retry-After). Zero when unknown.
	FreesAt time.Time
	// ObservedAt is when the Service judged it.
	ObservedAt time.Time
	// Revision is the storage revision the engine judged the semaphore
	// at (etcd), so that a watch from the next one misses no release;
	// zero for engines without revisions.
	Revision int64
}

func (e *FullError) Error() string {
	msg := fmt.Sprintf("semaphore %s is full: %d of %d in use, %d asked for", abbrev.String(e.ID.Name), e.InUse, e.Limit, e.Weight)
	switch {
	case e.Queued == 1:
		msg += ", and an earlier request waits first"
	case e.Queued > 1:
		msg += fmt.Sprintf(", and %d earlier requests wait first", e.Queued)
	}
	return msg
}

// Unwrap makes errors.Is(err, ErrSemaphoreFull) true.
func (e *FullError) Unwrap() error { return ErrSemaphoreFull }

// LimitMismatchError reports an acquire whose limit differs from the one
// the semaphore's live slots have. errors.Is(err, ErrLimitMismatch) is true
// for it.
type LimitMismatchError struct {
	ID    ID
	Limit int // the semaphore's
	Asked int
}

func (e *LimitMismatchError) Error() string {
	return fmt.Sprintf("semaphore %s has limit %d while it has slots; %d was asked", abbrev.String(e.ID.Name), e.Limit, e.Asked)
}

// Unwrap makes errors.Is(err, ErrLimitMismatch) true.
func (e *LimitMismatchError) Unwrap() error { return ErrLimitMismatch }

// SlotNotFound is the error for a slot that is not there (wrapping
// ErrSlotNotFound), naming it; engines return it.
func SlotNotFound(id ID, slot string) error {
	return fmt.Errorf("%w: no slot %s of semaphore %s (never acquired, released, or expired)",
		ErrSlotNotFound, abbrev.String(slot), abbrev.String(id.Name))
}
