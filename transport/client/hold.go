package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/locklock/locklock/locklock"
)

// DefaultHoldTTL is Do's lock lifetime when WithTTL is not given: long
// enough that a brief outage does not cost the lock, short enough that a
// crashed holder frees it soon.
const DefaultHoldTTL = 30 * time.Second

// errReleased ends a Held's context after Release.
var errReleased = errors.New("lock released by its holder")

// Held is a lock kept alive in the background. Its Context ends as soon as
// the lock may be lost, before anyone else can take it: stop the work then.
type Held struct {
	c      *Client
	target Target
	secret string
	ttl    time.Duration
	margin time.Duration

	ctx    context.Context
	cancel context.CancelCauseFunc
	done   chan struct{} // closed when the refresher has stopped

	mu         sync.Mutex
	lock       Lock
	validUntil time.Time // the lock lasts at least until then, by our clock
}

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
	o := callOpts(opts)
	ttl = time.Duration(wholeSeconds(ttl)) * time.Second
	if ttl <= 0 {
		return nil, fmt.Errorf("%w: hold needs a TTL of at least one second", locklock.ErrInvalidArgument)
	}
	margin := o.margin
	if margin == 0 {
		margin = ttl / 5
	}
	if margin < 0 || margin >= ttl*2/3 {
		return nil, fmt.Errorf("%w: safety margin %v must be below two thirds of the TTL %v", locklock.ErrInvalidArgument, margin, ttl)
	}
	sent := time.Now()
	l, err := c.Acquire(ctx, t, append(opts[:len(opts):len(opts)], WithTTL(ttl))...)
	if err != nil {
		return nil, err
	}
	valid := sent.Add(ttl)
	if !l.Created || time.Since(sent) >= ttl/3 {
		// The lock does not surely last a full TTL from sent with the
		// first refresh due at sent+ttl/3: it was ours already (a secret
		// held before: it runs out when it was going to, perhaps in a
		// moment), or a wait used up the time sent+ttl promises. Refresh
		// it now, before the work starts, to count a full TTL afresh.
		sent = time.Now()
		r, err := c.Refresh(ctx, t, WithSecret(l.Secret), WithTTL(ttl))
		if err != nil {
			if l.Created {
				// Ours, but not to be held: do not leave it blocking others.
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ttl)
				_, _ = c.Release(rctx, t, WithSecret(l.Secret))
				cancel()
			}
			return nil, fmt.Errorf("client: hold %s: refresh after the acquire: %w", t, err)
		}
		r.Secret, r.Created = l.Secret, l.Created
		l, valid = r, sent.Add(ttl)
	}
	h := &Held{c: c, target: t, secret: l.Secret, ttl: ttl, margin: margin, lock: l, validUntil: valid, done: make(chan struct{})}
	h.ctx, h.cancel = context.WithCancelCause(ctx)
	go h.refresh(sent)
	go h.watch()
	return h, nil
}

// watch ends the Context the moment the server reports the lock gone —
// expired, revoked, released or taken by someone else — rather than at the
// next refresh, ttl/3 away. It is a second line: when the stream cannot be
// had (an engine without events, a refused stream) or is reset, the
// refreshes still find the loss.
func (h *Held) watch() {
	w := h.c.Watch(h.ctx, h.target)
	defer w.Close()
	ours := h.Lock().FencingToken
	for {
		ev, err := w.Next()
		if err != nil {
			return // the Held ended, or the server refused the stream
		}
		// The cause wraps what a refresh would have been told: the
		// lock is gone (ErrNotFound) or someone else holds it (ErrHeld).
		var why string
		kind := locklock.ErrNotFound
		switch {
		case ev.Lock == nil:
			if ev.Type == EventState {
				why = "is not held any more"
			}
		case ev.Lock.FencingToken != ours:
			if ev.Type == EventState || ev.Type == "acquired" || ev.Type == "refreshed" {
				why, kind = fmt.Sprintf("passed to another holder (fencing token %d)", ev.Lock.FencingToken), locklock.ErrHeld
			}
		case ev.Type == "expired":
			why = "expired"
		case ev.Type == "revoked":
			why = "was revoked by an operator"
		case ev.Type == "released":
			why = "was released by someone else"
		}
		if why != "" && h.ctx.Err() == nil {
			h.cancel(fmt.Errorf("%w: %s %s (ours had fencing token %d): %w", ErrLost, h.target, why, ours, kind))
			return
		}
	}
}

// Context ends when the lock may be lost, on Release, or with the context
// given to Hold. context.Cause tells which.
func (h *Held) Context() context.Context { return h.ctx }

// Lock is the lock as last confirmed by the server; its FencingToken never
// changes while held.
func (h *Held) Lock() Lock {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lock
}

// ValidUntil is when the lock lapses at the earliest unless a refresh is
// confirmed: the last confirmed request's send time plus the TTL.
func (h *Held) ValidUntil() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.validUntil
}

// Lost is nil while the lock is held or after Release; otherwise an error
// wrapping ErrLost that says why.
func (h *Held) Lost() error {
	if err := context.Cause(h.ctx); errors.Is(err, ErrLost) {
		return err
	}
	return nil
}

// Release stops refreshing, ends the Context and releases the lock. A lock
// that was lost and has since gone reports locklock.ErrNotFound. Give it a
// context of its own: the one given to Hold may be over.
func (h *Held) Release(ctx context.Context) error {
	h.cancel(errReleased)
	<-h.done
	_, err := h.c.Release(ctx, h.target, WithSecret(h.secret))
	return err
}

// refresh keeps the lock alive until the context ends.
func (h *Held) refresh(acquired time.Time) {
	defer close(h.done)
	interval := h.ttl / 3
	pause := max(h.ttl/20, 50*time.Millisecond) // between failed attempts
	timer := time.NewTimer(time.Until(acquired.Add(interval)))
	defer timer.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-timer.C:
		}
		cutoff := h.ValidUntil().Add(-h.margin)
		if !time.Now().Before(cutoff) {
			h.cancel(fmt.Errorf("%w: no refresh of %s confirmed; stopped %v before it would lapse", ErrLost, h.target, h.margin))
			return
		}
		sent := time.Now()
		rctx, cancel := context.WithDeadline(h.ctx, cutoff)
		l, err := h.c.Refresh(rctx, h.target, WithSecret(h.secret), WithTTL(h.ttl))
		cancel()
		switch {
		case err == nil && l.FencingToken != h.Lock().FencingToken:
			// An unprotected lock can be refreshed by anyone: this one was
			// released and taken by someone else in between.
			h.cancel(fmt.Errorf("%w: %s passed to another holder (fencing token %d, ours %d)", ErrLost, h.target, l.FencingToken, h.Lock().FencingToken))
			return
		case err == nil:
			h.mu.Lock()
			h.lock, h.validUntil = l, sent.Add(h.ttl)
			h.lock.Secret = h.secret
			h.mu.Unlock()
			timer.Reset(time.Until(sent.Add(interval)))
		case h.ctx.Err() != nil:
			return
		case gone(err):
			h.cancel(fmt.Errorf("%w: %w", ErrLost, err))
			return
		default:
			// Not confirmed, not refused: try again, but look no later
			// than the cutoff, so that the loss is not declared late.
			timer.Reset(min(pause, time.Until(cutoff)))
		}
	}
}

// gone reports a refusal that retrying cannot change: the lock was
// released, expired and taken, or its secret no longer matches.
func gone(err error) bool {
	var apiErr *Error
	return errors.As(err, &apiErr) && apiErr.Status < 500 && apiErr.Status != http.StatusTooManyRequests
}

// Do runs fn while holding the lock, then releases it. fn's context ends if
// the lock may be lost (see Hold); fn should stop then. Do returns fn's
// error; if fn succeeded but the lock was lost meanwhile, an error wrapping
// ErrLost, since the work may not have been protected throughout. The TTL
// is WithTTL's, or DefaultHoldTTL.
func (c *Client) Do(ctx context.Context, t Target, fn func(ctx context.Context, l Lock) error, opts ...LockOption) error {
	ttl := callOpts(opts).ttl
	if ttl == 0 {
		ttl = DefaultHoldTTL
	}
	h, err := c.Hold(ctx, t, ttl, opts...)
	if err != nil {
		return err
	}
	// Release even when ctx is over: a lock left behind blocks others
	// until it expires. No point trying for longer than it lives.
	release := func() error {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.ttl)
		defer cancel()
		return h.Release(rctx)
	}
	finished := false
	defer func() {
		if !finished {
			// fn panicked (or called runtime.Goexit): stop refreshing
			// and free the lock on the way up.
			_ = release()
		}
	}()
	fnErr := fn(h.Context(), h.Lock())
	finished = true
	lost := h.Lost()
	relErr := release()
	switch {
	case fnErr != nil:
		return fnErr
	case lost != nil:
		return lost
	case relErr != nil && !errors.Is(relErr, locklock.ErrNotFound):
		return fmt.Errorf("client: the work succeeded but releasing %s failed (it expires by itself): %w", t, relErr)
	}
	return nil
}
