package locklock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/locklock/locklock/internal/abbrev"
)

// Default caps on open event streams (API.md §9); see WithMaxWatchers.
const (
	DefaultMaxWatchers          = 10000
	DefaultMaxWatchersPerCaller = 100
)

// expiryScan is how often a Service whose engine reports events sweeps, so
// that `expired` goes out within a second of a lock's expiry even when no
// request touches the lock.
const expiryScan = 500 * time.Millisecond

// ErrTooManyWatchers: the server, or the caller, has as many event streams
// open as allowed. It wraps ErrUnavailable: the HTTP answer is 503.
var ErrTooManyWatchers = fmt.Errorf("%w: too many event streams", ErrUnavailable)

// ErrNoEvents: the engine reports no events, so nothing can be watched.
var ErrNoEvents = fmt.Errorf("%w: this storage engine reports no events", ErrUnavailable)

// WithMaxWatchers caps the event streams open at once on the Service
// (default DefaultMaxWatchers); 0 means no cap.
func WithMaxWatchers(n int) Option { return func(s *Service) { s.watchers.maxTotal = n } }

// WithMaxWatchersPerCaller caps the event streams one caller (an API key,
// or an anonymous client's address) has open at once (default
// DefaultMaxWatchersPerCaller); 0 means no cap.
func WithMaxWatchersPerCaller(n int) Option { return func(s *Service) { s.watchers.maxPerCaller = n } }

// WithEventRetention sets how many recent events the Service keeps for
// streams that resume (default DefaultEventRetention).
func WithEventRetention(n int) Option { return func(s *Service) { s.retention = n } }

// watcherCaps counts open streams per caller.
type watcherCaps struct {
	maxTotal, maxPerCaller int

	mu       sync.Mutex
	total    int
	byCaller map[string]int
}

func (c *watcherCaps) take(caller string) (release func(), err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.maxTotal > 0 && c.total >= c.maxTotal {
		return nil, fmt.Errorf("%w: %d streams are open on this server, the most allowed; retry later", ErrTooManyWatchers, c.total)
	}
	if n := c.byCaller[caller]; c.maxPerCaller > 0 && n >= c.maxPerCaller {
		return nil, fmt.Errorf("%w: you have %d streams open, the most allowed for one caller; close one first", ErrTooManyWatchers, n)
	}
	if c.byCaller == nil {
		c.byCaller = make(map[string]int)
	}
	c.total++
	c.byCaller[caller]++
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.total--
			if c.byCaller[caller]--; c.byCaller[caller] == 0 {
				delete(c.byCaller, caller)
			}
		})
	}, nil
}

// Watchers is how many event streams are open right now.
func (s *Service) Watchers() int {
	s.watchers.mu.Lock()
	defer s.watchers.mu.Unlock()
	return s.watchers.total
}

// WatchRequest opens an event stream (API.md §9).
type WatchRequest struct {
	Filter Filter
	// From is the position to resume after (Last-Event-ID); "" starts a
	// new stream.
	From string
	// Caller names who opens the stream, for the per-caller cap.
	Caller string
}

// Watch is an open event stream.
type Watch struct {
	sub     *Subscription
	release func()

	// Resumed says From was resumed from: the missed events follow, and
	// nothing is sent before them (no state, no ready).
	Resumed bool
	// Reset says From was given but cannot be resumed from: the stream
	// starts afresh, and the client must be told (event: reset).
	Reset bool
	// State is, for a one-lock stream that starts afresh, the lock at At
	// (nil: no lock).
	State *Lock
	// SemaphoreState is, for a one-semaphore stream that starts afresh,
	// the semaphore at At with its first page of slots (nil: no live
	// slot).
	SemaphoreState *Semaphore
	// At is the position the stream starts after.
	At Position
}

// Next waits for events; see Subscription.Next.
func (w *Watch) Next(ctx context.Context) ([]*Event, error) { return w.sub.Next(ctx) }

// Ready and Take read the stream without a context per wait; see
// Subscription.Ready and Subscription.Take.
func (w *Watch) Ready() <-chan struct{} { return w.sub.Ready() }

// Filling is signalled when many events wait; see Subscription.Filling.
func (w *Watch) Filling() <-chan struct{} { return w.sub.Filling() }

// Take returns the events queued now; see Subscription.Take.
func (w *Watch) Take() ([]*Event, error) { return w.sub.Take() }

// Close ends the stream.
func (w *Watch) Close() {
	w.sub.Close()
	w.release()
}

// Watch opens an event stream for req.Filter. A one-lock stream that
// starts afresh carries the lock's state; events already reflected in it
// are not sent again. A one-semaphore stream carries the semaphore's, its
// slots' events judged slot by slot (Subscription.settleSlots).
func (s *Service) Watch(ctx context.Context, req WatchRequest) (*Watch, error) {
	if s.hub == nil {
		return nil, ErrNoEvents
	}
	if err := validateFilter(req.Filter); err != nil {
		return nil, err
	}
	// A stream of storage that cannot answer would show nothing and
	// promise more: refuse it, as other requests are refused (503).
	if err := s.engine.Ping(ctx); err != nil {
		return nil, err
	}
	release, err := s.watchers.take(req.Caller)
	if err != nil {
		return nil, err
	}
	w := &Watch{release: release}
	var from Position
	if req.From != "" {
		if from, err = ParsePosition(req.From); err != nil {
			w.Reset = true
		}
	}
	sub, resumed, at, err := s.hub.subscribe(req.Filter, from)
	if err != nil {
		release()
		return nil, ErrShuttingDown
	}
	if rp := sub.replay; rp != nil {
		// The hub does not retain this part of the stream; storage does.
		evs, err := s.history.EventsAfter(ctx, req.Filter, rp.from, rp.to)
		switch {
		case err == nil:
			sub.prepend(evs)
		case errors.Is(err, ErrHistoryGone):
			sub.Close()
			if sub, resumed, at, err = s.hub.subscribe(req.Filter, Position{}); err != nil {
				release()
				return nil, ErrShuttingDown
			}
		default:
			sub.Close()
			release()
			return nil, err
		}
	}
	w.sub, w.At, w.Resumed = sub, at, resumed
	w.Reset = w.Reset || req.From != "" && !resumed
	if resumed || req.Filter.ID == nil {
		return w, nil
	}
	if req.Filter.Semaphore {
		return s.semaphoreState(ctx, w, at)
	}
	l, err := s.Get(ctx, *req.Filter.ID)
	var (
		notFound *NotFoundError
		readAt   int64 // the storage revision the state was read at (etcd)
	)
	switch {
	case err == nil:
		w.State, readAt = &l, l.Revision
	case errors.As(err, &notFound):
		readAt = notFound.Revision
	case !errors.Is(err, ErrNotFound):
		w.Close()
		return nil, err
	}
	w.At = sub.settle(lockOutcomeIs(w.State), readAt, at)
	return w, nil
}

// semaphoreState reads a one-semaphore stream's state after subscribing.
func (s *Service) semaphoreState(ctx context.Context, w *Watch, at Position) (*Watch, error) {
	sem, err := s.GetSemaphore(ctx, SemaphoreRequest{ID: *w.sub.filter.ID})
	switch {
	case err == nil:
		w.SemaphoreState = &sem
	case !errors.Is(err, ErrSemaphoreNotFound):
		w.Close()
		return nil, err
	}
	// sem.Revision is set when not found too: the revision storage found
	// no slot at, whose events (a release, say) are in the state as well.
	w.At = w.sub.settleSlots(w.SemaphoreState, sem.Revision, at)
	return w, nil
}

func validateFilter(f Filter) error {
	if f.ID != nil {
		return f.ID.Validate()
	}
	if err := ValidateNamespace(f.Namespace); err != nil {
		return err
	}
	if f.Kind != "" && f.Kind != KindUUID && f.Kind != KindKey {
		return invalidf("kind must be %q or %q", KindUUID, KindKey)
	}
	if f.Prefix != "" && f.Kind == "" {
		return invalidf("prefix needs kind")
	}
	if len(f.Prefix) > MaxNameLen {
		return invalidf("prefix %q is longer than %d characters", abbrev.String(f.Prefix), MaxNameLen)
	}
	return nil
}

// StopWatching ends every event stream, and refuses new ones, so that a
// server can shut down: clients resume elsewhere.
func (s *Service) StopWatching() {
	if s.hub != nil {
		s.hub.close()
	}
}
