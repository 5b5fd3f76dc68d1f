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

// errReleased ends a keeper's context after Release.
var errReleased = errors.New("released by its holder")

// keeper keeps a lock or a slot (T) alive in the background: what Held and
// HeldSlot share. Its Context ends as soon as what it holds may be lost,
// before anyone else can take it.
type keeper[T any] struct {
	c      *Client
	what   string // ops.what
	ttl    time.Duration
	margin time.Duration
	ops    keeperOps[T]

	ctx     context.Context
	cancel  context.CancelCauseFunc
	done    chan struct{} // closed when the refresher has stopped
	recheck chan struct{} // a refresh is due at once (see keeperOps.watch)
	events  events        // what the watcher reads

	mu         sync.Mutex
	held       T
	validUntil time.Time // it lasts at least until then, by our clock
}

// keeperOps are the calls in which a lock and a slot differ.
type keeperOps[T any] struct {
	// what names what is held, for messages: "uuid/…", "slot … of
	// semaphore key/…".
	what string
	// token is the fencing token of a T.
	token func(T) uint64
	// refresh extends what is held by ttl, with its secret.
	refresh func(ctx context.Context, ttl time.Duration) (T, error)
	// release frees it, with its secret.
	release func(ctx context.Context) error
	// notFound is the sentinel of an answer that says it is gone.
	notFound error
	// watch opens the events that report its loss. acquired spans the
	// acquire that confirmed it held; recheck asks for a refresh at once,
	// for when the events cannot tell whether it is still held.
	watch func(ctx context.Context, acquired span, recheck func()) events
	// loss says why ev means that what has token ours is lost ("" if it
	// does not), and the sentinel a refresh would have been told.
	loss func(ev Event, ours uint64) (string, error)
	// keep copies what the server does not return (the secret, Created)
	// from the held T to a refreshed one.
	keep func(from, to T) T
}

// events is what a keeper's watcher reads: a lock's own Stream, or a
// slot's share of its semaphore's (slotSub).
type events interface {
	Next() (Event, error)
	Close()
}

// span is when a request was sent and when its answer came: the server
// acted on it at some moment in between.
type span struct{ sent, answered time.Time }

// holdTiming rounds the TTL up to whole seconds and checks it and the
// safety margin (default: a fifth of the TTL).
func holdTiming(ttl, margin time.Duration) (time.Duration, time.Duration, error) {
	ttl = time.Duration(wholeSeconds(ttl)) * time.Second
	if ttl <= 0 {
		return 0, 0, fmt.Errorf("%w: hold needs a TTL of at least one second", locklock.ErrInvalidArgument)
	}
	if margin == 0 {
		margin = ttl / 5
	}
	if margin < 0 || margin >= ttl*2/3 {
		return 0, 0, fmt.Errorf("%w: safety margin %v must be below two thirds of the TTL %v", locklock.ErrInvalidArgument, margin, ttl)
	}
	return ttl, margin, nil
}

// startKeeper acquires (acquire takes a TTL and reports whether this call
// created what it got), makes sure a full TTL is counted from before the
// work starts, and starts the refresher and the watcher. ops binds what
// was acquired (its secret, its slot id).
func startKeeper[T any](ctx context.Context, c *Client, ttl, margin time.Duration,
	acquire func(ctx context.Context, ttl time.Duration) (T, bool, error), ops func(T) keeperOps[T],
) (*keeper[T], error) {
	sent := time.Now()
	v, created, err := acquire(ctx, ttl)
	if err != nil {
		return nil, err
	}
	acquired := span{sent, time.Now()}
	k := &keeper[T]{
		c: c, ttl: ttl, margin: margin, ops: ops(v), held: v, validUntil: sent.Add(ttl),
		done: make(chan struct{}), recheck: make(chan struct{}, 1),
	}
	k.what = k.ops.what
	if !created || time.Since(sent) >= ttl/3 {
		// It does not surely last a full TTL from sent with the first
		// refresh due at sent+ttl/3: it was ours already (a secret held
		// before: it runs out when it was going to, perhaps in a
		// moment), or a wait used up the time sent+ttl promises. Refresh
		// it now, before the work starts, to count a full TTL afresh.
		sent = time.Now()
		r, err := k.ops.refresh(ctx, ttl)
		if err != nil {
			if created {
				// Ours, but not to be held: do not leave it blocking others.
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ttl)
				_ = k.ops.release(rctx)
				cancel()
			}
			return nil, fmt.Errorf("client: hold %s: refresh after the acquire: %w", k.what, err)
		}
		k.held, k.validUntil = k.ops.keep(v, r), sent.Add(ttl)
	}
	k.ctx, k.cancel = context.WithCancelCause(ctx)
	k.events = k.ops.watch(k.ctx, acquired, k.checkNow)
	go k.refresh(sent)
	go k.watch()
	return k, nil
}

// checkNow has the refresher refresh at once: a refused refresh is the
// one answer that says it is gone when the events cannot.
func (k *keeper[T]) checkNow() {
	select {
	case k.recheck <- struct{}{}:
	default: // one is due already
	}
}

// watch ends the Context the moment the server reports the loss — expiry,
// a forced release, a release or a takeover by someone else — rather than
// at the next refresh, ttl/3 away. It is a second line: when the stream
// cannot be had (an engine without events, a refused stream), is reset, or
// a slot's share of it is cut off (slotSub), the refreshes still find the
// loss.
func (k *keeper[T]) watch() {
	w := k.events
	defer w.Close()
	ours := k.ops.token(k.current())
	for {
		ev, err := w.Next()
		if err != nil {
			return // it ended, or the server refused the stream
		}
		// The cause wraps what a refresh would have been told: it is gone
		// (not found), or someone else holds it.
		why, kind := k.ops.loss(ev, ours)
		if why != "" && k.ctx.Err() == nil {
			k.cancel(fmt.Errorf("%w: %s %s (ours had fencing token %d): %w", ErrLost, k.what, why, ours, kind))
			return
		}
	}
}

// current is what is held, as last confirmed by the server.
func (k *keeper[T]) current() T {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.held
}

// ValidUntil: see Held.ValidUntil.
func (k *keeper[T]) ValidUntil() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.validUntil
}

// Lost: see Held.Lost.
func (k *keeper[T]) Lost() error {
	if err := context.Cause(k.ctx); errors.Is(err, ErrLost) {
		return err
	}
	return nil
}

// Release: see Held.Release.
func (k *keeper[T]) Release(ctx context.Context) error {
	k.cancel(errReleased)
	<-k.done
	return k.ops.release(ctx)
}

// refresh keeps it alive until the context ends.
func (k *keeper[T]) refresh(acquired time.Time) {
	defer close(k.done)
	interval := k.ttl / 3
	pause := max(k.ttl/20, 50*time.Millisecond) // between failed attempts
	timer := time.NewTimer(time.Until(acquired.Add(interval)))
	defer timer.Stop()
	ours := k.ops.token(k.current())
	for {
		select {
		case <-k.ctx.Done():
			return
		case <-timer.C:
		case <-k.recheck:
		}
		cutoff := k.ValidUntil().Add(-k.margin)
		if !time.Now().Before(cutoff) {
			k.cancel(fmt.Errorf("%w: no refresh of %s confirmed; stopped %v before it would lapse", ErrLost, k.what, k.margin))
			return
		}
		sent := time.Now()
		rctx, cancel := context.WithDeadline(k.ctx, cutoff)
		v, err := k.ops.refresh(rctx, k.ttl)
		cancel()
		switch {
		case err == nil && k.ops.token(v) != ours:
			// An unprotected lock can be refreshed by anyone: this one was
			// released and taken by someone else in between.
			k.cancel(fmt.Errorf("%w: %s passed to another holder (fencing token %d, ours %d)", ErrLost, k.what, k.ops.token(v), ours))
			return
		case err == nil:
			k.mu.Lock()
			k.held, k.validUntil = k.ops.keep(k.held, v), sent.Add(k.ttl)
			k.mu.Unlock()
			timer.Reset(time.Until(sent.Add(interval)))
		case k.ctx.Err() != nil:
			return
		case gone(err):
			k.cancel(fmt.Errorf("%w: %w", ErrLost, err))
			return
		default:
			// Not confirmed, not refused: try again, but look no later
			// than the cutoff, so that the loss is not declared late.
			timer.Reset(min(pause, time.Until(cutoff)))
		}
	}
}

// gone reports a refusal that retrying cannot change: it was released,
// expired and taken, or its secret no longer matches.
func gone(err error) bool {
	var apiErr *Error
	return errors.As(err, &apiErr) && apiErr.Status < 500 && apiErr.Status != http.StatusTooManyRequests
}

// run is Do's part after Hold: fn under k's context, then the release. It
// returns fn's error; if fn succeeded but what was held was lost
// meanwhile, an error wrapping ErrLost, since the work may not have been
// protected throughout.
func (k *keeper[T]) run(ctx context.Context, fn func(ctx context.Context, v T) error) error {
	// Release even when ctx is over: one left behind blocks others until
	// it expires. No point trying for longer than it lives.
	release := func() error {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), k.ttl)
		defer cancel()
		return k.Release(rctx)
	}
	finished := false
	defer func() {
		if !finished {
			// fn panicked (or called runtime.Goexit): stop refreshing
			// and free it on the way up.
			_ = release()
		}
	}()
	fnErr := fn(k.ctx, k.current())
	finished = true
	lost := k.Lost()
	relErr := release()
	switch {
	case fnErr != nil:
		return fnErr
	case lost != nil:
		return lost
	case relErr != nil && !errors.Is(relErr, k.ops.notFound):
		return fmt.Errorf("client: the work succeeded but releasing %s failed (it expires by itself): %w", k.what, relErr)
	}
	return nil
}

// holdTTL is Do's TTL: WithTTL's, or DefaultHoldTTL.
func holdTTL(o callOptions) time.Duration {
	if o.ttl == 0 {
		return DefaultHoldTTL
	}
	return o.ttl
}
