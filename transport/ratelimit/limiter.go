package ratelimit

import (
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// DefaultIdle is the minimum time a bucket is kept after its last use when
// [WithIdle] is not given.
const DefaultIdle = time.Minute

// numShards spreads keys over independent locks so that distinct keys rarely
// contend; a power of two keeps the modulo cheap.
const numShards = 64

// Limit is a plan's token bucket: Rate tokens per second, at most Burst
// stored. A Rate that is not > 0 (or is +Inf) means no limit. A positive Rate
// with Burst < 1 is treated as Burst 1, the smallest bucket that admits any
// request at all (a zero-sized bucket would refuse everything forever).
type Limit struct {
	Rate  float64
	Burst int
}

// Unlimited says whether the limit admits everything (no bucket is kept).
func (l Limit) Unlimited() bool { return !(l.Rate > 0) || math.IsInf(l.Rate, 1) }

// Decision is the outcome of [Limiter.Allow].
//
// Durations are exact; the HTTP layer should round them up to whole seconds
// for Retry-After and RateLimit-Reset so that a client never retries early.
type Decision struct {
	Allowed bool
	// Limited reports that a limit applies, so the RateLimit-* headers should
	// be sent. It is false for unlimited plans; the other fields are then zero.
	Limited bool
	// Limit is the bucket size (the burst), for RateLimit-Limit.
	Limit int
	// Remaining is the number of whole tokens left after this request, for
	// RateLimit-Remaining.
	Remaining int
	// Reset is the time until the bucket is full again, for RateLimit-Reset.
	Reset time.Duration
	// RetryAfter is, when !Allowed, the time until one token is available,
	// for Retry-After. It is zero when Allowed.
	RetryAfter time.Duration
}

// Option configures a [Limiter].
type Option func(*Limiter)

// WithClock sets the time source (default time.Now). Tests inject a fake.
func WithClock(now func() time.Time) Option {
	return func(l *Limiter) {
		if now != nil {
			l.now = now
		}
	}
}

// WithIdle sets the minimum time a bucket is kept after its last use (default
// [DefaultIdle]); a bucket is kept at least until it has refilled in any case.
// Shards sweep themselves at most every d/4. Values <= 0 keep the default.
func WithIdle(d time.Duration) Option {
	return func(l *Limiter) {
		if d > 0 {
			l.idle = d
		}
	}
}

// Limiter is a set of token buckets, one per key. It is safe for concurrent
// use. The zero value is not usable; call [New].
type Limiter struct {
	now        func() time.Time
	idle       time.Duration
	sweepEvery time.Duration
	seed       maphash.Seed
	shards     [numShards]shard
}

type shard struct {
	mu      sync.Mutex
	buckets map[string]*bucket
	// peak is the largest len(buckets) since the map was allocated. Go maps
	// never give memory back on delete, so after a flood has been swept the
	// map is rebuilt at its new size (see sweep).
	peak int
	// cursor names the next other shard this one offers to sweep, so that
	// traffic on a few keys still reclaims every shard (see Allow).
	cursor int
	// due is when the next sweep is due, in Unix nanoseconds. It is written
	// under mu but read without it, so that checking whether another shard
	// needs sweeping costs no lock.
	due atomic.Int64
	_   [64]byte // keep shards' hot fields on separate cache lines
}

type bucket struct {
	lim   *rate.Limiter
	limit Limit         // as normalised by Allow, to detect plan changes
	last  time.Time     // last use
	ttl   time.Duration // idle time after which the bucket is surely full again
}

// New returns an empty Limiter.
func New(opts ...Option) *Limiter {
	l := &Limiter{now: time.Now, idle: DefaultIdle, seed: maphash.MakeSeed()}
	for _, o := range opts {
		o(l)
	}
	l.sweepEvery = l.idle / 4
	for i := range l.shards {
		l.shards[i].buckets = make(map[string]*bucket)
	}
	return l
}

// Allow takes one token from key's bucket, creating the bucket (full) on
// first use. If the key's limit differs from the one its bucket was made
// with (the operator reloaded the keys file), the bucket is replaced by a
// full one with the new limit. An unlimited limit is always allowed and
// creates no bucket.
func (l *Limiter) Allow(key string, limit Limit) Decision {
	if limit.Unlimited() {
		return Decision{Allowed: true}
	}
	if limit.Burst < 1 {
		limit.Burst = 1
	}
	now := l.now()
	s := &l.shards[maphash.String(l.seed, key)%numShards]

	s.mu.Lock()
	if s.isDue(now) {
		s.sweep(now, l.sweepEvery)
	}
	b := s.buckets[key]
	if b == nil || b.limit != limit {
		b = &bucket{
			lim:   rate.NewLimiter(rate.Limit(limit.Rate), limit.Burst),
			limit: limit,
			ttl:   max(l.idle, seconds(float64(limit.Burst)/limit.Rate)),
		}
		s.buckets[key] = b
		s.peak = max(s.peak, len(s.buckets))
	}
	b.last = now
	// Both calls are made under the shard lock, so no other Allow on this
	// key can slip in between them.
	ok := b.lim.AllowN(now, 1)
	tokens := b.lim.TokensAt(now)
	other := &l.shards[s.cursor]
	s.cursor = (s.cursor + 1) % numShards
	s.mu.Unlock()

	// A shard sweeps itself only when it gets traffic, so after a flood the
	// shards that no longer see any would keep their dead buckets forever.
	// Each call therefore also offers to sweep one other shard, in rotation,
	// if it is due; TryLock because this is housekeeping that must never make
	// a request wait.
	if other != s && other.isDue(now) && other.mu.TryLock() {
		if other.isDue(now) {
			other.sweep(now, l.sweepEvery)
		}
		other.mu.Unlock()
	}

	d := Decision{Allowed: ok, Limited: true, Limit: limit.Burst}
	// The epsilon absorbs float error from refilling (2.9999999 is 3 tokens).
	d.Remaining = min(max(int(math.Floor(tokens+1e-9)), 0), limit.Burst)
	if missing := float64(limit.Burst) - tokens; missing > 1e-9 {
		d.Reset = seconds(missing / limit.Rate)
	}
	if !ok {
		d.RetryAfter = seconds((1 - tokens) / limit.Rate)
	}
	return d
}

// Len reports the number of live buckets.
func (l *Limiter) Len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.buckets)
		s.mu.Unlock()
	}
	return n
}

func (s *shard) isDue(now time.Time) bool { return now.UnixNano() >= s.due.Load() }

// sweep drops the buckets unused for their ttl. Such a bucket has refilled
// (Allow never takes a bucket below zero tokens, and ttl >= Burst/Rate), and
// a full bucket is exactly what Allow would create for the key, so dropping
// it changes no decision. The caller holds s.mu. The work is proportional to
// the shard's size and happens at most once per sweepEvery, so it is
// amortised over the requests that filled the shard.
func (s *shard) sweep(now time.Time, every time.Duration) {
	for k, b := range s.buckets {
		if now.Sub(b.last) >= b.ttl {
			delete(s.buckets, k)
		}
	}
	// Give memory back after a flood: rebuild once the map is a quarter of
	// its peak. Small maps are not worth the copy.
	if n := len(s.buckets); s.peak >= 1024 && n <= s.peak/4 {
		m := make(map[string]*bucket, n)
		for k, b := range s.buckets {
			m[k] = b
		}
		s.buckets, s.peak = m, n
	}
	s.due.Store(now.Add(every).UnixNano())
}

// seconds converts seconds to a Duration, rounding up (never promise a token
// early) and saturating instead of overflowing for tiny rates.
func seconds(s float64) time.Duration {
	ns := math.Ceil(s * float64(time.Second))
	if ns >= math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(ns)
}
