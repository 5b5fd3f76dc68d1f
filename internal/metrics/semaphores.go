package metrics

import (
	"context"
	"time"

	"github.com/locklock/locklock/locklock"
)

// instrumentedSlots times a SemaphoreEngine's operations, as instrumented
// does an Engine's, and counts slot releases.
type instrumentedSlots struct {
	e locklock.SemaphoreEngine
	m *Metrics
}

func (s *instrumentedSlots) observe(op string, start time.Time, err error) {
	s.m.engineOps.WithLabelValues(op, result(err)).Observe(time.Since(start).Seconds())
}

func (s *instrumentedSlots) TryAcquireSlot(ctx context.Context, cand locklock.Slot, now time.Time, same func(locklock.Slot) bool) (locklock.Slot, bool, error) {
	start := time.Now()
	sl, created, err := s.e.TryAcquireSlot(ctx, cand, now, same)
	s.observe("try_acquire_slot", start, err)
	return sl, created, err
}

func (s *instrumentedSlots) GetSemaphore(ctx context.Context, id locklock.ID, now time.Time) (locklock.Semaphore, error) {
	start := time.Now()
	sem, err := s.e.GetSemaphore(ctx, id, now)
	s.observe("get_semaphore", start, err)
	return sem, err
}

func (s *instrumentedSlots) GetSlot(ctx context.Context, id locklock.ID, slot string, now time.Time) (locklock.Slot, error) {
	start := time.Now()
	sl, err := s.e.GetSlot(ctx, id, slot, now)
	s.observe("get_slot", start, err)
	return sl, err
}

// ReleaseSlot counts every slot released, by its holder or given back for
// a waiter whose client went away: the engine's one place for both.
func (s *instrumentedSlots) ReleaseSlot(ctx context.Context, id locklock.ID, slot string, now time.Time, allow func(locklock.Slot) error) (locklock.Slot, error) {
	start := time.Now()
	sl, err := s.e.ReleaseSlot(ctx, id, slot, now, allow)
	s.observe("release_slot", start, err)
	if err == nil {
		s.m.slotReleases.Inc()
	}
	return sl, err
}

// RevokeSlot counts a forced release as a slot released, too.
func (s *instrumentedSlots) RevokeSlot(ctx context.Context, id locklock.ID, slot string, now time.Time) (locklock.Slot, error) {
	start := time.Now()
	sl, err := s.e.RevokeSlot(ctx, id, slot, now)
	s.observe("revoke_slot", start, err)
	if err == nil {
		s.m.slotReleases.Inc()
	}
	return sl, err
}

func (s *instrumentedSlots) RefreshSlot(ctx context.Context, id locklock.ID, slot string, now time.Time, ch locklock.Change, allow func(locklock.Slot) error) (locklock.Slot, error) {
	start := time.Now()
	sl, err := s.e.RefreshSlot(ctx, id, slot, now, ch, allow)
	s.observe("refresh_slot", start, err)
	return sl, err
}

func (s *instrumentedSlots) ListSemaphores(ctx context.Context, q locklock.ListQuery, now time.Time) ([]locklock.SemaphoreSummary, error) {
	start := time.Now()
	sums, err := s.e.ListSemaphores(ctx, q, now)
	s.observe("list_semaphores", start, err)
	return sums, err
}

// SlotDone counts a slot acquire's outcome; give it to the Service with
// locklock.WithSlotObserver.
func (m *Metrics) SlotDone(o locklock.AcquireOutcome) {
	m.slotAcquires.WithLabelValues(string(o)).Inc()
}

// A method missing here would hide semaphores from every wrapped engine
// (Engine's type switch), not fail to compile: say so at compile time.
var _ locklock.SemaphoreEngine = (*instrumentedSlots)(nil)
