package locklock

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/locklock/locklock/internal/abbrev"
)

// Defaults of API.md §2.
const (
	DefaultTTL        = 30 * 24 * time.Hour
	DefaultMaxTTL     = 365 * 24 * time.Hour
	DefaultMaxWait    = 60 * time.Second
	MaxSecretLen      = 256
	DefaultListLimit  = 100
	MaxListLimit      = 1000
	defaultWaitPoll   = time.Second
	defaultSweepEvery = 30 * time.Second
)

// Default caps on long-poll waiters; see WithMaxWaiters and
// WithMaxWaitersPerLock.
//
// Every waiter holds a goroutine, a timer and, over HTTP, an open connection
// (a file descriptor) for up to the maximum wait. Ten thousand of them cost
// some tens of MB and fit a modestly raised descriptor limit, and are far more
// than one server of a lock service normally has waiting. The per-lock cap is
// a tenth of that, so that one hot lock cannot take every slot and shut out
// waits for other locks; and a FIFO queue deeper than a thousand is rarely of
// use: with the default 60 s maximum wait, its last waiter is served only if
// every holder before it keeps the lock for less than 60 ms.
const (
	DefaultMaxWaiters        = 10000
	DefaultMaxWaitersPerLock = 1000
)

// Service is the behaviour every transport shares: validation and defaults,
// secret hashing, judging expiry at the moment of each operation, idempotent
// re-acquire, long-poll waiting in FIFO order, and sweeping.
type Service struct {
	engine     Engine
	clock      Clock
	log        *slog.Logger
	defaultTTL time.Duration
	maxTTL     time.Duration
	maxWait    time.Duration
	waitPoll   time.Duration
	waits      *waitRegistry
	onAcquire  func(AcquireOutcome)
	onSlot     func(AcquireOutcome)

	maxLockDelay time.Duration

	hub       *hub         // nil when the engine reports no events
	history   EventHistory // the engine's, when it numbers events and reads them back
	watchers  watcherCaps
	retention int
}

// Option configures a Service.
type Option func(*Service)

// WithClock replaces the system clock (tests use a ManualClock).
func WithClock(c Clock) Option { return func(s *Service) { s.clock = c } }

// WithLogger sets the logger for background work (the sweeper).
func WithLogger(l *slog.Logger) Option { return func(s *Service) { s.log = l } }

// WithDefaultTTL sets the lifetime of a lock acquired without expires_in.
func WithDefaultTTL(d time.Duration) Option { return func(s *Service) { s.defaultTTL = d } }

// WithMaxTTL caps expires_in.
func WithMaxTTL(d time.Duration) Option { return func(s *Service) { s.maxTTL = d } }

// WithMaxWait caps wait.
func WithMaxWait(d time.Duration) Option { return func(s *Service) { s.maxWait = d } }

// WithMaxLockDelay caps lock_delay (default DefaultMaxLockDelay).
func WithMaxLockDelay(d time.Duration) Option { return func(s *Service) { s.maxLockDelay = d } }

// WithWaitPoll sets how often the first waiter on a lock looks again even
// without a wake-up, which covers releases made by other processes sharing
// the engine.
func WithWaitPoll(d time.Duration) Option { return func(s *Service) { s.waitPoll = d } }

// WithMaxWaiters caps the long-poll acquires waiting at the same time across
// the whole Service (default DefaultMaxWaiters); 0 means no cap. An acquire
// with a wait that the cap turns away still makes its one immediate attempt,
// so a free lock is granted as usual; only instead of waiting for a held lock
// it fails at once with ErrTooManyWaiters (HTTP 503 with Retry-After). The
// cap is exact: concurrent acquires never overshoot it. n must not be
// negative (WithMaxWaiters panics).
func WithMaxWaiters(n int) Option {
	if n < 0 {
		panic("locklock: WithMaxWaiters: negative cap")
	}
	return func(s *Service) { s.waits.maxTotal = n }
}

// WithMaxWaitersPerLock caps the long-poll acquires waiting at the same time
// for any one lock (default DefaultMaxWaitersPerLock); 0 means no cap. Beyond
// it, acquires behave as described for WithMaxWaiters. A per-lock cap above
// the total cap is allowed; the total cap then binds first. n must not be
// negative (WithMaxWaitersPerLock panics).
func WithMaxWaitersPerLock(n int) Option {
	if n < 0 {
		panic("locklock: WithMaxWaitersPerLock: negative cap")
	}
	return func(s *Service) { s.waits.maxPerLock = n }
}

// WithAcquireObserver has f called with the outcome of every Acquire, for
// metrics. f runs on the request's goroutine: it must be fast.
func WithAcquireObserver(f func(AcquireOutcome)) Option { return func(s *Service) { s.onAcquire = f } }

// NewService returns a Service over engine. The Service does not own the
// engine: closing it is the caller's job.
func NewService(engine Engine, opts ...Option) *Service {
	s := &Service{
		engine:     engine,
		clock:      SystemClock{},
		log:        slog.New(slog.DiscardHandler),
		defaultTTL: DefaultTTL,
		maxTTL:     DefaultMaxTTL,
		maxWait:    DefaultMaxWait,
		waitPoll:   defaultWaitPoll,
		waits:      newWaitRegistry(),

		maxLockDelay: DefaultMaxLockDelay,
		watchers:     watcherCaps{maxTotal: DefaultMaxWatchers, maxPerCaller: DefaultMaxWatchersPerCaller},
		retention:    DefaultEventRetention,
	}
	for _, o := range opts {
		o(s)
	}
	if src, ok := engine.(EventSource); ok {
		s.hub = newHub(s.retention)
		if pos := src.SetEventSink(s.hub.publish); !pos.IsZero() {
			s.history, _ = engine.(EventHistory)
			s.hub.startAt(pos, s.history != nil)
		} else if gate, ok := engine.(EventGate); ok {
			gate.SetEventGate(s.hub.quiet, s.hub.skip)
		}
	}
	return s
}

// now is the instant an operation is judged at. Millisecond precision is what
// the API shows and what every engine can store exactly.
func (s *Service) now() time.Time {
	return s.clock.Now().UTC().Truncate(time.Millisecond)
}

// AcquireRequest asks for a lock.
type AcquireRequest struct {
	ID ID
	// Secret, when not empty, is needed later to release or refresh the lock.
	Secret string
	// TTL is how long the lock lives; zero means the service default.
	TTL time.Duration
	// Wait is how long to wait for a held lock; zero fails at once.
	Wait time.Duration
	// Holder and Metadata describe the holder (API.md §8); empty: none.
	Holder   string
	Metadata map[string]string
	// LockDelay keeps others off the lock this long after it expires or is
	// revoked; whole seconds, zero for none.
	LockDelay time.Duration
}

// Acquire takes the lock. created is true when the lock was free and is now
// the caller's; false when the lock was already held with the same non-empty
// secret (a retried request), in which case nothing changed. A lock held by
// someone else gives a *HeldError once the wait (if any) has run out.
func (s *Service) Acquire(ctx context.Context, req AcquireRequest) (l Lock, created bool, err error) {
	var waited bool
	l, created, err = s.acquire(ctx, req, &waited)
	if s.onAcquire != nil {
		s.onAcquire(acquireOutcome(req, created, waited, err))
	}
	return l, created, err
}

func (s *Service) acquire(ctx context.Context, req AcquireRequest, waited *bool) (Lock, bool, error) {
	if err := req.ID.Validate(); err != nil {
		return Lock{}, false, err
	}
	if err := s.validateTerms(req.Secret, &req.TTL, req.Wait); err != nil {
		return Lock{}, false, err
	}
	if err := s.validateLabels(req); err != nil {
		return Lock{}, false, err
	}
	guard := NewGuard(req.Secret)
	if req.Wait == 0 {
		return s.tryAcquire(ctx, req, guard)
	}
	return s.waitAcquire(ctx, req, guard, waited)
}

// validateTerms checks what acquires of locks and slots share — the secret,
// the lifetime (zero becomes the default) and the wait.
func (s *Service) validateTerms(secret string, ttl *time.Duration, wait time.Duration) error {
	// On an acquire the secret is potentially new (it creates the lock
	// or slot when there is room), so the rules for new secrets apply up
	// front, to a retry too.
	if err := validateSecret(secret, ValidateNewSecret); err != nil {
		return err
	}
	if *ttl == 0 {
		*ttl = s.defaultTTL
	}
	if *ttl < time.Second || *ttl > s.maxTTL {
		return invalidf("expires_in must be between 1 and %d seconds", int64(s.maxTTL/time.Second))
	}
	if wait < 0 || wait > s.maxWait {
		return invalidf("wait must be between 0 and %d seconds", int64(s.maxWait/time.Second))
	}
	return nil
}

// acquireOutcome sorts an Acquire's result for metrics.
func acquireOutcome(req AcquireRequest, created, waited bool, err error) AcquireOutcome {
	switch {
	case err == nil:
		return grantOutcome(created, waited)
	case errors.Is(err, ErrHeld) && req.Wait > 0:
		return OutcomeTimedOut
	case errors.Is(err, ErrHeld):
		return OutcomeHeld
	case errors.Is(err, ErrDelayed):
		return OutcomeDelayed
	}
	return failedOutcome(err)
}

// grantOutcome sorts a successful acquire of a lock or a slot.
func grantOutcome(created, waited bool) AcquireOutcome {
	switch {
	case !created:
		return OutcomeReacquired
	case waited:
		return OutcomeWaited
	}
	return OutcomeGranted
}

// failedOutcome sorts the failures acquires of locks and slots share.
func failedOutcome(err error) AcquireOutcome {
	switch {
	case errors.Is(err, ErrTooManyWaiters):
		return OutcomeTooManyWaiters
	case errors.Is(err, ErrInvalidUUID), errors.Is(err, ErrInvalidName), errors.Is(err, ErrInvalidArgument):
		return OutcomeInvalid
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// The caller's context ended: the client hung up, or gave up.
		// An engine's own timeout surfaces as ErrUnavailable, not here.
		return OutcomeCanceled
	}
	return OutcomeFailed
}

func (s *Service) tryAcquire(ctx context.Context, req AcquireRequest, guard Guard) (Lock, bool, error) {
	now := s.now()
	cand := Lock{
		ID:         req.ID,
		AcquiredAt: now,
		ExpiresAt:  now.Add(req.TTL).Truncate(time.Millisecond),
		Guard:      guard,
		Holder:     req.Holder,
		Metadata:   req.Metadata,
		LockDelay:  req.LockDelay,
	}
	l, err := s.engine.TryAcquire(ctx, cand, now)
	var delayed *DelayedError
	if errors.As(err, &delayed) && reclaims(delayed.Lock, req.Secret) {
		// The lost holder's own secret passes the lock-delay that
		// followed its expiry (API.md §8). The token names that very
		// record, so a record replaced meanwhile (revoked, or taken and
		// lost again) is not passed by mistake.
		cand.Reclaims = delayed.Lock.Token
		l, err = s.engine.TryAcquire(ctx, cand, now)
	}
	if err == nil {
		l.ObservedAt = now
		return l, true, nil
	}
	if errors.As(err, &delayed) {
		delayed.Lock.ObservedAt = now
		return Lock{}, false, delayed
	}
	var held *HeldError
	if !errors.As(err, &held) {
		return Lock{}, false, err
	}
	held.Lock.ObservedAt = now
	// The same non-empty secret means this is the holder retrying: answer
	// with the lock as it is. The engine's snapshot was taken atomically, so
	// the holder did hold it at that instant.
	if req.Secret != "" && held.Lock.Guard.Protected() && held.Lock.Guard.Admits(req.Secret) {
		return held.Lock, false, nil
	}
	return Lock{}, false, held
}

// reclaims says whether secret may pass the lock-delay of ended: only after
// an expiry, not a revocation, and only with the lost lock's non-empty secret.
func reclaims(ended Lock, secret string) bool {
	return secret != "" && !ended.Revoked && ended.Guard.Protected() && ended.Guard.Admits(secret)
}

// validateLabels checks the fields of API.md §8 on an acquire.
func (s *Service) validateLabels(req AcquireRequest) error {
	if req.Holder != "" {
		if err := ValidateHolder(req.Holder); err != nil {
			return err
		}
	}
	if err := ValidateMetadata(req.Metadata); err != nil {
		return err
	}
	if req.LockDelay < 0 || req.LockDelay > s.maxLockDelay || req.LockDelay%time.Second != 0 {
		return invalidf("lock_delay must be a whole number of seconds between 0 and %d", int64(s.maxLockDelay/time.Second))
	}
	return nil
}

// Release frees the lock. A protected lock needs its secret; an unprotected
// one can be released by anyone.
func (s *Service) Release(ctx context.Context, id ID, secret string) (Lock, error) {
	l, err := s.lockStep(id, func(now time.Time) (Lock, error) {
		if err := validateSecret(secret, ValidateSecret); err != nil {
			return Lock{}, err
		}
		return s.engine.Release(ctx, id, now, admit(secret))
	})
	if err == nil {
		s.waits.notify(lockWait(id))
	}
	return l, err
}

// Revoke ends the lock whatever its secret: an operator's forced release
// (API.md §11). Whoever may do that is the caller's to decide. A lock-delay
// then starts as on expiry, and holds for the lock's own secret too.
func (s *Service) Revoke(ctx context.Context, id ID) (Lock, error) {
	l, err := s.lockStep(id, func(now time.Time) (Lock, error) { return s.engine.Revoke(ctx, id, now) })
	if err == nil {
		s.waits.notify(lockWait(id))
	}
	return l, err
}

// lockStep checks id, runs step at the instant the Service judges it at,
// and stamps the answer with that instant (an error says which lock).
func (s *Service) lockStep(id ID, step func(now time.Time) (Lock, error)) (Lock, error) {
	if err := id.Validate(); err != nil {
		return Lock{}, err
	}
	now := s.now()
	l, err := step(now)
	if err != nil {
		return Lock{}, describe(err, id)
	}
	l.ObservedAt = now
	return l, nil
}

// Refresh makes the lock expire ttl from now (zero: the default TTL), keeping
// its fencing token.
func (s *Service) Refresh(ctx context.Context, id ID, secret string, ttl time.Duration) (Lock, error) {
	return s.Patch(ctx, PatchRequest{ID: id, Secret: secret, TTL: ttl})
}

// PatchRequest changes a live lock (API.md §3 and §8). Holder and Metadata
// replace the lock's when set; TTL, when not zero, moves the expiry to TTL
// from now. A request that sets neither Holder nor Metadata refreshes with
// the default TTL when TTL is zero, as a plain refresh does; one that sets
// either leaves the expiry alone unless TTL is given.
type PatchRequest struct {
	ID     ID
	Secret string
	TTL    time.Duration
	// Holder, when not nil, replaces the holder (1 to MaxHolderLen bytes).
	Holder *string
	// Metadata, when SetMetadata, replaces the metadata; empty clears it.
	Metadata    map[string]string
	SetMetadata bool
}

// Patch applies req to the live lock, keeping its fencing token, and returns
// the lock as it is after.
func (s *Service) Patch(ctx context.Context, req PatchRequest) (Lock, error) {
	if err := req.ID.Validate(); err != nil {
		return Lock{}, err
	}
	ch, now, err := s.change(req)
	if err != nil {
		return Lock{}, err
	}
	l, err := s.engine.Refresh(ctx, req.ID, now, ch, admit(req.Secret))
	if err != nil {
		return Lock{}, describe(err, req.ID)
	}
	l.ObservedAt = now
	return l, nil
}

// change checks a patch of a lock or a slot and turns it into the Change an
// engine applies, judged at now.
func (s *Service) change(req PatchRequest) (ch Change, now time.Time, err error) {
	if err := validateSecret(req.Secret, ValidateSecret); err != nil {
		return Change{}, now, err
	}
	if req.Holder != nil {
		if err := ValidateHolder(*req.Holder); err != nil {
			return Change{}, now, err
		}
	}
	if err := ValidateMetadata(req.Metadata); err != nil {
		return Change{}, now, err
	}
	ttl := req.TTL
	if ttl == 0 && req.Holder == nil && !req.SetMetadata {
		ttl = s.defaultTTL
	}
	if ttl != 0 && (ttl < time.Second || ttl > s.maxTTL) {
		return Change{}, now, invalidf("expires_in must be between 1 and %d seconds", int64(s.maxTTL/time.Second))
	}
	now = s.now()
	ch = Change{Holder: req.Holder, Metadata: req.Metadata, SetMetadata: req.SetMetadata}
	if ttl != 0 {
		ch.ExpiresAt = now.Add(ttl).Truncate(time.Millisecond)
	}
	return ch, now, nil
}

// Get returns the live lock with id, or ErrNotFound.
func (s *Service) Get(ctx context.Context, id ID) (Lock, error) {
	return s.lockStep(id, func(now time.Time) (Lock, error) { return s.engine.Get(ctx, id, now) })
}

// ListRequest selects a page of locks.
type ListRequest struct {
	Namespace string
	Kind      Kind
	Prefix    string
	After     string
	Limit     int // zero: DefaultListLimit
}

// Page is one page of a listing. Next, when not empty, is the After of the
// following page.
type Page struct {
	Locks []Lock
	Next  string
}

// List returns live locks in name order.
func (s *Service) List(ctx context.Context, req ListRequest) (Page, error) {
	q, err := listQuery(req)
	if err != nil {
		return Page{}, err
	}
	now := s.now()
	locks, err := s.engine.List(ctx, q, now)
	if err != nil {
		return Page{}, err
	}
	var page Page
	if len(locks) > req.limit() {
		locks = locks[:req.limit()]
		page.Next = locks[len(locks)-1].Name
	}
	for i := range locks {
		locks[i].ObservedAt = now
	}
	page.Locks = locks
	return page, nil
}

// limit is the page size asked for.
func (req ListRequest) limit() int {
	if req.Limit == 0 {
		return DefaultListLimit
	}
	return req.Limit
}

// listQuery checks a listing and asks the engine for one more than the page
// holds, which tells whether a next page exists.
func listQuery(req ListRequest) (ListQuery, error) {
	if err := ValidateNamespace(req.Namespace); err != nil {
		return ListQuery{}, err
	}
	if req.Kind != KindUUID && req.Kind != KindKey {
		return ListQuery{}, invalidf("kind must be %q or %q", KindUUID, KindKey)
	}
	if n := req.limit(); n < 1 || n > MaxListLimit {
		return ListQuery{}, invalidf("limit must be between 1 and %d", MaxListLimit)
	}
	if len(req.Prefix) > MaxNameLen || len(req.After) > MaxNameLen {
		return ListQuery{}, invalidf("prefix and after are at most %d characters", MaxNameLen)
	}
	return ListQuery{
		Namespace: req.Namespace, Kind: req.Kind, Prefix: req.Prefix, After: req.After,
		Limit: req.limit() + 1,
	}, nil
}

// Sweep deletes expired locks now and returns how many went.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	return s.engine.Sweep(ctx, s.now())
}

// RunSweeper sweeps every interval (zero: 30s) until ctx is done. Expired
// locks are already treated as free by every operation; sweeping only
// reclaims their storage.
func (s *Service) RunSweeper(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = defaultSweepEvery
	}
	if s.hub != nil && !s.hub.storageNumbered() {
		// Expiry is only announced when an engine notices it: sweeping
		// often sends `expired` within a second, request or not. An
		// engine whose storage numbers events expires locks itself.
		interval = min(interval, expiryScan)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.clock.At(s.clock.Now().Add(interval)):
		}
		n, err := s.Sweep(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Warn("sweep failed", "err", err)
		case n > 0:
			s.log.Debug("swept expired locks", "removed", n)
		}
	}
}

// Ready reports whether the engine answers.
func (s *Service) Ready(ctx context.Context) error { return s.engine.Ping(ctx) }

// Waiters is how many long-poll acquires are waiting right now.
func (s *Service) Waiters() int { return int(s.waits.waiting.Load()) }

// StopWaiting answers every pending and future long-poll wait with
// ErrShuttingDown, so that a server can drain. Requests without wait are
// still served.
func (s *Service) StopWaiting() { s.waits.close() }

// admit is the allow callback for release and refresh.
func admit(secret string) func(Lock) error {
	return func(l Lock) error {
		if !l.Guard.Admits(secret) {
			if secret == "" {
				return fmt.Errorf("%w: lock %s is protected by a secret and none was given", ErrSecretMismatch, abbrev.String(l.Name))
			}
			return fmt.Errorf("%w: wrong secret for lock %s", ErrSecretMismatch, abbrev.String(l.Name))
		}
		return nil
	}
}

// validateSecret applies rule to a given secret; "" means none was given.
func validateSecret(secret string, rule func(string) error) error {
	if secret == "" {
		return nil
	}
	return rule(secret)
}

// describe turns an engine's ErrNotFound, or the *DelayedError of a lock
// that is gone but delayed, into a *NotFoundError that names the lock, so
// that the message a client sees says which lock and until when it is
// delayed.
func describe(err error, id ID) error {
	var (
		delayed  *DelayedError
		notFound *NotFoundError
	)
	switch {
	case errors.As(err, &delayed):
		return &NotFoundError{ID: id, DelayedUntil: delayed.Lock.DelayedUntil(), Revision: delayed.Lock.Revision}
	case errors.As(err, &notFound):
		nf := *notFound
		nf.ID = id
		return &nf
	case err == ErrNotFound:
		return &NotFoundError{ID: id}
	}
	return err
}
