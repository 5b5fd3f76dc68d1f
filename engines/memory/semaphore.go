package memory

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/locklock/locklock/locklock"
)

var _ locklock.SemaphoreEngine = (*Engine)(nil)

// Semaphores live beside the locks, in the shard of their ID (a map of its
// own: a lock and a semaphore may share an ID), and take their tokens from
// the shard's counter, so tokens rise per semaphore as they do per lock.
// Slots' events are reported under the shard's mutex, as locks' are.
// Semaphores are few next to locks and their slots small in number, so
// they are plain slices rather than the lock store's slab.

// semaphore is one semaphore's live slots, in token order (the order they
// were granted in).
type semaphore struct {
	slots []locklock.Slot
}

// semaphore returns id's semaphore with the slots expired at now removed —
// in this step, so that no later step carrying an earlier clock reading
// finds them alive again —, or nil when it has no live slot.
func (s *shard) semaphore(id locklock.ID, now time.Time) *semaphore {
	sem := s.sems[id]
	if sem == nil {
		return nil
	}
	sem.slots = slices.DeleteFunc(sem.slots, func(sl locklock.Slot) bool {
		if sl.Live(now) {
			return false
		}
		s.emitSlot(locklock.EventExpired, sl.ExpiresAt, sl)
		return true
	})
	if len(sem.slots) == 0 {
		delete(s.sems, id)
		return nil
	}
	return sem
}

// TryAcquireSlot implements locklock.SemaphoreEngine.
func (e *Engine) TryAcquireSlot(ctx context.Context, cand locklock.Slot, now time.Time, same func(locklock.Slot) bool) (locklock.Slot, bool, error) {
	var (
		got     locklock.Slot
		created bool
	)
	err := e.inShard(ctx, cand.Semaphore, func(s *shard) error {
		sem := s.semaphore(cand.Semaphore, now)
		var live []locklock.Slot
		if sem != nil {
			live = sem.slots
		}
		retry, ok, err := locklock.AdmitSlot(live, cand, same)
		switch {
		case err != nil:
			return err
		case ok:
			got = retry
			return nil
		}
		if sem == nil {
			sem = &semaphore{}
			s.sems[cand.Semaphore] = sem
		}
		s.lastToken++
		cand.Token = s.lastToken
		sem.slots = append(sem.slots, cand)
		got, created = cand, true
		s.emitSlot(locklock.EventAcquired, now, cand)
		return nil
	})
	return got, created, err
}

// GetSemaphore implements locklock.SemaphoreEngine.
func (e *Engine) GetSemaphore(ctx context.Context, id locklock.ID, now time.Time) (locklock.Semaphore, error) {
	var out locklock.Semaphore
	err := e.inShard(ctx, id, func(s *shard) error {
		sem := s.semaphore(id, now)
		if sem == nil {
			return locklock.ErrSemaphoreNotFound
		}
		out = locklock.Semaphore{ID: id, Limit: sem.slots[0].Limit, Slots: slices.Clone(sem.slots)}
		for _, sl := range sem.slots {
			out.InUse += sl.Weight
		}
		return nil
	})
	return out, err
}

// GetSlot implements locklock.SemaphoreEngine.
func (e *Engine) GetSlot(ctx context.Context, id locklock.ID, slot string, now time.Time) (locklock.Slot, error) {
	return e.changeSlot(ctx, id, slot, now, allowAnySlot, func(*shard, *semaphore, int) {})
}

// ReleaseSlot implements locklock.SemaphoreEngine.
func (e *Engine) ReleaseSlot(ctx context.Context, id locklock.ID, slot string, now time.Time, allow func(locklock.Slot) error) (locklock.Slot, error) {
	return e.changeSlot(ctx, id, slot, now, allow, dropSlot(locklock.EventReleased, now))
}

// RevokeSlot implements locklock.SemaphoreEngine.
func (e *Engine) RevokeSlot(ctx context.Context, id locklock.ID, slot string, now time.Time) (locklock.Slot, error) {
	return e.changeSlot(ctx, id, slot, now, allowAnySlot, dropSlot(locklock.EventRevoked, now))
}

// dropSlot is the write of ReleaseSlot and RevokeSlot: the slot goes,
// reported as typ.
func dropSlot(typ locklock.EventType, now time.Time) func(*shard, *semaphore, int) {
	return func(s *shard, sem *semaphore, i int) {
		s.emitSlot(typ, now, sem.slots[i])
		sem.slots = slices.Delete(sem.slots, i, i+1)
	}
}

// RefreshSlot implements locklock.SemaphoreEngine.
func (e *Engine) RefreshSlot(ctx context.Context, id locklock.ID, slot string, now time.Time, ch locklock.Change, allow func(locklock.Slot) error) (locklock.Slot, error) {
	var updated locklock.Slot
	_, err := e.changeSlot(ctx, id, slot, now, allow, func(s *shard, sem *semaphore, i int) {
		updated = ch.ApplySlot(sem.slots[i])
		sem.slots[i] = updated
		s.emitSlot(locklock.EventRefreshed, now, updated)
	})
	return updated, err
}

// changeSlot is the common step of GetSlot, ReleaseSlot and RefreshSlot:
// find the live slot, ask allow, apply write, and return the slot as it was
// before write. A semaphore left without slots is dropped.
func (e *Engine) changeSlot(ctx context.Context, id locklock.ID, slot string, now time.Time, allow func(locklock.Slot) error, write func(*shard, *semaphore, int)) (locklock.Slot, error) {
	var found locklock.Slot
	err := e.inShard(ctx, id, func(s *shard) error {
		sem := s.semaphore(id, now)
		i := -1
		if sem != nil {
			i = slices.IndexFunc(sem.slots, func(sl locklock.Slot) bool { return sl.ID == slot })
		}
		if i < 0 {
			return locklock.SlotNotFound(id, slot)
		}
		found = sem.slots[i]
		if err := allow(found); err != nil {
			return err
		}
		write(s, sem, i)
		if len(sem.slots) == 0 {
			delete(s.sems, id)
		}
		return nil
	})
	return found, err
}

// ListSemaphores implements locklock.SemaphoreEngine. Like List it visits
// every shard.
func (e *Engine) ListSemaphores(ctx context.Context, q locklock.ListQuery, now time.Time) ([]locklock.SemaphoreSummary, error) {
	if err := e.check(ctx); err != nil {
		return nil, err
	}
	var out []locklock.SemaphoreSummary
	for i := range e.shards {
		s := &e.shards[i]
		if err := e.lock(s); err != nil {
			return nil, err
		}
		for id := range s.sems {
			if !q.Matches(id) {
				continue
			}
			if sem := s.semaphore(id, now); sem != nil {
				sum := locklock.SemaphoreSummary{ID: id, Limit: sem.slots[0].Limit, Slots: len(sem.slots)}
				for _, sl := range sem.slots {
					sum.InUse += sl.Weight
				}
				out = append(out, sum)
			}
		}
		s.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b locklock.SemaphoreSummary) int { return strings.Compare(a.Name, b.Name) })
	if len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out, nil
}

// sweepSlots drops the shard's expired slots and returns how many went.
func (s *shard) sweepSlots(now time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for id, sem := range s.sems {
		before := len(sem.slots)
		if s.semaphore(id, now) == nil {
			n += before
		} else {
			n += before - len(sem.slots)
		}
	}
	return n
}

// inShard runs step under the mutex of id's shard.
func (e *Engine) inShard(ctx context.Context, id locklock.ID, step func(*shard) error) error {
	if err := e.check(ctx); err != nil {
		return err
	}
	s := e.shard(id)
	if err := e.lock(s); err != nil {
		return err
	}
	defer s.mu.Unlock()
	return step(s)
}

func allowAnySlot(locklock.Slot) error { return nil }
