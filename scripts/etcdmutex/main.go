// Command etcdmutex is etcd's own lock as a load: N workers, each Lock and
// Unlock of a fresh key with clientv3/concurrency.Mutex, against a running
// etcd. scripts/bench-etcd.sh runs it from the load generators' side
// against the same etcd member a `locklock serve --engine etcd` uses, so
// that the engine over HTTP and the Mutex a Go program would use instead
// compare on one etcd in one run.
//
// It does what engines/etcd's BenchmarkRawCycle/etcd-mutex does: one client
// (one gRPC connection), one session (lease, TTL 60 s) per worker, created
// before the clock starts — the way a real program keeps a session for its
// lifetime rather than granting a lease per lock — and a new Mutex on that
// session for every cycle, on a fresh random UUID key.
//
//	go run ./scripts/etcdmutex -endpoints http://127.0.0.1:2379 -concurrency 64 -duration 5s
//
// It prints one JSON object: cycles, errors, seconds, cycles_per_second and
// the cycle latency's p50 and p99 in milliseconds.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/locklock/locklock/internal/enginebench"
)

type report struct {
	Cycles          int64   `json:"cycles"`
	Errors          int64   `json:"errors"`
	Seconds         float64 `json:"seconds"`
	CyclesPerSecond float64 `json:"cycles_per_second"`
	P50Ms           float64 `json:"p50_ms"`
	P99Ms           float64 `json:"p99_ms"`
	FirstError      string  `json:"first_error,omitempty"`
}

func main() {
	endpoints := flag.String("endpoints", "http://127.0.0.1:2379", "etcd client URLs, comma-separated")
	workers := flag.Int("concurrency", enginebench.Goroutines, "concurrent workers, each with its own session")
	duration := flag.Duration("duration", 5*time.Second, "how long to run")
	flag.Parse()
	rep, err := run(strings.Split(*endpoints, ","), *workers, *duration)
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcdmutex:", err)
		os.Exit(1)
	}
	_ = json.NewEncoder(os.Stdout).Encode(rep)
	if rep.Errors > 0 {
		os.Exit(1)
	}
}

func run(endpoints []string, workers int, duration time.Duration) (report, error) {
	client, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return report{}, err
	}
	defer client.Close()
	sessions := make([]*concurrency.Session, workers)
	for i := range sessions {
		s, err := concurrency.NewSession(client, concurrency.WithTTL(60))
		if err != nil {
			return report{}, fmt.Errorf("session: %w", err)
		}
		defer s.Close() // revokes its lease
		sessions[i] = s
	}
	prefix := fmt.Sprintf("/etcdmutex-bench/%d/", time.Now().UnixNano())

	var (
		stop     atomic.Bool
		cycles   atomic.Int64
		errs     atomic.Int64
		firstErr sync.Once
		first    string
		wg       sync.WaitGroup
	)
	lat := make([][]time.Duration, workers)
	start := time.Now()
	for i, s := range sessions {
		wg.Go(func() {
			ctx := context.Background()
			ids := enginebench.NewIDs()
			for !stop.Load() {
				t0 := time.Now()
				m := concurrency.NewMutex(s, prefix+ids.Next().Name)
				err := m.Lock(ctx)
				if err == nil {
					err = m.Unlock(ctx)
				}
				if err != nil {
					errs.Add(1)
					firstErr.Do(func() { first = err.Error() })
					return
				}
				lat[i] = append(lat[i], time.Since(t0))
				cycles.Add(1)
			}
		})
	}
	time.Sleep(duration)
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(start)

	all := slices.Concat(lat...)
	slices.Sort(all)
	q := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		return float64(all[int(p*float64(len(all)-1))].Microseconds()) / 1000
	}
	return report{
		Cycles: cycles.Load(), Errors: errs.Load(), Seconds: elapsed.Seconds(),
		CyclesPerSecond: float64(cycles.Load()) / elapsed.Seconds(),
		P50Ms:           q(0.50), P99Ms: q(0.99), FirstError: first,
	}, nil
}
