package locklock

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/locklock/locklock/internal/abbrev"
)

// waitRegistry keeps one FIFO queue of waiters per lock. Only the first
// waiter of a queue tries to acquire; when it leaves (it got the lock, gave
// up, or its client went away) the next one is woken. Releases through the
// Service wake the first waiter at once; expiry wakes it by timer.
//
// The caps maxTotal and maxPerLock (0: none) bound how many may wait; they
// are checked and the waiter counted under mu, so concurrent enqueues never
// overshoot them.
type waitRegistry struct {
	// waiting counts waiters in all queues, so that the release path can
	// skip the mutex when nobody waits — the common case. It changes only
	// under mu.
	waiting atomic.Int64

	maxTotal, maxPerLock int // set by options before first use

	mu     sync.Mutex
	queues map[waitKey][]*waiter
	closed bool
	done   chan struct{}
}

type waiter struct {
	key  waitKey
	wake chan struct{} // buffered: a wake-up is never lost, never blocks
}

// waitKey names a queue: a lock's, or a semaphore's (a space of its own).
type waitKey struct {
	ID
	Semaphore bool
}

func lockWait(id ID) waitKey      { return waitKey{ID: id} }
func semaphoreWait(id ID) waitKey { return waitKey{ID: id, Semaphore: true} }

// what names the queue's lock or semaphore in messages.
func (k waitKey) what() string {
	if k.Semaphore {
		return "semaphore " + abbrev.String(k.Name)
	}
	return "lock " + abbrev.String(k.Name)
}

func newWaitRegistry() *waitRegistry {
	return &waitRegistry{
		queues:     make(map[waitKey][]*waiter),
		done:       make(chan struct{}),
		maxTotal:   DefaultMaxWaiters,
		maxPerLock: DefaultMaxWaitersPerLock,
	}
}

// enqueue adds a waiter at the end of key's queue, or refuses with an
// error wrapping ErrTooManyWaiters when a cap is reached.
func (r *waitRegistry) enqueue(key waitKey) (*waiter, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrShuttingDown
	}
	if n := len(r.queues[key]); r.maxPerLock > 0 && n >= r.maxPerLock {
		return nil, fmt.Errorf("%w: %d clients already wait for %s, the most allowed for one; retry later",
			ErrTooManyWaiters, n, key.what())
	}
	if n := r.waiting.Load(); r.maxTotal > 0 && n >= int64(r.maxTotal) {
		return nil, fmt.Errorf("%w: %d clients already wait for locks on this server, the most allowed; retry later",
			ErrTooManyWaiters, n)
	}
	w := &waiter{key: key, wake: make(chan struct{}, 1)}
	r.queues[key] = append(r.queues[key], w)
	r.waiting.Add(1)
	return w, nil
}

func (r *waitRegistry) isHead(w *waiter) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	q := r.queues[w.key]
	return len(q) > 0 && q[0] == w
}

// leave removes w; if w was first, the new first waiter is woken to try.
func (r *waitRegistry) leave(w *waiter) {
	r.mu.Lock()
	defer r.mu.Unlock()
	q := r.queues[w.key]
	for i, x := range q {
		if x != w {
			continue
		}
		q = append(q[:i], q[i+1:]...)
		r.waiting.Add(-1)
		if len(q) == 0 {
			delete(r.queues, w.key)
			return
		}
		r.queues[w.key] = q
		if i == 0 {
			q[0].signal()
		}
		return
	}
}

// notify wakes the first waiter in key's queue, if any.
func (r *waitRegistry) notify(key waitKey) {
	if r.waiting.Load() == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if q := r.queues[key]; len(q) > 0 {
		q[0].signal()
	}
}

// ahead is how many wait before w in its queue.
func (r *waitRegistry) ahead(w *waiter) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return max(slices.Index(r.queues[w.key], w), 0)
}

// queued is how many wait in key's queue.
func (r *waitRegistry) queued(key waitKey) int {
	if r.waiting.Load() == 0 {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.queues[key])
}

func (r *waitRegistry) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.closed = true
		close(r.done)
	}
}

func (w *waiter) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// waitAcquire queues behind earlier waiters for the same lock and tries
// whenever it is first and the lock may have become free.
// *waited is set when the lock was granted after waiting, not at once.
func (s *Service) waitAcquire(ctx context.Context, req AcquireRequest, guard Guard, waited *bool) (Lock, bool, error) {
	// The holder retrying its own acquire must get its lock back (the
	// idempotent 200) rather than queue behind waiters for itself.
	if req.Secret != "" {
		if l, err := s.Get(ctx, req.ID); err == nil && l.Guard.Protected() && l.Guard.Admits(req.Secret) {
			return l, false, nil
		}
	}
	// The deadline is fixed before queueing, so that once a waiter is
	// counted (Waiters) its deadline no longer depends on scheduling.
	deadline := s.clock.At(s.now().Add(req.Wait))
	w, err := s.waits.enqueue(lockWait(req.ID))
	if errors.Is(err, ErrTooManyWaiters) {
		return s.tryWithoutWaiting(ctx, req, guard, err)
	}
	if err != nil {
		return Lock{}, false, err
	}
	defer s.waits.leave(w)

	var (
		holder       Lock
		delayed      *DelayedError // the lock-delay that barred the last try
		expiry, poll <-chan time.Time
		gone         <-chan struct{}
		watch        watchScope
		timedOut     bool
	)
	defer watch.stop()
	watcher, _ := s.engine.(ReleaseWatcher)
	// slept counts the times this waiter blocked below. A grant before the
	// first is "at once"; any later one came after waiting — also for a
	// waiter that queued behind others and won on its first try as head.
	for slept := 0; ; slept++ {
		// The first waiter tries whenever the lock may have come free —
		// and once more at its deadline, since a lock whose TTL ends
		// exactly then is free.
		if s.waits.isHead(w) {
			l, created, err := s.tryAcquire(ctx, req, guard)
			var held *HeldError
			switch {
			case err == nil:
				*waited = slept > 0
				return s.deliver(ctx, l, created)
			case errors.As(err, &delayed):
				// A lock-delay ends at a known time, and no
				// release elsewhere can end it sooner: no watch.
				holder, gone = Lock{}, nil
				watch.stop()
				expiry = s.clock.At(delayed.Lock.DelayedUntil())
				poll = s.clock.At(delayed.Lock.ObservedAt.Add(s.waitPoll))
			case !errors.As(err, &held):
				return Lock{}, false, err
			default:
				holder, delayed = held.Lock, nil
				// The expiry timer is a hint: an engine that keeps
				// its own time may free the lock a little after
				// expires_at, and a timer already due would only
				// spin.
				expiry = nil
				if holder.ExpiresAt.After(holder.ObservedAt) {
					expiry = s.clock.At(holder.ExpiresAt)
				}
				poll = s.clock.At(holder.ObservedAt.Add(s.waitPoll))
				if watcher != nil {
					gone = watcher.WatchRelease(watch.renew(ctx), holder)
				}
			}
		}
		if timedOut && delayed != nil {
			delayed.Lock.ObservedAt = s.now()
			return Lock{}, false, delayed
		}
		if timedOut {
			return Lock{}, false, s.waitTimedOut(ctx, req.ID, holder)
		}
		select {
		case <-w.wake:
		case <-gone:
		case <-expiry:
		case <-poll:
		case <-deadline:
			timedOut = true
		case <-ctx.Done():
			return Lock{}, false, ctx.Err()
		case <-s.waits.done:
			return Lock{}, false, ErrShuttingDown
		}
	}
}

// tryWithoutWaiting serves an acquire the waiter caps turned away: the caps
// only refuse waiting, so it still makes the one immediate attempt a request
// without wait makes, and a free lock is granted. Only a held lock gives
// refused (ErrTooManyWaiters) rather than a *HeldError, telling the client
// that waiting was not possible rather than that it waited in vain.
func (s *Service) tryWithoutWaiting(ctx context.Context, req AcquireRequest, guard Guard, refused error) (Lock, bool, error) {
	l, created, err := s.tryAcquire(ctx, req, guard)
	if errors.Is(err, ErrHeld) {
		return Lock{}, false, refused
	}
	return l, created, err
}

// watchScope bounds one ReleaseWatcher watch: renewing it stops the last.
type watchScope struct{ cancel context.CancelFunc }

func (w *watchScope) renew(ctx context.Context) context.Context {
	w.stop()
	ctx, w.cancel = context.WithCancel(ctx)
	return ctx
}

func (w *watchScope) stop() {
	if w.cancel != nil {
		w.cancel()
	}
}

// deliver hands a lock acquired for a waiter over, unless its client went
// away meanwhile: then nobody would ever release the lock, so it is released
// again at once.
func (s *Service) deliver(ctx context.Context, l Lock, created bool) (Lock, bool, error) {
	if created && ctx.Err() != nil {
		s.abandon(l)
		return Lock{}, false, ctx.Err()
	}
	return l, created, nil
}

// waitTimedOut reports the holder as last seen; a waiter that never reached
// the head of the queue looks it up.
func (s *Service) waitTimedOut(ctx context.Context, id ID, holder Lock) error {
	if holder.ExpiresAt.IsZero() {
		if l, err := s.Get(ctx, id); err == nil {
			holder = l
		}
	}
	// The holder was seen up to a poll interval ago; what it has left is
	// judged now, so Retry-After is not overstated.
	holder.ObservedAt = s.now()
	return &HeldError{Lock: holder}
}

// abandon releases a lock acquired for a waiter that is gone, if it is still
// the same grant (same token).
func (s *Service) abandon(l Lock) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := s.engine.Release(ctx, l.ID, s.now(), func(cur Lock) error {
		if cur.Token != l.Token {
			return ErrNotFound
		}
		return nil
	})
	if err == nil {
		s.waits.notify(lockWait(l.ID))
	} else if !errors.Is(err, ErrNotFound) {
		s.log.Warn("could not release a lock abandoned by its waiter", "lock", abbrev.String(l.ID.String()), "err", err)
	}
}
