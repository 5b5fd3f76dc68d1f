package badger_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bdg "github.com/dgraph-io/badger/v4"

	"github.com/locklock/locklock/engines/badger"
	"github.com/locklock/locklock/internal/enginebench"
	"github.com/locklock/locklock/locklock"
)

// The engine benchmarks run through the Service, as a server does, with
// enginebench.Goroutines concurrent callers, on a real directory with SyncWrites on
// (the engine's default: every commit is fsynced). BenchmarkRawCycle is
// Badger itself doing the least a lock cycle needs, for the engine/Badger
// ratio. engines/memory and engines/etcd have the same Service benchmarks.

// BenchmarkServiceCycle: acquire and release of fresh UUID locks; an op is
// one cycle, ns/op its cost in throughput terms (wall time / cycles).
func BenchmarkServiceCycle(b *testing.B) {
	e := openEngine(b)
	svc := locklock.NewService(e)
	b.Run("badger", func(b *testing.B) { reportBatches(b, e, func() { enginebench.Cycle(b, svc) }) })
}

// BenchmarkServiceSlotCycle: acquire and release of a slot, each caller on
// its own semaphore; beside ServiceCycle.
func BenchmarkServiceSlotCycle(b *testing.B) {
	e := openEngine(b)
	svc := locklock.NewService(e)
	b.Run("badger", func(b *testing.B) { reportBatches(b, e, func() { enginebench.SlotCycle(b, svc) }) })
}

// BenchmarkServiceContended: every caller acquires one hot lock, waiting
// for it, and releases it; an op is one hand-over.
func BenchmarkServiceContended(b *testing.B) {
	e := openEngine(b)
	svc := locklock.NewService(e)
	b.Run("badger", func(b *testing.B) { reportBatches(b, e, func() { enginebench.Contended(b, svc) }) })
}

// reportBatches runs bench and adds what the group commit did meanwhile:
// steps per commit (mean batch size), the median and 99th-percentile batch
// size (as the lower bound of its power-of-two bucket), the mean commit's
// duration (write and fsync) and the mean time running one batch's steps, in
// µs.
func reportBatches(b *testing.B, e *badger.Engine, bench func()) {
	before := e.CommitStats()
	bench()
	d := e.CommitStats().Sub(before)
	if d.Batches == 0 {
		return
	}
	b.ReportMetric(d.StepsPerBatch(), "steps/commit")
	b.ReportMetric(bucketQuantile(d.BatchSizes[:], d.Batches, 0.5), "p50-batch")
	b.ReportMetric(bucketQuantile(d.BatchSizes[:], d.Batches, 0.99), "p99-batch")
	b.ReportMetric(float64(d.CommitTime.Microseconds())/float64(d.Batches), "µs/commit")
	b.ReportMetric(float64(d.StepTime.Microseconds())/float64(d.Batches), "µs-steps/batch")
}

// bucketQuantile is the lower bound (2^i) of the bucket holding quantile q
// of n counts.
func bucketQuantile(buckets []uint64, n uint64, q float64) float64 {
	var seen uint64
	for i, c := range buckets {
		seen += c
		if float64(seen) >= q*float64(n) {
			return float64(uint64(1) << i)
		}
	}
	return float64(uint64(1) << (len(buckets) - 1))
}

// BenchmarkFsync is the disk's floor for one durable write: append about a
// lock record's worth of bytes (100) to a file and fsync it, one writer at
// a time. It reports the median and 99th-percentile sync latency besides
// ns/op. Run it on the data directory's filesystem (TMPDIR).
func BenchmarkFsync(b *testing.B) {
	f, err := os.OpenFile(filepath.Join(b.TempDir(), "append"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	record := make([]byte, 100)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if _, err := f.Write(record); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	enginebench.ReportRate(b)
}

// BenchmarkRawCycle is the baseline: a Badger transaction that sets a fresh
// key and commits, then one that deletes it and commits, with SyncWrites.
func BenchmarkRawCycle(b *testing.B) {
	db, err := bdg.Open(bdg.DefaultOptions(b.TempDir()).WithSyncWrites(true).WithLogger(nil))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	value := make([]byte, 64) // about a lock record's size
	b.Run("badger-txn", func(b *testing.B) {
		b.ReportAllocs()
		enginebench.SetParallelism(b)
		b.RunParallel(func(pb *testing.PB) {
			ids := enginebench.NewIDs()
			for pb.Next() {
				key := []byte("locks/public/uuid/" + ids.Next().Name)
				txn := db.NewTransaction(true)
				err := txn.Set(key, value)
				if err == nil {
					err = txn.Commit()
				}
				txn.Discard()
				if err != nil {
					b.Error(err)
					return
				}
				txn = db.NewTransaction(true)
				err = txn.Delete(key)
				if err == nil {
					err = txn.Commit()
				}
				txn.Discard()
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
		enginebench.ReportRate(b)
	})
}

func openEngine(b *testing.B) *badger.Engine {
	e, err := badger.Open(b.TempDir(), badger.WithLogger(nil))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := e.Close(); err != nil {
			b.Error(err)
		}
	})
	return e
}
