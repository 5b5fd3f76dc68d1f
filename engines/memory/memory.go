// Package memory is a Locklock engine that keeps locks in the process's
// memory: the fastest engine, and the one for tests and single-process use.
// Locks are lost when the process stops; fencing tokens still rise across
// restarts because each start seeds the token counters from the wall clock.
package memory

import (
	"container/heap"
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
	shards [shardCount]shard
}

var (
	_ locklock.Engine  = (*Engine)(nil)
	_ locklock.Counter = (*Engine)(nil)
)

type shard struct {
	mu        sync.Mutex
	locks     map[locklock.ID]*entry
	expiry    expiryHeap // every entry of locks, soonest expiry first
	lastToken uint64
	_         [40]byte // keep neighbouring shards' mutexes off one cache line
}

type entry struct {
	lock  locklock.Lock
	index int // position in the shard's expiry heap
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
		e.shards[i].locks = make(map[locklock.ID]*entry)
		e.shards[i].lastToken = cfg.tokenFloor
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

// TryAcquire implements locklock.Engine.
func (e *Engine) TryAcquire(ctx context.Context, l locklock.Lock, now time.Time) (locklock.Lock, error) {
	if err := e.check(ctx); err != nil {
		return locklock.Lock{}, err
	}
	s := e.shard(l.ID)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastToken++
	if cur, ok := s.locks[l.ID]; ok {
		if cur.lock.Live(now) {
			s.lastToken-- // nothing issued
			return locklock.Lock{}, &locklock.HeldError{Lock: cur.lock}
		}
		l.Token = s.lastToken
		cur.lock = l
		heap.Fix(&s.expiry, cur.index)
		return l, nil
	}
	l.Token = s.lastToken
	ent := &entry{lock: l}
	s.locks[l.ID] = ent
	heap.Push(&s.expiry, ent)
	return l, nil
}

// Get implements locklock.Engine.
func (e *Engine) Get(ctx context.Context, id locklock.ID, now time.Time) (locklock.Lock, error) {
	return e.change(ctx, id, now, allowAny, func(*shard, *entry) {})
}

// Release implements locklock.Engine.
func (e *Engine) Release(ctx context.Context, id locklock.ID, now time.Time, allow func(locklock.Lock) error) (locklock.Lock, error) {
	return e.change(ctx, id, now, allow, func(s *shard, cur *entry) { s.remove(cur) })
}

// Refresh implements locklock.Engine.
func (e *Engine) Refresh(ctx context.Context, id locklock.ID, now, expiresAt time.Time, allow func(locklock.Lock) error) (locklock.Lock, error) {
	return e.change(ctx, id, now, allow, func(s *shard, cur *entry) {
		cur.lock.ExpiresAt = expiresAt
		heap.Fix(&s.expiry, cur.index)
	})
}

// change is the common step of Get, Release and Refresh: under the shard's
// mutex, find the live entry, ask allow, apply write, and return the entry's
// lock.
func (e *Engine) change(ctx context.Context, id locklock.ID, now time.Time, allow func(locklock.Lock) error, write func(*shard, *entry)) (locklock.Lock, error) {
	if err := e.check(ctx); err != nil {
		return locklock.Lock{}, err
	}
	s := e.shard(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.live(id, now)
	if cur == nil {
		return locklock.Lock{}, locklock.ErrNotFound
	}
	if err := allow(cur.lock); err != nil {
		return locklock.Lock{}, err
	}
	write(s, cur)
	return cur.lock, nil
}

// List implements locklock.Engine. It visits every shard, so it costs time
// in proportion to all held locks; listing is an operator's tool, not a hot
// path.
func (e *Engine) List(ctx context.Context, q locklock.ListQuery, now time.Time) ([]locklock.Lock, error) {
	if err := e.check(ctx); err != nil {
		return nil, err
	}
	var out []locklock.Lock
	for i := range e.shards {
		s := &e.shards[i]
		s.mu.Lock()
		for id := range s.locks {
			// live removes what it finds expired, so that a lock left
			// out as expired stays gone.
			if !q.Matches(id) {
				continue
			}
			if ent := s.live(id, now); ent != nil {
				out = append(out, ent.lock)
			}
		}
		s.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b locklock.Lock) int { return strings.Compare(a.Name, b.Name) })
	if len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out, nil
}

// Sweep implements locklock.Engine using each shard's expiry heap, so its
// cost follows the number of expired locks, not of all locks.
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
	}
	return removed, nil
}

// live returns the live entry for id. An expired entry it finds is removed
// on the spot: once one operation has judged a lock expired, an operation
// still carrying an earlier clock reading must not find it alive again (the
// Service reads the clock just before calling the engine).
func (s *shard) live(id locklock.ID, now time.Time) *entry {
	cur, ok := s.locks[id]
	if !ok {
		return nil
	}
	if !cur.lock.Live(now) {
		s.remove(cur)
		return nil
	}
	return cur
}

func (s *shard) sweep(now time.Time, max int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for n < max && len(s.expiry) > 0 && !s.expiry[0].lock.Live(now) {
		s.remove(s.expiry[0])
		n++
	}
	return n
}

func (s *shard) remove(ent *entry) {
	heap.Remove(&s.expiry, ent.index)
	delete(s.locks, ent.lock.ID)
}

// CountHeld implements locklock.Counter: each shard's size less its expired
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
		n += len(s.locks) - s.expiry.countExpired(0, now)
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
		s.locks = make(map[locklock.ID]*entry)
		s.expiry = nil
		s.mu.Unlock()
	}
	return nil
}

func allowAny(locklock.Lock) error { return nil }

// expiryHeap is a min-heap of entries by ExpiresAt (container/heap).
type expiryHeap []*entry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].lock.ExpiresAt.Before(h[j].lock.ExpiresAt) }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *expiryHeap) Push(x any) {
	ent := x.(*entry)
	ent.index = len(*h)
	*h = append(*h, ent)
}
func (h *expiryHeap) Pop() any {
	old := *h
	ent := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return ent
}

// countExpired counts the entries at or below index i that are not live at
// now. A heap's children never expire before their parent, so the walk stops
// at the first live entry of each branch.
func (h expiryHeap) countExpired(i int, now time.Time) int {
	if i >= len(h) || h[i].lock.Live(now) {
		return 0
	}
	return 1 + h.countExpired(2*i+1, now) + h.countExpired(2*i+2, now)
}
