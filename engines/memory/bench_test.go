package memory_test

import (
	"testing"

	"github.com/locklock/locklock/engines/memory"
	"github.com/locklock/locklock/internal/enginebench"
	"github.com/locklock/locklock/locklock"
)

// The engine benchmarks run through the Service, as a server does, with
// enginebench.Goroutines concurrent callers (a server with that many requests in
// flight). Run them with `make bench`; engines/badger and engines/etcd have
// the same benchmarks, so that engines can be compared from one run.

// BenchmarkServiceCycle: acquire and release of fresh UUID locks; an op is
// one cycle, ns/op its cost in throughput terms (wall time / cycles).
func BenchmarkServiceCycle(b *testing.B) {
	e := memory.New()
	b.Cleanup(func() { _ = e.Close() })
	svc := locklock.NewService(e)
	b.Run("memory", func(b *testing.B) { enginebench.Cycle(b, svc) })
}

// BenchmarkServiceSlotCycle: acquire and release of a slot, each caller on
// its own semaphore; beside ServiceCycle (issue 18: ≥ 0.8 × its rate).
func BenchmarkServiceSlotCycle(b *testing.B) {
	e := memory.New()
	b.Cleanup(func() { _ = e.Close() })
	svc := locklock.NewService(e)
	b.Run("memory", func(b *testing.B) { enginebench.SlotCycle(b, svc) })
}

// BenchmarkServiceContended: every caller acquires one hot lock, waiting
// for it, and releases it; an op is one hand-over.
func BenchmarkServiceContended(b *testing.B) {
	e := memory.New()
	b.Cleanup(func() { _ = e.Close() })
	svc := locklock.NewService(e)
	b.Run("memory", func(b *testing.B) { enginebench.Contended(b, svc) })
}
