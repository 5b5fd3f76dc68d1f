package client

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/locklock/locklock/locklock"
)

// HeldSlot is a semaphore's slot kept alive in the background, as Held
// keeps a lock. Its Context ends as soon as the slot may be lost, before
// its units can go to anyone else: stop the work then.
type HeldSlot struct{ k *keeper[Slot] }

// Hold acquires a slot for ttl (whole seconds, at least one) and keeps it
// as Client.Hold keeps a lock: refreshed every ttl/3, its Context ended
// with a cause wrapping ErrLost when no refresh is confirmed before the
// slot would lapse less the safety margin, or when the server says it is
// gone — the semaphore's event stream reports it expired, revoked or
// released by someone else. Options as for Acquire (WithWeight among
// them), plus WithSafetyMargin; a semaphore without room is Acquire's
// error (ErrSemaphoreFull, ErrLimitMismatch), after the wait if one was
// given.
//
// The HeldSlots of one semaphore in one Client share one stream (one
// connection, one of the server's --max-watchers-per-caller), which
// closes when the last of them ends; each is handed only its own slot's
// events.
func (s *Semaphore) Hold(ctx context.Context, ttl time.Duration, opts ...LockOption) (*HeldSlot, error) {
	o := callOpts(opts)
	ttl, margin, err := holdTiming(ttl, o.margin)
	if err != nil {
		return nil, err
	}
	if err := s.checkAcquire(o); err != nil {
		return nil, err
	}
	acquire := func(ctx context.Context, ttl time.Duration) (Slot, bool, error) {
		sl, err := s.Acquire(ctx, append(opts[:len(opts):len(opts)], WithTTL(ttl))...)
		return sl, sl.Created, err
	}
	k, err := startKeeper(ctx, s.c, ttl, margin, acquire, s.slotOps)
	if err != nil {
		return nil, err
	}
	return &HeldSlot{k}, nil
}

// slotOps keep the slot held, with its secret.
func (s *Semaphore) slotOps(held Slot) keeperOps[Slot] {
	secret := WithSecret(held.Secret)
	return keeperOps[Slot]{
		what:  fmt.Sprintf("slot %s of semaphore %s", held.ID, s.target),
		token: func(sl Slot) uint64 { return sl.FencingToken },
		refresh: func(ctx context.Context, ttl time.Duration) (Slot, error) {
			return s.Refresh(ctx, held, secret, WithTTL(ttl))
		},
		release: func(ctx context.Context) error {
			_, err := s.Release(ctx, held, secret)
			return err
		},
		notFound: locklock.ErrSlotNotFound,
		watch: func(ctx context.Context, acquired span, recheck func()) events {
			return s.c.slotFeeds.join(ctx, s.c, s.target, held, acquired, recheck)
		},
		loss: func(ev Event, _ uint64) (string, error) { return slotLoss(ev, held) },
		keep: func(from, to Slot) Slot {
			to.Secret, to.Created = from.Secret, from.Created
			return to
		},
	}
}

// slotLoss judges a semaphore stream's event: the slot ours is gone
// (ErrSlotNotFound). Other slots' events are no concern of ours.
func slotLoss(ev Event, ours Slot) (string, error) {
	switch {
	case ev.Type == EventState:
		if ev.Semaphore == nil {
			return "is not held any more", locklock.ErrSlotNotFound
		}
		slots := ev.Semaphore.Slots
		if slices.ContainsFunc(slots, func(sl Slot) bool { return sl.ID == ours.ID }) {
			return "", nil
		}
		// The state lists a first page of slots by token: ours is gone if
		// the page is the last, or if it reaches past our token.
		if ev.Semaphore.Next == "" || len(slots) > 0 && slots[len(slots)-1].FencingToken > ours.FencingToken {
			return "is not held any more", locklock.ErrSlotNotFound
		}
	case ev.Slot == nil || ev.Slot.ID != ours.ID:
	case ev.Type == "expired":
		return "expired", locklock.ErrSlotNotFound
	case ev.Type == "revoked":
		return "was revoked by an operator", locklock.ErrSlotNotFound
	case ev.Type == "released":
		return "was released by someone else", locklock.ErrSlotNotFound
	}
	return "", nil
}

// Slot is the slot as last confirmed by the server; its ID and
// FencingToken never change while held.
func (h *HeldSlot) Slot() Slot { return h.k.current() }

// Context ends when the slot may be lost, on Release, or with the context
// given to Hold. context.Cause tells which.
func (h *HeldSlot) Context() context.Context { return h.k.ctx }

// ValidUntil is when the slot lapses at the earliest unless a refresh is
// confirmed: the last confirmed request's send time plus the TTL.
func (h *HeldSlot) ValidUntil() time.Time { return h.k.ValidUntil() }

// Lost is nil while the slot is held or after Release; otherwise an error
// wrapping ErrLost that says why.
func (h *HeldSlot) Lost() error { return h.k.Lost() }

// Release stops refreshing, ends the Context and releases the slot. A slot
// that was lost and has since gone reports locklock.ErrSlotNotFound. Give
// it a context of its own: the one given to Hold may be over.
func (h *HeldSlot) Release(ctx context.Context) error { return h.k.Release(ctx) }

// Do runs fn while holding a slot, then releases it, as Client.Do does
// with a lock: fn's context ends if the slot may be lost (see Hold); Do
// returns fn's error, or one wrapping ErrLost if fn succeeded but the slot
// was lost meanwhile. The TTL is WithTTL's, or DefaultHoldTTL.
func (s *Semaphore) Do(ctx context.Context, fn func(ctx context.Context, sl Slot) error, opts ...LockOption) error {
	h, err := s.Hold(ctx, holdTTL(callOpts(opts)), opts...)
	if err != nil {
		return err
	}
	return h.k.run(ctx, fn)
}
