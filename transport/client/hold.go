package client

import (
	"context"
	"fmt"
	"time"

	"github.com/locklock/locklock/locklock"
)

// DefaultHoldTTL is Do's lock (or slot) lifetime when WithTTL is not given:
// long enough that a brief outage does not cost the lock, short enough that
// a crashed holder frees it soon.
const DefaultHoldTTL = 30 * time.Second

// Held is a lock kept alive in the background. Its Context ends as soon as
// the lock may be lost, before anyone else can take it: stop the work then.
type Held struct{ k *keeper[Lock] }

// Hold acquires the lock for ttl (whole seconds, at least one) and refreshes
// it every ttl/3 until Release. If no refresh is confirmed before the lock
// would lapse less the safety margin (WithSafetyMargin), or the server says
// the lock is gone, the Held's Context is cancelled with a cause wrapping
// ErrLost. Options as for Acquire, plus WithSafetyMargin; a lock held by
// another, or kept free by a lock-delay, is Acquire's error (ErrHeld,
// ErrDelayed), after the wait if one was given. Refreshes keep the lock's
// holder and metadata; Patch with the Held's Lock().Secret changes them.
//
// The lock's lifetime is counted from when each request was sent, by this
// process's clock, so a slow answer only shortens what Hold believes it has.
// Hold also watches the lock's event stream (one connection per Held), so
// that a loss the server reports — expired, revoked, released or taken
// over — ends the Context at once rather than at the next refresh.
func (c *Client) Hold(ctx context.Context, t Target, ttl time.Duration, opts ...LockOption) (*Held, error) {
	ttl, margin, err := holdTiming(ttl, callOpts(opts).margin)
	if err != nil {
		return nil, err
	}
	acquire := func(ctx context.Context, ttl time.Duration) (Lock, bool, error) {
		l, err := c.Acquire(ctx, t, append(opts[:len(opts):len(opts)], WithTTL(ttl))...)
		return l, l.Created, err
	}
	k, err := startKeeper(ctx, c, ttl, margin, acquire, func(l Lock) keeperOps[Lock] { return c.lockOps(t, l.Secret) })
	if err != nil {
		return nil, err
	}
	return &Held{k}, nil
}

// lockOps keep the lock t, held with secret.
func (c *Client) lockOps(t Target, secret string) keeperOps[Lock] {
	return keeperOps[Lock]{
		what:  t.String(),
		token: func(l Lock) uint64 { return l.FencingToken },
		refresh: func(ctx context.Context, ttl time.Duration) (Lock, error) {
			return c.Refresh(ctx, t, WithSecret(secret), WithTTL(ttl))
		},
		release: func(ctx context.Context) error {
			_, err := c.Release(ctx, t, WithSecret(secret))
			return err
		},
		notFound: locklock.ErrNotFound,
		// One stream per Held: a lock has one holder, so there is
		// nothing to share.
		watch: func(ctx context.Context, _ span, _ func()) events { return c.Watch(ctx, t) },
		loss:  lockLoss,
		keep: func(from, to Lock) Lock {
			to.Secret, to.Created = from.Secret, from.Created
			return to
		},
	}
}

// lockLoss judges a lock stream's event: the lock is gone (ErrNotFound) or
// someone else holds it (ErrHeld).
func lockLoss(ev Event, ours uint64) (string, error) {
	switch {
	case ev.Lock == nil:
		if ev.Type == EventState {
			return "is not held any more", locklock.ErrNotFound
		}
	case ev.Lock.FencingToken != ours:
		if ev.Type == EventState || ev.Type == "acquired" || ev.Type == "refreshed" {
			return fmt.Sprintf("passed to another holder (fencing token %d)", ev.Lock.FencingToken), locklock.ErrHeld
		}
	case ev.Type == "expired":
		return "expired", locklock.ErrNotFound
	case ev.Type == "revoked":
		return "was revoked by an operator", locklock.ErrNotFound
	case ev.Type == "released":
		return "was released by someone else", locklock.ErrNotFound
	}
	return "", nil
}

// Lock is the lock as last confirmed by the server; its FencingToken never
// changes while held.
func (h *Held) Lock() Lock { return h.k.current() }

// Context ends when the lock may be lost, on Release, or with the context
// given to Hold. context.Cause tells which.
func (h *Held) Context() context.Context { return h.k.ctx }

// ValidUntil is when the lock lapses at the earliest unless a refresh is
// confirmed: the last confirmed request's send time plus the TTL.
func (h *Held) ValidUntil() time.Time { return h.k.ValidUntil() }

// Lost is nil while the lock is held or after Release; otherwise an error
// wrapping ErrLost that says why.
func (h *Held) Lost() error { return h.k.Lost() }

// Release stops refreshing, ends the Context and releases the lock. A lock
// that was lost and has since gone reports locklock.ErrNotFound. Give it a
// context of its own: the one given to Hold may be over.
func (h *Held) Release(ctx context.Context) error { return h.k.Release(ctx) }

// Do runs fn while holding the lock, then releases it. fn's context ends if
// the lock may be lost (see Hold); fn should stop then. Do returns fn's
// error; if fn succeeded but the lock was lost meanwhile, an error wrapping
// ErrLost, since the work may not have been protected throughout. The TTL
// is WithTTL's, or DefaultHoldTTL.
func (c *Client) Do(ctx context.Context, t Target, fn func(ctx context.Context, l Lock) error, opts ...LockOption) error {
	h, err := c.Hold(ctx, t, holdTTL(callOpts(opts)), opts...)
	if err != nil {
		return err
	}
	return h.k.run(ctx, fn)
}
