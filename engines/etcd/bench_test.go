package etcd_test

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/locklock/locklock/engines/etcd"
	"github.com/locklock/locklock/internal/etcdtest"
	"github.com/locklock/locklock/locklock"
)

// The engine benchmarks run through the Service, as a server does, with
// benchGoroutines concurrent callers, on an embedded single-member etcd
// (internal/etcdtest; LOCKLOCK_ETCD_ENDPOINTS points them at another). The
// Raw benchmarks are etcd itself on the same member: a compare-and-put and a
// delete, and clientv3/concurrency.Mutex, for the engine/etcd ratios.
// engines/memory and engines/badger have the same Service benchmarks.

const benchGoroutines = 64

// BenchmarkServiceCycle: acquire and release of fresh UUID locks; an op is
// one cycle, ns/op its cost in throughput terms (wall time / cycles).
func BenchmarkServiceCycle(b *testing.B) {
	svc := locklock.NewService(newEngine(b, benchClient(b)))
	b.Run("etcd", func(b *testing.B) { benchCycle(b, svc) })
}

// BenchmarkServiceContended: every caller acquires one hot lock, waiting
// for it, and releases it; an op is one hand-over.
func BenchmarkServiceContended(b *testing.B) {
	svc := locklock.NewService(newEngine(b, benchClient(b)))
	b.Run("etcd", func(b *testing.B) { benchContended(b, svc) })
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
		setParallelism(b)
		b.RunParallel(func(pb *testing.PB) {
			ctx := context.Background()
			ids := newIDs()
			for pb.Next() {
				key := prefix + "cas/" + ids.next().Name
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
		reportRate(b)
	})
	sessions := newSessions(b, client)
	b.Run("etcd-mutex", func(b *testing.B) {
		benchMutex(b, sessions, func(ids *ids) string { return prefix + "mutex/" + ids.next().Name })
	})
}

// BenchmarkRawContended: concurrency.Mutex Lock and Unlock of one hot
// mutex; an op is one hand-over.
func BenchmarkRawContended(b *testing.B) {
	client := benchClient(b)
	hot := fmt.Sprintf("/locklock-bench/%d/hot", time.Now().UnixNano())
	sessions := newSessions(b, client)
	b.Run("etcd-mutex", func(b *testing.B) {
		benchMutex(b, sessions, func(*ids) string { return hot })
	})
}

func benchMutex(b *testing.B, sessions chan *concurrency.Session, name func(*ids) string) {
	b.ReportAllocs()
	setParallelism(b)
	b.RunParallel(func(pb *testing.PB) {
		s := <-sessions
		defer func() { sessions <- s }()
		ctx := context.Background()
		ids := newIDs()
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
	reportRate(b)
}

// newSessions makes one session for each goroutine of RunParallel, once
// rather than in every round of a benchmark.
func newSessions(b *testing.B, client *clientv3.Client) chan *concurrency.Session {
	n := parallelism() * runtime.GOMAXPROCS(0)
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

// parallelism is the SetParallelism that gives benchGoroutines goroutines
// (or the next multiple of GOMAXPROCS).
func parallelism() int {
	procs := runtime.GOMAXPROCS(0)
	return (benchGoroutines + procs - 1) / procs
}

func setParallelism(b *testing.B) { b.SetParallelism(parallelism()) }

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
