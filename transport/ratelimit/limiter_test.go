package ratelimit

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is safe for concurrent use so the race test can move it.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func TestBurstThenRefusal(t *testing.T) {
	clk := newFakeClock()
	l := New(WithClock(clk.Now))
	lim := Limit{Rate: 2, Burst: 4}

	for i := 1; i <= 4; i++ {
		d := l.Allow("k", lim)
		want := Decision{Allowed: true, Limited: true, Limit: 4, Remaining: 4 - i,
			Reset: time.Duration(i) * 500 * time.Millisecond}
		if d != want {
			t.Fatalf("request %d: got %+v, want %+v", i, d, want)
		}
	}
	d := l.Allow("k", lim)
	want := Decision{Allowed: false, Limited: true, Limit: 4, Remaining: 0,
		Reset: 2 * time.Second, RetryAfter: 500 * time.Millisecond}
	if d != want {
		t.Fatalf("over the limit: got %+v, want %+v", d, want)
	}

	// A refusal takes no token: after half the retry delay it is 250ms.
	clk.Advance(250 * time.Millisecond)
	if d := l.Allow("k", lim); d.Allowed || d.RetryAfter != 250*time.Millisecond || d.Reset != 1750*time.Millisecond {
		t.Fatalf("after 250ms: got %+v", d)
	}
	// Exactly RetryAfter later the token is there.
	clk.Advance(250 * time.Millisecond)
	if d := l.Allow("k", lim); !d.Allowed || d.Remaining != 0 || d.Reset != 2*time.Second {
		t.Fatalf("after 500ms: got %+v", d)
	}
}

func TestRefill(t *testing.T) {
	clk := newFakeClock()
	l := New(WithClock(clk.Now))
	lim := Limit{Rate: 10, Burst: 5}
	for range 5 {
		l.Allow("k", lim)
	}
	clk.Advance(300 * time.Millisecond) // 3 tokens back
	d := l.Allow("k", lim)
	if !d.Allowed || d.Remaining != 2 || d.Reset != 300*time.Millisecond {
		t.Fatalf("after partial refill: got %+v", d)
	}
	clk.Advance(time.Hour) // refill never exceeds the burst
	d = l.Allow("k", lim)
	if !d.Allowed || d.Remaining != 4 || d.Reset != 100*time.Millisecond {
		t.Fatalf("after full refill: got %+v", d)
	}
}

func TestUnlimited(t *testing.T) {
	l := New(WithClock(newFakeClock().Now))
	for _, lim := range []Limit{{}, {Rate: 0, Burst: 10}, {Rate: -1, Burst: 1}} {
		for range 1000 {
			if d := l.Allow("k", lim); d != (Decision{Allowed: true}) {
				t.Fatalf("%+v: got %+v", lim, d)
			}
		}
	}
	if n := l.Len(); n != 0 {
		t.Fatalf("unlimited created %d buckets", n)
	}
}

func TestZeroBurstMeansOne(t *testing.T) {
	l := New(WithClock(newFakeClock().Now))
	lim := Limit{Rate: 1, Burst: 0}
	if d := l.Allow("k", lim); !d.Allowed || d.Limit != 1 || d.Remaining != 0 {
		t.Fatalf("first: got %+v", d)
	}
	if d := l.Allow("k", lim); d.Allowed || d.RetryAfter != time.Second {
		t.Fatalf("second: got %+v", d)
	}
}

func TestLimitChangeTakesEffect(t *testing.T) {
	clk := newFakeClock()
	l := New(WithClock(clk.Now))
	small := Limit{Rate: 1, Burst: 2}
	l.Allow("k", small)
	l.Allow("k", small)
	if d := l.Allow("k", small); d.Allowed {
		t.Fatalf("small plan should be exhausted: %+v", d)
	}

	big := Limit{Rate: 1, Burst: 10} // same rate, bigger burst
	if d := l.Allow("k", big); !d.Allowed || d.Limit != 10 || d.Remaining != 9 {
		t.Fatalf("after burst change: got %+v", d)
	}
	faster := Limit{Rate: 5, Burst: 10} // same burst, faster rate
	if d := l.Allow("k", faster); !d.Allowed || d.Reset != 200*time.Millisecond {
		t.Fatalf("after rate change: got %+v", d)
	}
	// Back down: the new, smaller bucket applies straight away.
	l.Allow("k", small)
	l.Allow("k", small)
	if d := l.Allow("k", small); d.Allowed || d.Limit != 2 {
		t.Fatalf("after downgrade: got %+v", d)
	}
	if n := l.Len(); n != 1 {
		t.Fatalf("Len = %d, want 1", n)
	}
}

func TestKeysIndependent(t *testing.T) {
	l := New(WithClock(newFakeClock().Now))
	lim := Limit{Rate: 1, Burst: 3}
	for range 3 {
		l.Allow("a", lim)
	}
	if d := l.Allow("a", lim); d.Allowed {
		t.Fatalf("a should be exhausted: %+v", d)
	}
	if d := l.Allow("b", lim); !d.Allowed || d.Remaining != 2 {
		t.Fatalf("b affected by a: %+v", d)
	}
}

// A bucket is dropped only once it is full again, and then the key behaves
// exactly as if it had been kept.
func TestReclaimedBucketIsFull(t *testing.T) {
	clk := newFakeClock()
	l := New(WithClock(clk.Now), WithIdle(time.Second))
	lim := Limit{Rate: 1, Burst: 10} // time-to-full 10s > idle 1s
	for range 10 {
		l.Allow("k", lim)
	}
	// 9s idle: more than the configured idle, less than time-to-full. A
	// sweep (triggered by another key) must not drop "k".
	clk.Advance(9 * time.Second)
	for range numShards { // one key's calls offer a sweep to every shard
		l.Allow("other", lim)
	}
	if d := l.Allow("k", lim); !d.Allowed || d.Remaining != 8 {
		t.Fatalf("k after 9s: got %+v (bucket dropped before it was full?)", d)
	}
	// Now idle for well over 10s: dropped, and the fresh bucket is full.
	clk.Advance(20 * time.Second)
	for range numShards {
		l.Allow("other", lim)
	}
	if n := l.Len(); n != 1 {
		t.Fatalf("Len = %d, want 1 (k reclaimed)", n)
	}
	if d := l.Allow("k", lim); !d.Allowed || d.Remaining != 9 {
		t.Fatalf("k after reclaim: got %+v", d)
	}
}

// A flood of distinct client addresses must not grow memory without bound:
// buckets die once idle, and traffic on a few keys sweeps every shard.
func TestFloodIsReclaimed(t *testing.T) {
	// Four times what can be live at once: the limiter must reclaim.
	n := 500_000
	if testing.Short() {
		n = 100_000
	}
	clk := newFakeClock()
	const idle = 10 * time.Second
	l := New(WithClock(clk.Now), WithIdle(idle))
	lim := Limit{Rate: 1, Burst: 5} // time-to-full 5s, so idle (10s) rules

	// n addresses, one request each, 100µs apart. A bucket lives at most
	// idle + idle/4 (sweep period) after its last use, so at most 12.5s of
	// the flood, 125,000 addresses, can be live at once.
	const step = 100 * time.Microsecond
	bound := int((idle + idle/4) / step)
	peak := 0
	for i := range n {
		l.Allow("198.51."+strconv.Itoa(i>>8)+"."+strconv.Itoa(i&255), lim)
		clk.Advance(step)
		if i%10_000 == 0 {
			peak = max(peak, l.Len())
		}
	}
	peak = max(peak, l.Len())
	t.Logf("flood of %d addresses: peak Len %d (bound %d), Len after flood %d", n, peak, bound, l.Len())
	if n > bound && peak > bound {
		t.Fatalf("peak Len %d exceeds %d", peak, bound)
	}

	// The flood stops; three keys keep talking after the idle period. Each
	// call offers a sweep to the next shard in its own shard's rotation, so
	// numShards calls per key reach every shard.
	clk.Advance(idle + idle/4)
	for i := range 3 * numShards {
		l.Allow("client"+strconv.Itoa(i%3), lim)
		clk.Advance(time.Millisecond)
	}
	t.Logf("after the idle period and %d requests on 3 keys: Len %d", 3*numShards, l.Len())
	if got := l.Len(); got != 3 {
		t.Fatalf("Len = %d, want 3", got)
	}
}

func TestConcurrent(t *testing.T) {
	clk := newFakeClock()
	l := New(WithClock(clk.Now), WithIdle(time.Second))
	lim := Limit{Rate: 1, Burst: 100}
	const workers, calls = 16, 2000

	// With the clock still, exactly Burst requests pass on each key no
	// matter how they interleave.
	var shared atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			own := 0
			for i := range calls {
				if l.Allow("shared", lim).Allowed {
					shared.Add(1)
				}
				if l.Allow("own"+strconv.Itoa(w), lim).Allowed {
					own++
				}
				l.Allow("spread"+strconv.Itoa(w*calls+i), lim)
			}
			if own != lim.Burst {
				t.Errorf("worker %d: own key allowed %d, want %d", w, own, lim.Burst)
			}
		})
	}
	wg.Wait()
	if got := shared.Load(); got != int64(lim.Burst) {
		t.Fatalf("shared key allowed %d, want %d", got, lim.Burst)
	}

	// Now with the clock moving and sweeps running under the callers.
	for w := range workers {
		wg.Go(func() {
			for i := range calls {
				if w == 0 {
					clk.Advance(10 * time.Millisecond)
				}
				l.Allow("shared", lim)
				l.Allow("spread"+strconv.Itoa(w*calls+i), lim)
				if i%500 == 0 {
					l.Len()
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkAllowDistinct(b *testing.B) {
	l := New()
	lim := Limit{Rate: 100, Burst: 100}
	var ctr atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Allow(strconv.FormatInt(ctr.Add(1)%10000, 10), lim)
		}
	})
}

func BenchmarkAllowShared(b *testing.B) {
	l := New()
	lim := Limit{Rate: 1e9, Burst: 100}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Allow("shared", lim)
		}
	})
}
