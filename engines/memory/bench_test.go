package memory_test

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/locklock/locklock/engines/memory"
	"github.com/locklock/locklock/locklock"
)

// The engine benchmarks run through the Service, as a server does, with
// benchGoroutines concurrent callers (a server with that many requests in
// flight). Run them with `make bench`; engines/badger and engines/etcd have
// the same benchmarks, so that engines can be compared from one run.

const benchGoroutines = 64

// BenchmarkServiceCycle: acquire and release of fresh UUID locks; an op is
// one cycle, ns/op its cost in throughput terms (wall time / cycles).
func BenchmarkServiceCycle(b *testing.B) {
	e := memory.New()
	b.Cleanup(func() { _ = e.Close() })
	svc := locklock.NewService(e)
	b.Run("memory", func(b *testing.B) { benchCycle(b, svc) })
}

// BenchmarkServiceContended: every caller acquires one hot lock, waiting
// for it, and releases it; an op is one hand-over.
func BenchmarkServiceContended(b *testing.B) {
	e := memory.New()
	b.Cleanup(func() { _ = e.Close() })
	svc := locklock.NewService(e)
	b.Run("memory", func(b *testing.B) { benchContended(b, svc) })
}

func benchCycle(b *testing.B, svc *locklock.Service) {
	b.ReportAllocs()
	setParallelism(b)
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		ids := newIDs()
		for pb.Next() {
			id := ids.next()
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
	reportRate(b)
}

func benchContended(b *testing.B, svc *locklock.Service) {
	b.ReportAllocs()
	setParallelism(b)
	hot := newIDs().next()
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
	reportRate(b)
}

// setParallelism makes RunParallel use benchGoroutines goroutines (or the
// next multiple of GOMAXPROCS).
func setParallelism(b *testing.B) {
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism((benchGoroutines + procs - 1) / procs)
}

// reportRate adds ops per second, the easier number to compare.
func reportRate(b *testing.B) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, "ops/s")
	}
}

// ids makes fresh random UUID lock IDs; one per goroutine.
type ids struct{ rng *rand.ChaCha8 }

func newIDs() *ids {
	var seed [32]byte
	_, _ = crand.Read(seed[:])
	return &ids{rand.NewChaCha8(seed)}
}

func (g *ids) next() locklock.ID {
	var u [16]byte
	_, _ = g.rng.Read(u[:])
	u[6], u[8] = u[6]&0x0f|0x40, u[8]&0x3f|0x80
	var s [36]byte
	hex.Encode(s[0:8], u[0:4])
	hex.Encode(s[9:13], u[4:6])
	hex.Encode(s[14:18], u[6:8])
	hex.Encode(s[19:23], u[8:10])
	hex.Encode(s[24:36], u[10:16])
	s[8], s[13], s[18], s[23] = '-', '-', '-', '-'
	return locklock.ID{Namespace: locklock.DefaultNamespace, Kind: locklock.KindUUID, Name: string(s[:])}
}
