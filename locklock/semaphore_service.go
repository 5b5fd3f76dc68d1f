package locklock

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/locklock/locklock/internal/abbrev"
)

// ErrNoSemaphores: the engine does not implement SemaphoreEngine, so no
// semaphore can be used (a transport answers 503).
var ErrNoSemaphores = fmt.Errorf("%w: this server's engine stores no semaphores", ErrUnavailable)

// SlotRequest asks for a slot of a semaphore (API.md §10).
type SlotRequest struct {
	ID ID
	// Limit is the semaphore's limit (1–MaxSemaphoreLimit); it must match
	// the live slots' while the semaphore has any.
	Limit int
	// Weight is how many units the slot holds (1–Limit); zero means 1.
	Weight int
	// Secret, TTL, Wait, Holder and Metadata are as for AcquireRequest.
	Secret   string
	TTL      time.Duration
	Wait     time.Duration
	Holder   string
	Metadata map[string]string
}

// semaphores is the engine's semaphore side.
func (s *Service) semaphores() (SemaphoreEngine, error) {
	if e, ok := s.engine.(SemaphoreEngine); ok {
		return e, nil
	}
	return nil, ErrNoSemaphores
}

// AcquireSlot takes a slot. created is false when a live slot of the
// semaphore already has the same non-empty secret (a retried request): that
// slot is returned, unchanged. Waiting is first come, first served per
// semaphore on this Service: a request that does not fit yet holds back
// later ones, and one without wait fails with a *FullError while any wait.
func (s *Service) AcquireSlot(ctx context.Context, req SlotRequest) (sl Slot, created bool, err error) {
	a := slotAcquire{s: s, req: req}
	sl, created, err = a.run(ctx)
	if s.onSlot != nil {
		s.onSlot(slotOutcome(req, created, a.waited, err))
	}
	return sl, created, err
}

func (a *slotAcquire) run(ctx context.Context) (Slot, bool, error) {
	s := a.s
	eng, err := s.semaphores()
	if err != nil {
		return Slot{}, false, err
	}
	if err := s.validateSlotRequest(&a.req); err != nil {
		return Slot{}, false, err
	}
	req := a.req
	if req.Secret != "" {
		a.same = func(sl Slot) bool { return sl.Guard.Protected() && sl.Guard.Admits(req.Secret) }
	}
	a.eng, a.guard = eng, NewGuard(req.Secret)
	if req.Wait == 0 {
		if s.waits.queued(semaphoreWait(req.ID)) > 0 {
			return a.behindQueue(ctx, 0)
		}
		return a.try(ctx)
	}
	return a.wait(ctx)
}

// slotOutcome sorts an AcquireSlot's result for metrics, as acquireOutcome
// does a lock's.
func slotOutcome(req SlotRequest, created, waited bool, err error) AcquireOutcome {
	switch {
	case err == nil:
		return grantOutcome(created, waited)
	case errors.Is(err, ErrSemaphoreFull) && req.Wait > 0:
		return OutcomeTimedOut
	case errors.Is(err, ErrSemaphoreFull):
		return OutcomeFull
	case errors.Is(err, ErrLimitMismatch):
		return OutcomeLimitMismatch
	}
	return failedOutcome(err)
}

func (s *Service) validateSlotRequest(req *SlotRequest) error {
	if err := req.ID.Validate(); err != nil {
		return err
	}
	if req.Limit < 1 || req.Limit > MaxSemaphoreLimit {
		return invalidf("limit must be an integer between 1 and %d", MaxSemaphoreLimit)
	}
	if req.Weight == 0 {
		req.Weight = 1
	}
	if req.Weight < 1 || req.Weight > req.Limit {
		return invalidf("weight must be an integer between 1 and limit (%d)", req.Limit)
	}
	if err := s.validateTerms(req.Secret, &req.TTL, req.Wait); err != nil {
		return err
	}
	if req.Holder != "" {
		if err := ValidateHolder(req.Holder); err != nil {
			return err
		}
	}
	return ValidateMetadata(req.Metadata)
}

// slotAcquire is one AcquireSlot call.
type slotAcquire struct {
	s     *Service
	eng   SemaphoreEngine
	req   SlotRequest
	guard Guard
	same  func(Slot) bool
	// waited is set when the slot was granted after waiting, not at once.
	waited bool
}

// try makes one atomic attempt.
func (a *slotAcquire) try(ctx context.Context) (Slot, bool, error) {
	now := a.s.now()
	cand := Slot{
		Semaphore:  a.req.ID,
		ID:         NewSlotID(),
		Limit:      a.req.Limit,
		Weight:     a.req.Weight,
		AcquiredAt: now,
		ExpiresAt:  now.Add(a.req.TTL).Truncate(time.Millisecond),
		Guard:      a.guard,
		Holder:     a.req.Holder,
		Metadata:   a.req.Metadata,
	}
	sl, created, err := a.eng.TryAcquireSlot(ctx, cand, now, a.same)
	var full *FullError
	switch {
	case err == nil:
		sl.ObservedAt = now
		return sl, created, nil
	case errors.As(err, &full):
		full.ObservedAt = now
	}
	return Slot{}, false, err
}

// behindQueue answers a request that may not try because queued earlier
// requests wait (queued of them): a retry still gets its slot, a wrong
// limit its mismatch, anything else a *FullError saying why.
func (a *slotAcquire) behindQueue(ctx context.Context, queued int) (Slot, bool, error) {
	now := a.s.now()
	sem, err := a.eng.GetSemaphore(ctx, a.req.ID, now)
	if err != nil && !errors.Is(err, ErrSemaphoreNotFound) {
		return Slot{}, false, err
	}
	if err == nil {
		if sl, retry, err := AdmitSlot(sem.Slots, Slot{Semaphore: a.req.ID, Limit: a.req.Limit, Weight: a.req.Weight}, a.same); retry {
			sl.ObservedAt = now
			return sl, false, nil
		} else if errors.Is(err, ErrLimitMismatch) {
			return Slot{}, false, err
		}
	}
	if queued == 0 {
		queued = a.s.waits.queued(semaphoreWait(a.req.ID))
	}
	full := &FullError{ID: a.req.ID, Limit: a.req.Limit, InUse: sem.InUse, Weight: a.req.Weight, Queued: queued, ObservedAt: now}
	for _, sl := range sem.Slots {
		if full.FreesAt.IsZero() || sl.ExpiresAt.Before(full.FreesAt) {
			full.FreesAt = sl.ExpiresAt
		}
	}
	return Slot{}, false, full
}

// wait queues behind earlier waiters for the semaphore and tries whenever it
// is first and room may have come: a release through this Service, a slot's
// expiry, a release anywhere that the engine's watch reports
// (ReleaseWatcher), or every poll interval.
func (a *slotAcquire) wait(ctx context.Context) (Slot, bool, error) {
	s := a.s
	key := semaphoreWait(a.req.ID)
	// A retry gets its slot back at once rather than queue behind others.
	if a.same != nil && s.waits.queued(key) > 0 {
		if sl, created, err := a.behindQueue(ctx, 0); err == nil || !errors.Is(err, ErrSemaphoreFull) {
			return sl, created, err
		}
	}
	deadline := s.clock.At(s.now().Add(a.req.Wait))
	w, err := s.waits.enqueue(key)
	if errors.Is(err, ErrTooManyWaiters) {
		// The caps refuse only the waiting: the one immediate attempt
		// is still made when nobody is queued.
		if s.waits.queued(key) > 0 {
			return Slot{}, false, err
		}
		sl, created, terr := a.try(ctx)
		if errors.Is(terr, ErrSemaphoreFull) {
			return Slot{}, false, err
		}
		return sl, created, terr
	}
	if err != nil {
		return Slot{}, false, err
	}
	defer s.waits.leave(w)

	var (
		full         *FullError
		expiry, poll <-chan time.Time
		gone         <-chan struct{}
		watch        watchScope
		timedOut     bool
	)
	defer watch.stop()
	watcher, _ := s.engine.(ReleaseWatcher)
	// slept counts the times this waiter blocked below, as in waitAcquire.
	for slept := 0; ; slept++ {
		if s.waits.isHead(w) {
			sl, created, err := a.try(ctx)
			switch {
			case err == nil:
				if created && ctx.Err() != nil {
					s.abandonSlot(sl)
					return Slot{}, false, ctx.Err()
				}
				a.waited = slept > 0
				return sl, created, nil
			case !errors.As(err, &full):
				return Slot{}, false, err
			}
			expiry = nil
			if full.FreesAt.After(full.ObservedAt) {
				expiry = s.clock.At(full.FreesAt)
			}
			poll = s.clock.At(full.ObservedAt.Add(s.waitPoll))
			if watcher != nil {
				gone = watcher.WatchSlotRelease(watch.renew(ctx), full)
			}
		}
		if timedOut {
			if full != nil {
				full.ObservedAt = s.now()
				return Slot{}, false, full
			}
			// Never first: the earlier waiters are those still ahead
			// of it (queued would count this one too).
			if n := s.waits.ahead(w); n > 0 {
				return a.behindQueue(ctx, n)
			}
			continue // first just now: one last try above
		}
		select {
		case <-w.wake:
		case <-gone:
		case <-expiry:
		case <-poll:
		case <-deadline:
			timedOut = true
		case <-ctx.Done():
			return Slot{}, false, ctx.Err()
		case <-s.waits.done:
			return Slot{}, false, ErrShuttingDown
		}
	}
}

// abandonSlot releases a slot acquired for a waiter whose client is gone.
func (s *Service) abandonSlot(sl Slot) {
	eng, err := s.semaphores()
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := eng.ReleaseSlot(ctx, sl.Semaphore, sl.ID, s.now(), func(Slot) error { return nil }); err == nil {
		s.waits.notify(semaphoreWait(sl.Semaphore))
	} else if !errors.Is(err, ErrSlotNotFound) {
		s.log.Warn("could not release a slot abandoned by its waiter", "semaphore", abbrev.String(sl.Semaphore.String()), "err", err)
	}
}

// checkSlot validates a slot's address; a malformed slot id names no slot.
func checkSlot(id ID, slot string) error {
	if err := id.Validate(); err != nil {
		return err
	}
	if !ValidSlotID(slot) {
		return SlotNotFound(id, slot)
	}
	return nil
}

// ReleaseSlot frees a slot. A protected slot needs its secret.
func (s *Service) ReleaseSlot(ctx context.Context, id ID, slot, secret string) (Slot, error) {
	sl, err := s.slotStep(ctx, id, slot, func(eng SemaphoreEngine, now time.Time) (Slot, error) {
		if err := validateSecret(secret, ValidateSecret); err != nil {
			return Slot{}, err
		}
		return eng.ReleaseSlot(ctx, id, slot, now, admitSlot(secret))
	})
	if err == nil {
		s.waits.notify(semaphoreWait(id))
	}
	return sl, err
}

// RevokeSlot frees a slot whatever its secret: an operator's forced
// release (API.md §11). Slots have no lock-delay.
func (s *Service) RevokeSlot(ctx context.Context, id ID, slot string) (Slot, error) {
	sl, err := s.slotStep(ctx, id, slot, func(eng SemaphoreEngine, now time.Time) (Slot, error) {
		return eng.RevokeSlot(ctx, id, slot, now)
	})
	if err == nil {
		s.waits.notify(semaphoreWait(id))
	}
	return sl, err
}

// slotStep makes the checks of every operation on one slot, runs step at the
// instant the Service judges it at, and stamps the answer with that instant.
func (s *Service) slotStep(ctx context.Context, id ID, slot string, step func(eng SemaphoreEngine, now time.Time) (Slot, error)) (Slot, error) {
	eng, err := s.semaphores()
	if err != nil {
		return Slot{}, err
	}
	if err := checkSlot(id, slot); err != nil {
		return Slot{}, err
	}
	now := s.now()
	sl, err := step(eng, now)
	if err != nil {
		return Slot{}, err
	}
	sl.ObservedAt = now
	return sl, nil
}

// PatchSlot applies req (its ID the semaphore's) to the live slot, as Patch
// does to a lock.
func (s *Service) PatchSlot(ctx context.Context, slot string, req PatchRequest) (Slot, error) {
	eng, err := s.semaphores()
	if err != nil {
		return Slot{}, err
	}
	if err := checkSlot(req.ID, slot); err != nil {
		return Slot{}, err
	}
	ch, now, err := s.change(req)
	if err != nil {
		return Slot{}, err
	}
	sl, err := eng.RefreshSlot(ctx, req.ID, slot, now, ch, admitSlot(req.Secret))
	if err != nil {
		return Slot{}, err
	}
	sl.ObservedAt = now
	return sl, nil
}

// GetSlot returns the live slot, or an error wrapping ErrSlotNotFound.
func (s *Service) GetSlot(ctx context.Context, id ID, slot string) (Slot, error) {
	return s.slotStep(ctx, id, slot, func(eng SemaphoreEngine, now time.Time) (Slot, error) {
		return eng.GetSlot(ctx, id, slot, now)
	})
}

// SemaphoreRequest selects a page of a semaphore's slots, by token.
type SemaphoreRequest struct {
	ID ID
	// After is the token (decimal) the page starts after; "" the first.
	After string
	// Limit is the most slots on the page; zero: MaxSlotsPage.
	Limit int
}

// GetSemaphore returns the semaphore with a page of its live slots (by
// token), or an error wrapping ErrSemaphoreNotFound (with, from engines
// with revisions, the semaphore's ID and Revision).
func (s *Service) GetSemaphore(ctx context.Context, req SemaphoreRequest) (Semaphore, error) {
	eng, err := s.semaphores()
	if err != nil {
		return Semaphore{}, err
	}
	if err := req.ID.Validate(); err != nil {
		return Semaphore{}, err
	}
	if req.Limit == 0 {
		req.Limit = MaxSlotsPage
	}
	if req.Limit < 1 || req.Limit > MaxSlotsPage {
		return Semaphore{}, invalidf("limit must be between 1 and %d", MaxSlotsPage)
	}
	var after uint64
	if req.After != "" {
		if after, err = strconv.ParseUint(req.After, 10, 64); err != nil {
			return Semaphore{}, invalidf("after must be a slot's fencing token (a decimal number)")
		}
	}
	now := s.now()
	sem, err := eng.GetSemaphore(ctx, req.ID, now)
	if err != nil {
		if errors.Is(err, ErrSemaphoreNotFound) {
			// With the revision storage found it empty at, for a
			// stream's state (semaphoreState).
			return Semaphore{ID: req.ID, Revision: sem.Revision}, fmt.Errorf("%w: no semaphore %s (it has no live slot)", ErrSemaphoreNotFound, abbrev.String(req.ID.Name))
		}
		return Semaphore{}, err
	}
	sem.ObservedAt = now
	slots := sem.Slots[:0:0]
	for _, sl := range sem.Slots {
		if sl.Token > after {
			sl.ObservedAt = now
			slots = append(slots, sl)
		}
	}
	if len(slots) > req.Limit {
		slots = slots[:req.Limit]
		sem.Next = strconv.FormatUint(slots[len(slots)-1].Token, 10)
	}
	sem.Slots = slots
	return sem, nil
}

// SemaphorePage is one page of a namespace's semaphores.
type SemaphorePage struct {
	Semaphores []SemaphoreSummary
	Next       string
}

// ListSemaphores returns semaphores with live slots in name order.
func (s *Service) ListSemaphores(ctx context.Context, req ListRequest) (SemaphorePage, error) {
	eng, err := s.semaphores()
	if err != nil {
		return SemaphorePage{}, err
	}
	q, err := listQuery(req)
	if err != nil {
		return SemaphorePage{}, err
	}
	sems, err := eng.ListSemaphores(ctx, q, s.now())
	if err != nil {
		return SemaphorePage{}, err
	}
	var page SemaphorePage
	if len(sems) > req.limit() {
		sems = sems[:req.limit()]
		page.Next = sems[len(sems)-1].Name
	}
	page.Semaphores = sems
	return page, nil
}

// admitSlot is the allow callback for a slot's release and refresh.
func admitSlot(secret string) func(Slot) error {
	return func(sl Slot) error {
		if !sl.Guard.Admits(secret) {
			if secret == "" {
				return fmt.Errorf("%w: slot %s of semaphore %s is protected by a secret and none was given", ErrSecretMismatch, sl.ID, abbrev.String(sl.Semaphore.Name))
			}
			return fmt.Errorf("%w: wrong secret for slot %s of semaphore %s", ErrSecretMismatch, sl.ID, abbrev.String(sl.Semaphore.Name))
		}
		return nil
	}
}
