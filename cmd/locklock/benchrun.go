package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// benchRun is one run: the shared transport, the workers and the stop flag.
type benchRun struct {
	cfg         *benchConfig
	tr          *http.Transport
	plain       http.Header // headers of requests without a body
	withBody    http.Header
	acquireBody []byte        // nil: none
	keyPaths    []string      // contended, keyed: the fixed locks' paths
	streams     *benchStreams // --watch, --watch-namespace
	stop        atomic.Bool
	stopped     chan struct{} // closed with stop set: wakes workers waiting for their turn
	halt        func()        // sets stop and closes stopped, once
	issued      atomic.Int64  // cycles started, against cfg.count
	workers     []*benchWorker
	// With --rate: cycle n is due at start + n × interval.
	start    time.Time
	interval time.Duration
	tickets  atomic.Int64
}

func newBenchRun(c *benchConfig) *benchRun {
	r := &benchRun{cfg: c, stopped: make(chan struct{})}
	r.halt = sync.OnceFunc(func() {
		r.stop.Store(true)
		close(r.stopped)
	})
	r.tr = &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          0, // no limit
		MaxIdleConnsPerHost:   c.concurrency,
		MaxConnsPerHost:       c.concurrency,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: c.timeout,
		DisableCompression:    true,
		// HTTP/1.1 only: each connection carries one request at a time,
		// so the workers use up to --concurrency connections.
		ForceAttemptHTTP2: false,
	}
	r.plain = http.Header{"User-Agent": {"locklock-bench/" + versionString()}}
	if c.apiKey != "" {
		r.plain.Set("Authorization", "Bearer "+c.apiKey)
	}
	r.withBody = r.plain.Clone()
	r.withBody.Set("Content-Type", "application/json")
	var body []string
	if c.mode == benchSemaphore {
		body = append(body, `"limit":`+strconv.Itoa(benchSlotLimit))
	}
	if c.mode == benchContended && c.wait > 0 {
		body = append(body, `"wait":`+strconv.FormatInt(ceilSecondsOf(c.wait), 10))
	}
	if c.ttl > 0 && c.mode != benchHealthz {
		body = append(body, `"expires_in":`+strconv.FormatInt(ceilSecondsOf(c.ttl), 10))
	}
	if len(body) > 0 {
		r.acquireBody = []byte("{" + strings.Join(body, ",") + "}")
	}
	if c.rate > 0 {
		r.interval = time.Duration(float64(time.Second) / c.rate)
	}
	if c.mode == benchContended || c.mode == benchKeyed {
		rng := newBenchRand()
		for range c.keys {
			r.keyPaths = append(r.keyPaths, c.api.Path+"/lock/uuid/"+string(appendUUID(nil, rng)))
		}
	}
	for range c.concurrency {
		r.workers = append(r.workers, newBenchWorker(r))
	}
	return r
}

func ceilSecondsOf(d time.Duration) int64 { return int64((d + time.Second - 1) / time.Second) }

// next says whether a worker starts another cycle.
func (r *benchRun) next() bool {
	if r.stop.Load() {
		return false
	}
	return r.cfg.count == 0 || r.issued.Add(1) <= r.cfg.count
}

// run runs the workers until the duration is up, the count is reached or ctx
// is done (SIGINT: the workers finish their cycles; stopSignals then lets a
// second SIGINT kill the process).
func (r *benchRun) run(ctx context.Context, stopSignals func(), stderr io.Writer) *benchReport {
	defer r.tr.CloseIdleConnections()
	if paths := r.streamPaths(); len(paths) > 0 {
		s, err := openBenchStreams(r, paths)
		if err != nil {
			return &benchReport{Mode: r.cfg.mode, Server: r.cfg.api.String(), StreamError: err.Error()}
		}
		r.streams = s
		defer s.close()
	}
	start := time.Now()
	r.start = start
	var deadline <-chan time.Time
	if r.cfg.duration > 0 {
		t := time.NewTimer(r.cfg.duration)
		defer t.Stop()
		deadline = t.C
	}
	var wg sync.WaitGroup
	for i, w := range r.workers {
		wg.Go(func() {
			for r.next() {
				if r.interval > 0 && !w.waitTurn() {
					break
				}
				w.cycle(i)
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	progress := newProgress(r, stderr)
	tick := time.NewTicker(benchProgressEvery)
	defer tick.Stop()
	interrupted, signals := false, ctx.Done()
	for running := true; running; {
		select {
		case <-done:
			running = false
		case <-deadline:
			r.halt()
		case <-signals:
			interrupted, signals = true, nil
			r.halt()
			stopSignals()
		case <-tick.C:
			if !r.cfg.quiet {
				progress.write(time.Since(start))
			}
		}
	}
	elapsed := time.Since(start)
	if r.streams != nil {
		r.streams.settle()
	}
	progress.finish()
	rep := r.report(elapsed)
	rep.Interrupted = interrupted
	return rep
}
