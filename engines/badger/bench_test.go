package badger_test

import (
	"testing"

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
	svc := locklock.NewService(openEngine(b))
	b.Run("badger", func(b *testing.B) { enginebench.Cycle(b, svc) })
}

// BenchmarkServiceContended: every caller acquires one hot lock, waiting
// for it, and releases it; an op is one hand-over.
func BenchmarkServiceContended(b *testing.B) {
	svc := locklock.NewService(openEngine(b))
	b.Run("badger", func(b *testing.B) { enginebench.Contended(b, svc) })
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
