package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

type config struct {
	concurrency int
	duration    time.Duration
	rate        float64 // cycles per second; 0: closed loop
	timeout     time.Duration
}

// peer makes the workers' clients.
type peer interface {
	// worker returns a client of its own for worker i (its connection or
	// session), made before the run starts.
	worker(ctx context.Context, i int) (client, error)
	close()
}

// client takes and gives back one lock at a time.
type client interface {
	acquire(ctx context.Context, key string) error
	release(ctx context.Context, key string) error
	close()
}

// report has the fields of locklock bench's JSON report that
// scripts/bench-compare.sh reads.
type report struct {
	Mode            string             `json:"mode"`
	Concurrency     int                `json:"concurrency"`
	Rate            float64            `json:"rate,omitempty"`
	Seconds         float64            `json:"seconds"`
	Cycles          int64              `json:"cycles"`
	CyclesPerSecond float64            `json:"cycles_per_second"`
	Errors          int64              `json:"errors"`
	ErrorsBy        map[string]int64   `json:"errors_by"`
	Latency         map[string]latency `json:"latency"`
}

type latency struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

// worker is one worker's state; workers share only the schedule.
type worker struct {
	c                  client
	prefix             string
	acquired, released []time.Duration
	cycles             int64
	errs               map[string]int64
}

func run(ctx context.Context, c config, p peer) (*report, error) {
	workers := make([]*worker, c.concurrency)
	// Keys are fresh in every run and cycle: a run's nonce, the worker, a
	// counter.
	nonce := strconv.FormatInt(time.Now().UnixNano(), 36)
	for i := range workers {
		cl, err := p.worker(ctx, i)
		if err != nil {
			for _, w := range workers[:i] {
				w.c.close()
			}
			return nil, fmt.Errorf("worker %d: %w", i, err)
		}
		workers[i] = &worker{c: cl, prefix: "lock:" + nonce + ":" + strconv.Itoa(i) + ":", errs: map[string]int64{}}
	}
	var interval time.Duration
	if c.rate > 0 {
		interval = time.Duration(float64(time.Second) / c.rate)
	}
	stopped := make(chan struct{}) // closed at the end of the duration
	var tickets atomic.Int64
	start := time.Now()
	timer := time.AfterFunc(c.duration, func() { close(stopped) })
	defer timer.Stop()
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() {
			defer w.c.close()
			key := []byte(w.prefix)
			for n := int64(0); ; n++ {
				due := time.Now()
				if interval > 0 {
					// The next due cycle, whoever is free to take it: a
					// server that falls behind makes cycles wait, and
					// that wait counts in their latency.
					due = start.Add(time.Duration(tickets.Add(1)-1) * interval)
				}
				if !waitUntil(due, stopped) {
					break
				}
				key = strconv.AppendInt(key[:len(w.prefix)], n, 10)
				w.cycle(ctx, c.timeout, string(key), due)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	return summarize(c, workers, elapsed), nil
}

// waitUntil sleeps until t; it reports false if stopped closes first. An
// idle worker's turn can be up to --concurrency slots ahead: waiting for it
// after the run's end would stretch the run and lower its reported rate.
func waitUntil(t time.Time, stopped <-chan struct{}) bool {
	d := time.Until(t)
	if d <= 0 {
		select {
		case <-stopped:
			return false
		default:
			return true
		}
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-stopped:
		return false
	}
}

// cycle acquires and releases key; the acquire's latency counts from due.
func (w *worker) cycle(ctx context.Context, timeout time.Duration, key string, due time.Time) {
	actx, cancel := context.WithTimeout(ctx, timeout)
	err := w.c.acquire(actx, key)
	cancel()
	if err != nil {
		w.errs["acquire: "+err.Error()]++
		return
	}
	w.acquired = append(w.acquired, time.Since(due))
	t := time.Now()
	rctx, cancel := context.WithTimeout(ctx, timeout)
	err = w.c.release(rctx, key)
	cancel()
	if err != nil {
		w.errs["release: "+err.Error()]++
		return
	}
	w.released = append(w.released, time.Since(t))
	w.cycles++
}

func summarize(c config, workers []*worker, elapsed time.Duration) *report {
	rep := &report{
		Concurrency: c.concurrency,
		Rate:        c.rate,
		Seconds:     elapsed.Seconds(),
		ErrorsBy:    map[string]int64{},
		Latency:     map[string]latency{},
	}
	var acquired, released []time.Duration
	for _, w := range workers {
		rep.Cycles += w.cycles
		acquired = append(acquired, w.acquired...)
		released = append(released, w.released...)
		for k, n := range w.errs {
			rep.ErrorsBy[k] += n
			rep.Errors += n
		}
	}
	rep.CyclesPerSecond = float64(rep.Cycles) / elapsed.Seconds()
	rep.Latency["acquire"] = percentiles(acquired)
	rep.Latency["release"] = percentiles(released)
	return rep
}

// percentiles are exact: every latency is kept (a few hundred thousand at
// most in a bench step).
func percentiles(d []time.Duration) latency {
	if len(d) == 0 {
		return latency{}
	}
	slices.Sort(d)
	at := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(d)))) - 1
		return ms(d[max(i, 0)])
	}
	return latency{Count: len(d), P50: at(0.5), P90: at(0.9), P99: at(0.99), P999: at(0.999), Max: ms(d[len(d)-1])}
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }
