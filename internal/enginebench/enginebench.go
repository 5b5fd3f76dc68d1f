// Package enginebench holds what the engines' benchmarks share: the Service
// cycle and hand-over loops with Goroutines concurrent callers, the ops/s
// metric, and fresh random UUID lock IDs. Each engine's bench_test.go runs
// the same loops, so that engines (and their raw baselines) compare in one
// `make bench`.
package enginebench

import (
	"context"
	crand "crypto/rand"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/locklock/locklock/internal/uuidtext"
	"github.com/locklock/locklock/locklock"
)

// Goroutines is how many callers the benchmarks run at once: a server with
// that many requests in flight.
const Goroutines = 64

// Cycle measures acquire + release of fresh UUID locks; an op is one cycle.
func Cycle(b *testing.B, svc *locklock.Service) {
	b.ReportAllocs()
	SetParallelism(b)
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		ids := NewIDs()
		for pb.Next() {
			id := ids.Next()
			if _, _, err := svc.Acquire(ctx, locklock.AcquireRequest{ID: id}); err != nil {
				b.Error(err)
				return
			}
			if _, err := svc.Release(ctx, id, ""); err != nil {
				b.Error(err)
				return
			}
		}
	})
	ReportRate(b)
}

// SlotLimit is the limit of the semaphores SlotCycle uses: room for every
// caller, so that a cycle is never refused.
const SlotLimit = 1000

// SlotCycle measures acquire + release of a slot, each caller on a
// semaphore of its own (limit SlotLimit, weight 1); an op is one cycle.
// Beside Cycle it shows what a semaphore's bookkeeping costs over a lock's.
func SlotCycle(b *testing.B, svc *locklock.Service) {
	b.ReportAllocs()
	SetParallelism(b)
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		sem := NewIDs().Next()
		for pb.Next() {
			sl, _, err := svc.AcquireSlot(ctx, locklock.SlotRequest{ID: sem, Limit: SlotLimit})
			if err != nil {
				b.Error(err)
				return
			}
			if _, err := svc.ReleaseSlot(ctx, sem, sl.ID, ""); err != nil {
				b.Error(err)
				return
			}
		}
	})
	ReportRate(b)
}

// Contended measures hand-overs of one hot lock: every caller acquires it,
// waiting, and releases it; an op is one hand-over.
func Contended(b *testing.B, svc *locklock.Service) {
	b.ReportAllocs()
	SetParallelism(b)
	hot := NewIDs().Next()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if _, _, err := svc.Acquire(ctx, locklock.AcquireRequest{ID: hot, Wait: time.Minute}); err != nil {
				b.Error(err)
				return
			}
			if _, err := svc.Release(ctx, hot, ""); err != nil {
				b.Error(err)
				return
			}
		}
	})
	ReportRate(b)
}

// Parallelism is the SetParallelism that gives Goroutines goroutines (or
// the next multiple of GOMAXPROCS).
func Parallelism() int {
	procs := runtime.GOMAXPROCS(0)
	return (Goroutines + procs - 1) / procs
}

// SetParallelism makes b.RunParallel use Goroutines goroutines.
func SetParallelism(b *testing.B) { b.SetParallelism(Parallelism()) }

// ReportRate adds ops per second, the easier number to compare.
func ReportRate(b *testing.B) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, "ops/s")
	}
}

// IDs makes fresh random UUID lock IDs; one per goroutine.
type IDs struct{ rng *rand.ChaCha8 }

// NewIDs returns a generator with a random seed.
func NewIDs() *IDs {
	var seed [32]byte
	_, _ = crand.Read(seed[:])
	return &IDs{rand.NewChaCha8(seed)}
}

// Next is a new version-4 UUID lock ID in the public namespace.
func (g *IDs) Next() locklock.ID {
	return locklock.ID{Namespace: locklock.DefaultNamespace, Kind: locklock.KindUUID, Name: UUID(g.rng)}
}

// UUID is a random version-4 UUID from rng.
func UUID(rng *rand.ChaCha8) string {
	var u [16]byte
	_, _ = rng.Read(u[:])
	u[6], u[8] = u[6]&0x0f|0x40, u[8]&0x3f|0x80
	return string(uuidtext.Append(nil, u))
}
