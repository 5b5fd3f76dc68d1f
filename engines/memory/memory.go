// Package memory is a Locklock engine that keeps locks in the process's
// memory: the fastest engine, and the one for tests and single-process use.
// Locks are lost when the process stops; fencing tokens still rise across
// restarts because each start seeds the token counters from the wall clock.
package memory

import (
	"context"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/locklock/locklock/locklock"
)

// shardCount spreads locks over independent mutexes so that requests for
// different locks rarely contend. A power of two keeps the modulo cheap.
const shardCount = 64

// sweepBatch bounds how many expired locks one shard gives up per hold of its
// mutex, so a large sweep never stalls live requests for long.
const sweepBatch = 1024

// Engine is the in-memory engine. The zero value is not usable; call New.
type Engine struct {
	seed   maphash.Seed
	closed atomic.Bool
	events atomic.Pointer[eventOut]
	shards [shardCount]shard
}

var (
	_ locklock.Engine      = (*Engine)(nil)
	_ locklock.EventSource = (*Engine)(nil)
	_ locklock.EventGate   = (*Engine)(nil)
)

type shard struct {
	mu        sync.Mutex
	locks     *store
	sems      map[locklock.ID]*semaphore
	lastToken uint64
	events    *atomic.Pointer[eventOut] // the engine's
	_         [40]byte                  // keep neighbouring shards' mutexes off one cache line
}

// Option configures the engine.
type Option func(*config)

type config struct{ tokenFloor uint64 }

// WithTokenFloor makes every token greater than floor. The default floor is
// the wall clock in milliseconds at New times 1024, which keeps tokens rising
// across restarts as long as no lock name's shard granted more than 1024
// locks per millisecond of uptime and the clock did not go back, and keeps
// tokens below 2^53 (until the year 2248) so that clients that read JSON
// numbers as doubles (JavaScript, jq) still compare them exactly.
func WithTokenFloor(floor uint64) Option { return func(c *config) { c.tokenFloor = floor } }

// New returns an empty engine.
func New(opts ...Option) *Engine {
	cfg := config{tokenFloor: uint64(time.Now().UnixMilli()) << 10}
	for _, o := range opts {
		o(&cfg)
	}
	e := &Engine{seed: maphash.MakeSeed()}
	for i := range e.shards {
		e.shards[i].locks = newStore()
		e.shards[i].sems = make(map[locklock.ID]*semaphore)
		e.shards[i].lastToken = cfg.tokenFloor
		e.shards[i].events = &e.events
	}
	return e
}

func (e *Engine) shard(id locklock.ID) *shard {
	return &e.shards[maphash.Comparable(e.seed, id)%shardCount]
}

// check is the common preamble: a closed engine or a done context applies nothing.
func (e *Engine) check(ctx context.Context) error {
	if e.closed.Load() {
		return locklock.ErrClosed
	}
	return ctx.Err()
}

// lock takes s's mutex unless the engine is closed. The flag is read under
// the mutex: Close sets it before it empties each shard under that shard's
// mutex, so an operation either completes before its shard is emptied or
// sees the flag — it can never land in the emptied store after Close.
func (e *Engine) lock(s *shard) error {
	s.mu.Lock()
	if e.closed.Load() {
		s.mu.Unlock()
		return locklock.ErrClosed
	}
	return nil
}

// TryAcquire implements locklock.Engine.
func (e *Engine) TryAcquire(ctx context.Context, l locklock.Lock, now time.Time) (locklock.Lock, error) {
	if err := e.check(ctx); err != nil {
		return locklock.Lock{}, err
	}
	s := e.shard(l.ID)
	if err := e.lock(s); err != nil {
		return locklock.Lock{}, err
	}
	defer s.mu.Unlock()
	i, ok := s.judge(l.ID, now)
	if ok {
		if err := s.locks.lock(i, l.ID).Bars(l, now); err != nil {
			return locklock.Lock{}, err
		}
	}
	s.lastToken++
	l.Token = s.lastToken
	l.Reclaims = 0
	if ok { // ended: taken over in place
		s.locks.set(i, l)
		s.locks.moved(i)
	} else {
		i = s.locks.add(l)
	}
	got := s.locks.lock(i, l.ID)
	s.emit(locklock.EventAcquired, now, got)
	return got, nil
}

// Get implements locklock.Engine.
func (e *Engine) Get(ctx context.Context, id locklock.ID, now time.Time) (locklock.Lock, error) {
	return e.change(ctx, id, now, allowAny, func(*shard, slot, locklock.Lock) {})
}

// Release implements locklock.Engine.
func (e *Engine) Release(ctx context.Context, id locklock.ID, now time.Time, allow func(locklock.Lock) error) (locklock.Lock, error) {
	return e.change(ctx, id, now, allow, func(s *shard, i slot, l locklock.Lock) {
		s.emit(locklock.EventReleased, now, l)
		s.locks.remove(i)
	})
}

// Revoke implements locklock.Engine.
func (e *Engine) Revoke(ctx context.Context, id locklock.ID, now time.Time) (locklock.Lock, error) {
	return e.change(ctx, id, now, allowAny, func(s *shard, i slot, l locklock.Lock) {
		ended, keep := l.Revoke(now)
		s.emit(locklock.EventRevoked, now, ended)
		if !keep {
			s.locks.remove(i)
			return
		}
		s.locks.set(i, ended)
		s.locks.moved(i)
	})
}

// Refresh implements locklock.Engine.
func (e *Engine) Refresh(ctx context.Context, id locklock.ID, now time.Time, ch locklock.Change, allow func(locklock.Lock) error) (locklock.Lock, error) {
	var updated locklock.Lock
	_, err := e.change(ctx, id, now, allow, func(s *shard, i slot, l locklock.Lock) {
		updated = ch.Apply(l)
		s.locks.set(i, updated)
		s.locks.moved(i)
		s.emit(locklock.EventRefreshed, now, updated)
	})
	return updated, err
}

// change is the common step of Get, Release and Refresh: under the shard's
// mutex, find the live entry, ask allow, apply write (given the lock as
// found), and return the lock as it was before write.
func (e *Engine) change(ctx context.Context, id locklock.ID, now time.Time, allow func(locklock.Lock) error, write func(*shard, slot, locklock.Lock)) (locklock.Lock, error) {
	if err := e.check(ctx); err != nil {
		return locklock.Lock{}, err
	}
	s := e.shard(id)
	if err := e.lock(s); err != nil {
		return locklock.Lock{}, err
	}
	defer s.mu.Unlock()
	i, ok := s.judge(id, now)
	if !ok {
		return locklock.Lock{}, locklock.ErrNotFound
	}
	l := s.locks.lock(i, id)
	if !l.Live(now) {
		return locklock.Lock{}, &locklock.DelayedError{Lock: l}
	}
	if err := allow(l); err != nil {
		return locklock.Lock{}, err
	}
	write(s, i, l)
	return l, nil
}

// SetEventSink implements locklock.EventSource. The Service numbers the
// events.
func (e *Engine) SetEventSink(sink locklock.EventSink) locklock.Position {
	e.events.Store(&eventOut{sink: sink})
	return locklock.Position{}
}

// emit reports a change of l, under the shard's mutex, so that the events
// of one lock reach the sink in the order the changes were made.
func (s *shard) emit(typ locklock.EventType, at time.Time, l locklock.Lock) {
	if out := s.out(); out != nil {
		out.sink(&locklock.Event{Type: typ, At: at, Lock: l})
	}
}

// emitSlot reports a change of a slot, as emit does for a lock.
func (s *shard) emitSlot(typ locklock.EventType, at time.Time, sl locklock.Slot) {
	if out := s.out(); out != nil {
		out.sink(&locklock.Event{Type: typ, At: at, Slot: &sl})
	}
}

// out is where an event goes now; nil when none is to be built (no sink, or
// nobody can ask for it: then it is counted, not built).
func (s *shard) out() *eventOut {
	out := s.events.Load()
	switch {
	case out == nil:
		return nil
	case out.quiet != nil && out.quiet():
		out.skip(1)
		return nil
	}
	return out
}

// eventOut is where events go: the sink, and the gate that says when
// nobody can ask for them.
type eventOut struct {
	sink  locklock.EventSink
	quiet func() bool
	skip  func(int)
}

// SetEventGate implements locklock.EventGate.
func (e *Engine) SetEventGate(quiet func() bool, skip func(n int)) {
	if cur := e.events.Load(); cur != nil {
		e.events.Store(&eventOut{sink: cur.sink, quiet: quiet, skip: skip})
	}
}

// List implements locklock.Engine. It visits every shard, so it costs time
// in proportion to all held locks; listing is an operator's tool, not a hot
// path.
func (e *Engine) List(ctx context.Context, q locklock.ListQuery, now time.Time) ([]locklock.Lock, error) {
	if err := e.check(ctx); err != nil {
		return nil, err
	}
	var out []locklock.Lock
	byName := func(a, b locklock.Lock) int { return strings.Compare(a.Name, b.Name) }
	nowMs := now.UnixMilli()
	for i := range e.shards {
		s := &e.shards[i]
		s.mu.Lock()
		var expired []slot
		s.locks.each(q.Namespace, q.Kind, func(i slot) {
			id := s.locks.id(i)
			switch {
			case !q.Matches(id):
			case !s.locks.at(i).live(nowMs):
				// As judge does: a lock left out as expired stays
				// gone (or ended).
				expired = append(expired, i)
			default:
				out = append(out, s.locks.lock(i, id))
			}
		})
		for _, i := range expired {
			s.settle(i, nowMs)
		}
		s.mu.Unlock()
		if len(out) > 2*q.Limit { // keep only what could make the page
			slices.SortFunc(out, byName)
			out = out[:q.Limit]
		}
	}
	slices.SortFunc(out, byName)
	if len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out, nil
}

// Sweep implements locklock.Engine using each shard's expiry heap, so its
// cost follows the number of expired locks, not of all locks; and drops
// expired slots, visiting every semaphore (there are few).
func (e *Engine) Sweep(ctx context.Context, now time.Time) (int, error) {
	removed := 0
	for i := range e.shards {
		s := &e.shards[i]
		for {
			if err := e.check(ctx); err != nil {
				return removed, err
			}
			n := s.sweep(now, sweepBatch)
			removed += n
			if n < sweepBatch {
				break
			}
		}
		removed += s.sweepSlots(now)
	}
	return removed, nil
}

// judge finds the entry for id that still matters at now: live, or kept
// for its lock-delay. An expired entry it finds is settled on the spot —
// removed, or marked ended while its lock-delay runs: once one operation
// has judged a lock expired, an operation still carrying an earlier clock
// reading must not find it alive again (the Service reads the clock just
// before calling the engine).
func (s *shard) judge(id locklock.ID, now time.Time) (slot, bool) {
	i, ok := s.locks.find(id)
	if !ok {
		return 0, false
	}
	return i, s.settle(i, now.UnixMilli())
}

// settle removes entry i if it is gone at now, or marks it ended if it
// expired but its lock-delay runs, and reports whether it is still there.
func (s *shard) settle(i slot, now int64) bool {
	ent := s.locks.at(i)
	if ent.live(now) {
		return true
	}
	if !ent.ended { // it expired, and nobody has said so yet
		l := s.locks.lock(i, s.locks.id(i))
		s.emit(locklock.EventExpired, l.ExpiresAt, l)
	}
	if ent.delaying(now) {
		if !ent.ended {
			s.locks.setEnded(i, true)
			s.locks.moved(i)
		}
		return true
	}
	s.locks.remove(i)
	return false
}

func (s *shard) sweep(now time.Time, max int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	nowMs := now.UnixMilli()
	n := 0
	for n < max && s.locks.len() > 0 {
		i := s.locks.expiry.first()
		if nowMs < s.locks.at(i).end() {
			break
		}
		s.settle(i, nowMs)
		n++
	}
	return n
}

// CountHeld implements locklock.Engine: each shard's size less its expired
// entries, which sit at the top of its expiry heap, so the count costs the
// number of expired locks, not of all locks.
func (e *Engine) CountHeld(ctx context.Context, now time.Time) (int, error) {
	if err := e.check(ctx); err != nil {
		return 0, err
	}
	n := 0
	for i := range e.shards {
		s := &e.shards[i]
		s.mu.Lock()
		n += s.locks.len() - s.locks.ended - s.locks.expiry.countExpired(0, now.UnixMilli())
		s.mu.Unlock()
	}
	return n, nil
}

// Ping implements locklock.Engine.
func (e *Engine) Ping(ctx context.Context) error { return e.check(ctx) }

// Close implements locklock.Engine. The locks are dropped.
func (e *Engine) Close() error {
	if e.closed.Swap(true) {
		return nil
	}
	for i := range e.shards {
		s := &e.shards[i]
		s.mu.Lock()
		s.locks = newStore()
		s.sems = make(map[locklock.ID]*semaphore)
		s.mu.Unlock()
	}
	return nil
}

func allowAny(locklock.Lock) error { return nil }
