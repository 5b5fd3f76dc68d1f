package etcd_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/locklock/locklock/engines/etcd"
	"github.com/locklock/locklock/internal/enginebench"
	"github.com/locklock/locklock/internal/etcdtest"
	"github.com/locklock/locklock/locklock"
)

// The engine benchmarks run through the Service, as a server does, with
// enginebench.Goroutines concurrent callers, on an embedded single-member etcd
// (internal/etcdtest; LOCKLOCK_ETCD_ENDPOINTS points them at another). The
// Raw benchmarks are etcd itself on the same member: a compare-and-put and a
// delete, and clientv3/concurrency.Mutex, for the engine/etcd ratios.
// engines/memory and engines/badger have the same Service benchmarks.

// BenchmarkServiceCycle: acquire and release of fresh UUID locks; an op is
// one cycle, ns/op its cost in throughput terms (wall time / cycles).
func BenchmarkServiceCycle(b *testing.B) {
	svc := locklock.NewService(newEngine(b, benchClient(b)))
	b.Run("etcd", func(b *testing.B) { enginebench.Cycle(b, svc) })
}

// BenchmarkServiceSlotCycle: acquire and release of a slot, each caller on
// its own semaphore; beside ServiceCycle (issue 18: ≥ 0.7 × its rate).
func BenchmarkServiceSlotCycle(b *testing.B) {
	svc := locklock.NewService(newEngine(b, benchClient(b)))
	b.Run("etcd", func(b *testing.B) { enginebench.SlotCycle(b, svc) })
}

// BenchmarkServiceContended: every caller acquires one hot lock, waiting
// for it, and releases it; an op is one hand-over.
func BenchmarkServiceContended(b *testing.B) {
	svc := locklock.NewService(newEngine(b, benchClient(b)))
	b.Run("etcd", func(b *testing.B) { enginebench.Contended(b, svc) })
}

// BenchmarkRawCycle is what etcd itself takes for a lock cycle on fresh
// names: etcd-cas is a transaction that puts the key if it does not exist,
// then a delete; etcd-mutex is concurrency.Mutex Lock and Unlock, each
// goroutine with its own session (lease).
func BenchmarkRawCycle(b *testing.B) {
	client := benchClient(b)
	prefix := fmt.Sprintf("/locklock-bench/%d/", time.Now().UnixNano())
	value := string(make([]byte, 64)) // about a lock record's size
	b.Run("etcd-cas", func(b *testing.B) {
		b.ReportAllocs()
		enginebench.SetParallelism(b)
		b.RunParallel(func(pb *testing.PB) {
			ctx := context.Background()
			ids := enginebench.NewIDs()
			for pb.Next() {
				key := prefix + "cas/" + ids.Next().Name
				resp, err := client.Txn(ctx).
					If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
					Then(clientv3.OpPut(key, value)).
					Commit()
				if err == nil && !resp.Succeeded {
					err = fmt.Errorf("fresh key %s exists", key)
				}
				if err == nil {
					_, err = client.Delete(ctx, key)
				}
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
		enginebench.ReportRate(b)
	})
	sessions := newSessions(b, client)
	b.Run("etcd-mutex", func(b *testing.B) {
		benchMutex(b, sessions, func(ids *enginebench.IDs) string { return prefix + "mutex/" + ids.Next().Name })
	})
}

// BenchmarkRawContended: concurrency.Mutex Lock and Unlock of one hot
// mutex; an op is one hand-over.
func BenchmarkRawContended(b *testing.B) {
	client := benchClient(b)
	hot := fmt.Sprintf("/locklock-bench/%d/hot", time.Now().UnixNano())
	sessions := newSessions(b, client)
	b.Run("etcd-mutex", func(b *testing.B) {
		benchMutex(b, sessions, func(*enginebench.IDs) string { return hot })
	})
}

func benchMutex(b *testing.B, sessions chan *concurrency.Session, name func(*enginebench.IDs) string) {
	b.ReportAllocs()
	enginebench.SetParallelism(b)
	b.RunParallel(func(pb *testing.PB) {
		s := <-sessions
		defer func() { sessions <- s }()
		ctx := context.Background()
		ids := enginebench.NewIDs()
		for pb.Next() {
			m := concurrency.NewMutex(s, name(ids))
			err := m.Lock(ctx)
			if err == nil {
				err = m.Unlock(ctx)
			}
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	enginebench.ReportRate(b)
}

// newSessions makes one session for each goroutine of RunParallel, once
// rather than in every round of a benchmark.
func newSessions(b *testing.B, client *clientv3.Client) chan *concurrency.Session {
	n := enginebench.Parallelism() * runtime.GOMAXPROCS(0)
	sessions := make(chan *concurrency.Session, n)
	for range n {
		s, err := concurrency.NewSession(client, concurrency.WithTTL(60))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = s.Close() })
		sessions <- s
	}
	return sessions
}

func benchClient(b *testing.B) *clientv3.Client {
	return etcdtest.Client(b, etcdtest.Endpoints(b)...)
}

func newEngine(b *testing.B, client *clientv3.Client) *etcd.Engine {
	e := etcd.New(client, etcd.WithPrefix(fmt.Sprintf("/locklock-bench/%d/", time.Now().UnixNano())))
	b.Cleanup(func() { _ = e.Close() })
	return e
}
