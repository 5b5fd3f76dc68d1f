package main

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/bits"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/locklock/locklock/locklock"
)

// Modes of locklock bench.
const (
	benchCycle     = "cycle"
	benchContended = "contended"
	benchHold      = "hold"
	benchHealthz   = "healthz"
)

// Request kinds, each with its own latency histogram.
const (
	kindAcquire = iota
	kindRelease
	kindHealthz
	numKinds
)

var kindNames = [numKinds]string{"acquire", "release", "healthz"}

// benchProgressEvery is how often the progress line is written (a variable
// so that tests need not wait seconds for it).
var benchProgressEvery = time.Second

const benchHelp = `
An HTTP load generator for a Locklock server. Each of --concurrency workers
sends one request at a time over its own keep-alive connection, without
retries, for --duration or until --count cycles have been attempted (with
--count alone there is no time limit). Modes:

  cycle      acquire (POST /lock/uuid/<fresh random uuid>) then release
             (DELETE); a cycle is both succeeding (201, then 200)
  contended  the same on --keys fixed random UUIDs (worker i uses key i mod
             --keys), acquiring with --wait; a cycle is a 201 then a 200, and
             the acquire latency includes the wait
  hold       acquire fresh UUID locks and keep them (no release): --count N
             leaves N more locks held, for --ttl (default: the server's, 30
             days); a cycle is one 201
  healthz    GET /healthz (outside /v1/api), the server's bare request rate;
             a cycle is one 200 (alias: noop)

With --rate R the workers start R cycles a second between them (an open
model, like wrk2) instead of each starting its next cycle as soon as the last
one ended; a cycle's first request then counts its latency from when the
cycle was due, so a server that falls behind shows it in the percentiles
rather than in fewer requests (no coordinated omission). The rate is
reached only if --concurrency workers can carry it.

A progress line goes to standard error every second (unless --quiet) and the
report to standard output: cycles, requests and their rates, latency
percentiles per request kind (within 1%), errors by HTTP status and problem
code or by network error. Exit codes: 0 the run completed (even with errors,
which the report lists), 1 nothing succeeded, 2 usage.
`

// benchConfig is the parsed command line.
type benchConfig struct {
	mode        string
	api         *url.URL // the API base, e.g. http://127.0.0.1:8080/v1/api
	ops         *url.URL // where /healthz is
	apiKey      string
	concurrency int
	duration    time.Duration // 0: no time limit (only with count)
	count       int64         // 0: no limit (only with duration)
	keys        int
	wait        time.Duration
	ttl         time.Duration
	timeout     time.Duration
	rate        float64 // cycles per second; 0: as fast as the workers go
	json, quiet bool
}

func benchCommand(args []string, stdout, stderr io.Writer, env func(string) (string, bool)) int {
	const name = "locklock bench"
	c, code := parseBenchArgs(name, args, stderr, env)
	if c == nil {
		return code
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r := newBenchRun(c)
	rep := r.run(ctx, stop, stderr)
	if c.json {
		out, _ := json.Marshal(rep)
		fmt.Fprintf(stdout, "%s\n", out)
	} else {
		rep.writeText(stdout)
	}
	if rep.Cycles == 0 {
		return exitError
	}
	return exitOK
}

func parseBenchArgs(name string, args []string, stderr io.Writer, env func(string) (string, bool)) (*benchConfig, int) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", defaultServer, "Locklock server `URL` (env LOCKLOCK_SERVER); /v1/api is added to a URL without a path")
	opsServer := fs.String("ops-server", "", "base `URL` of /healthz for --mode healthz (default: --server's scheme and host; set it for a server with --ops-addr)")
	c := &benchConfig{}
	fs.StringVar(&c.apiKey, "api-key", "", "API `key` (env LOCKLOCK_API_KEY); locks then live in the key's namespace")
	fs.StringVar(&c.mode, "mode", benchCycle, "what to do, a `mode`: cycle, contended, hold or healthz (see above)")
	fs.IntVar(&c.concurrency, "concurrency", 64, "number of workers, each with one request in flight and its own connection")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "how long to run (with --count: whichever ends first)")
	fs.Int64Var(&c.count, "count", 0, "stop after this many cycles have been attempted (hold: locks to acquire); without --duration no time limit")
	fs.IntVar(&c.keys, "keys", 4, "contended: number of lock names the workers share")
	fs.DurationVar(&c.wait, "wait", 5*time.Second, "contended: how long an acquire waits for the held lock (whole seconds, rounded up)")
	fs.DurationVar(&c.ttl, "ttl", 0, "lifetime of the acquired locks, whole seconds (rounded up); default: the server's (30 days); a short one keeps a contended lock whose release failed from staying held")
	fs.DurationVar(&c.timeout, "timeout", 0, "give up on a request whose answer has not come after this long (default: --wait plus 30s)")
	fs.Float64Var(&c.rate, "rate", 0, "start this many cycles per `second` in all (0: each worker starts its next cycle at once); latency then counts from when a cycle was due")
	fs.BoolVar(&c.json, "json", false, "print the report as one JSON object")
	fs.BoolVar(&c.quiet, "quiet", false, "no progress line on standard error")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s [flags]\n%s\nFlags:\n", name, benchHelp)
		fs.PrintDefaults()
	}
	positional, err := parseLockArgs(fs, args, env)
	if err != nil {
		return nil, parseFailure(err)
	}
	usageErr := func(format string, a ...any) (*benchConfig, int) {
		fmt.Fprintf(stderr, "%s: %s\n", name, fmt.Sprintf(format, a...))
		return nil, exitUsage
	}
	if len(positional) > 0 {
		return usageErr("unexpected argument %q", positional[0])
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if c.mode == "noop" {
		c.mode = benchHealthz
	}
	switch c.mode {
	case benchCycle, benchContended, benchHold, benchHealthz:
	default:
		return usageErr("unknown --mode %q; want cycle, contended, hold or healthz", c.mode)
	}
	if c.count > 0 && !set["duration"] {
		c.duration = 0 // --count alone: no time limit
	}
	switch {
	case c.concurrency < 1:
		return usageErr("--concurrency must be at least 1")
	case c.count < 0:
		return usageErr("--count must not be negative")
	case c.duration < 0 || c.duration == 0 && c.count == 0:
		return usageErr("--duration must be positive (or give --count)")
	case c.keys < 1:
		return usageErr("--keys must be at least 1")
	case c.wait < 0 || c.ttl < 0 || c.timeout < 0:
		return usageErr("--wait, --ttl and --timeout must not be negative")
	case !(c.rate >= 0) || c.rate > 1e7:
		return usageErr("--rate must be 0 (no limit) or a positive number of cycles per second up to 10,000,000")
	}
	if c.timeout == 0 {
		c.timeout = c.wait + 30*time.Second
	}
	if c.api, err = benchURL(*server, true); err != nil {
		return usageErr("--server: %v", err)
	}
	ops := *opsServer
	if ops == "" {
		ops = c.api.Scheme + "://" + c.api.Host
	}
	if c.ops, err = benchURL(ops, false); err != nil {
		return usageErr("--ops-server: %v", err)
	}
	return c, exitOK
}

// benchURL checks a server URL as the client does; api adds /v1/api to a
// URL without a path.
func benchURL(s string, api bool) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("bad URL %q", s)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("URL %q must be http:// or https:// with a host", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("URL %q must not have a query, fragment or user", s)
	}
	u.Path, u.RawPath = strings.TrimSuffix(u.Path, "/"), ""
	if api && u.Path == "" {
		u.Path = "/v1/api"
	}
	return u, nil
}

// benchRun is one run: the shared transport, the workers and the stop flag.
type benchRun struct {
	cfg         *benchConfig
	tr          *http.Transport
	plain       http.Header // headers of requests without a body
	withBody    http.Header
	acquireBody []byte   // nil: none
	keyPaths    []string // contended: the shared locks' paths
	stop        atomic.Bool
	issued      atomic.Int64 // cycles started, against cfg.count
	workers     []*benchWorker
	// With --rate: cycle n is due at start + n × interval.
	start    time.Time
	interval time.Duration
	tickets  atomic.Int64
}

func newBenchRun(c *benchConfig) *benchRun {
	r := &benchRun{cfg: c}
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
	r.plain = http.Header{"User-Agent": {"locklock-bench/" + version}}
	if c.apiKey != "" {
		r.plain.Set("Authorization", "Bearer "+c.apiKey)
	}
	r.withBody = r.plain.Clone()
	r.withBody.Set("Content-Type", "application/json")
	var body []string
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
	if c.mode == benchContended {
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
			r.stop.Store(true)
		case <-signals:
			interrupted, signals = true, nil
			r.stop.Store(true)
			stopSignals()
		case <-tick.C:
			if !r.cfg.quiet {
				progress.write(time.Since(start))
			}
		}
	}
	elapsed := time.Since(start)
	progress.finish()
	rep := r.report(elapsed)
	rep.Interrupted = interrupted
	return rep
}

// benchWorker is one worker: its own counters, histograms and buffers, so
// that workers share nothing but the transport.
type benchWorker struct {
	r *benchRun
	// Read by the progress line while the worker runs.
	cycles, requests, errors atomic.Int64

	hist   [numKinds]histogram
	errs   map[string]int64
	rng    *rand.ChaCha8
	path   []byte // API path of a fresh UUID lock: prefix, then the UUID
	prefix int
	due    time.Time  // under --rate: when the cycle's first request was due
	buf    [4096]byte // the start of a response body (for the problem code)
	sink   [4096]byte // the rest, discarded
}

func newBenchWorker(r *benchRun) *benchWorker {
	w := &benchWorker{r: r, errs: map[string]int64{}, rng: newBenchRand()}
	w.path = append(w.path, r.cfg.api.Path+"/lock/uuid/"...)
	w.prefix = len(w.path)
	return w
}

func newBenchRand() *rand.ChaCha8 {
	var seed [32]byte
	_, _ = crand.Read(seed[:]) // crypto/rand.Read never fails on supported platforms.
	return rand.NewChaCha8(seed)
}

// appendUUID appends a random version 4 UUID in its textual form.
func appendUUID(b []byte, rng *rand.ChaCha8) []byte {
	var u [16]byte
	binary.BigEndian.PutUint64(u[:8], rng.Uint64())
	binary.BigEndian.PutUint64(u[8:], rng.Uint64())
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return locklock.AppendUUID(b, u)
}

// cycle is one unit of work of the run's mode.
func (w *benchWorker) cycle(index int) {
	r := w.r
	api := r.cfg.api
	switch r.cfg.mode {
	case benchHealthz:
		if w.do(kindHealthz, http.MethodGet, r.cfg.ops, r.cfg.ops.Path+"/healthz", nil, http.StatusOK) {
			w.cycles.Add(1)
		}
	case benchHold:
		if w.do(kindAcquire, http.MethodPost, api, w.freshPath(), r.acquireBody, http.StatusCreated) {
			w.cycles.Add(1)
		}
	default:
		var path string
		if r.cfg.mode == benchContended {
			path = r.keyPaths[index%len(r.keyPaths)]
		} else {
			path = w.freshPath()
		}
		if w.do(kindAcquire, http.MethodPost, api, path, r.acquireBody, http.StatusCreated) &&
			w.do(kindRelease, http.MethodDelete, api, path, nil, http.StatusOK) {
			w.cycles.Add(1)
		}
	}
}

// waitTurn takes the next cycle's slot of the --rate schedule and sleeps
// until it is due; its first request's latency will count from then. It
// reports false when the run stopped meanwhile.
func (w *benchWorker) waitTurn() bool {
	r := w.r
	w.due = r.start.Add(time.Duration(r.tickets.Add(1)-1) * r.interval)
	if d := time.Until(w.due); d > 0 {
		time.Sleep(d)
	}
	return !r.stop.Load()
}

func (w *benchWorker) freshPath() string {
	w.path = appendUUID(w.path[:w.prefix], w.rng)
	return string(w.path)
}

// do sends one request and reads the whole answer; it reports whether the
// status was want. Latency counts from sending to the end of the body, for
// every request that got an answer.
func (w *benchWorker) do(kind int, method string, base *url.URL, path string, body []byte, want int) bool {
	req := &http.Request{
		Method:     method,
		URL:        &url.URL{Scheme: base.Scheme, Host: base.Host, Path: path},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     w.r.plain,
		Host:       base.Host,
	}
	if body != nil {
		req.Header = w.r.withBody
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
	}
	w.requests.Add(1)
	start := time.Now()
	if !w.due.IsZero() { // a cycle's first request, under --rate
		start, w.due = w.due, time.Time{}
	}
	resp, err := w.r.tr.RoundTrip(req)
	if err != nil {
		w.fail(networkError(err))
		return false
	}
	n, err := w.readBody(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		w.fail(networkError(err))
		return false
	}
	w.hist[kind].record(time.Since(start))
	if resp.StatusCode != want {
		w.fail(statusError(resp.StatusCode, w.buf[:n]))
		return false
	}
	return true
}

// readBody reads a body to its end, keeping its first bytes in w.buf; an
// unread body would cost the connection.
func (w *benchWorker) readBody(body io.Reader) (int, error) {
	n := 0
	for n < len(w.buf) {
		m, err := body.Read(w.buf[n:])
		n += m
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
	for {
		_, err := body.Read(w.sink[:])
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

func (w *benchWorker) fail(key string) {
	w.errors.Add(1)
	w.errs[key]++
}

// statusError names an unexpected answer by its status and problem code,
// e.g. "409 lock_held".
func statusError(status int, body []byte) string {
	if code := problemCode(body); code != "" {
		return strconv.Itoa(status) + " " + code
	}
	return strconv.Itoa(status)
}

// problemCode finds the "code" member of a problem+json body without
// decoding it all; "" if there is none that looks like a code.
func problemCode(body []byte) string {
	i := bytes.Index(body, []byte(`"code"`))
	if i < 0 {
		return ""
	}
	rest := bytes.TrimLeft(body[i+len(`"code"`):], " \t\r\n")
	if len(rest) == 0 || rest[0] != ':' {
		return ""
	}
	rest = bytes.TrimLeft(rest[1:], " \t\r\n")
	if len(rest) == 0 || rest[0] != '"' {
		return ""
	}
	rest = rest[1:]
	end := bytes.IndexByte(rest, '"')
	if end <= 0 || end > 64 {
		return ""
	}
	for _, c := range rest[:end] {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return ""
		}
	}
	return string(rest[:end])
}

// networkError names a request that got no (whole) answer.
func networkError(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EPIPE):
		return "broken pipe"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no free local port"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too many open files"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	s := oneLine(err)
	if len(s) > 100 {
		s = s[:100] + "…"
	}
	return s
}

// progress writes the progress line: the rates over the last interval.
type progress struct {
	r        *benchRun
	w        io.Writer
	terminal bool // rewrite one line rather than add lines
	wrote    bool
	last     [3]int64
	lastAt   time.Duration
}

func newProgress(r *benchRun, w io.Writer) *progress {
	p := &progress{r: r, w: w}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.terminal = true
		}
	}
	return p
}

func (p *progress) write(at time.Duration) {
	var now [3]int64
	for _, w := range p.r.workers {
		now[0] += w.cycles.Load()
		now[1] += w.requests.Load()
		now[2] += w.errors.Load()
	}
	secs := (at - p.lastAt).Seconds()
	line := fmt.Sprintf("bench %s %4.0fs  %9.0f cycles/s  %9.0f req/s  %7.0f errors/s  (%d cycles, %d errors)",
		p.r.cfg.mode, at.Seconds(), float64(now[0]-p.last[0])/secs, float64(now[1]-p.last[1])/secs,
		float64(now[2]-p.last[2])/secs, now[0], now[2])
	p.last, p.lastAt = now, at
	if p.terminal {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
	} else {
		fmt.Fprintln(p.w, line)
	}
	p.wrote = true
}

func (p *progress) finish() {
	if p.terminal && p.wrote {
		fmt.Fprintln(p.w)
	}
}

// histogram counts latencies in log-linear buckets, like HdrHistogram:
// exact below 128 ns, then 128 buckets per power of two, so that a
// percentile is within 1% of the true value. It covers up to 2^40 ns (18
// minutes); min, max and the sum are exact.
type histogram struct {
	counts        []uint64 // allocated at the first record
	n             int64
	sum, min, max time.Duration
}

const (
	histSubBits = 7
	histSub     = 1 << histSubBits
	histMaxBits = 40
	histBuckets = (histMaxBits-histSubBits)*histSub + histSub
)

func histIndex(v uint64) int {
	if v >= 1<<histMaxBits {
		v = 1<<histMaxBits - 1
	}
	s := max(bits.Len64(v)-histSubBits-1, 0)
	return s*histSub + int(v>>s)
}

// histValue is the middle of bucket i.
func histValue(i int) time.Duration {
	s := max(i/histSub-1, 0)
	low := uint64(i-s*histSub) << s
	return time.Duration(low + (uint64(1)<<s-1)/2)
}

func (h *histogram) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	if h.counts == nil {
		h.counts = make([]uint64, histBuckets)
		h.min = d
	}
	h.counts[histIndex(uint64(d))]++
	h.n++
	h.sum += d
	h.min = min(h.min, d)
	h.max = max(h.max, d)
}

func (h *histogram) merge(o *histogram) {
	if o.n == 0 {
		return
	}
	if h.n == 0 {
		h.counts = make([]uint64, histBuckets)
		h.min, h.max = o.min, o.max
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.min = min(h.min, o.min)
	h.max = max(h.max, o.max)
}

// quantile is the latency below which a fraction q of the requests fell.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(max(histValue(i), h.min), h.max)
		}
	}
	return h.max
}

// benchReport is what a run measured.
type benchReport struct {
	Mode              string                   `json:"mode"`
	Server            string                   `json:"server"`
	Concurrency       int                      `json:"concurrency"`
	Keys              int                      `json:"keys,omitempty"`
	Rate              float64                  `json:"rate,omitempty"` // --rate, cycles/s
	Seconds           float64                  `json:"seconds"`
	Cycles            int64                    `json:"cycles"`
	CyclesPerSecond   float64                  `json:"cycles_per_second"`
	Requests          int64                    `json:"requests"`
	RequestsPerSecond float64                  `json:"requests_per_second"`
	Errors            int64                    `json:"errors"`
	ErrorsBy          map[string]int64         `json:"errors_by"`
	Latency           map[string]latencyReport `json:"latency"`
	Interrupted       bool                     `json:"interrupted,omitempty"`
}

// latencyReport is one request kind's latencies in milliseconds.
type latencyReport struct {
	Count int64   `json:"count"`
	Min   float64 `json:"min_ms"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

func (r *benchRun) report(elapsed time.Duration) *benchReport {
	c := r.cfg
	rep := &benchReport{
		Mode:        c.mode,
		Server:      c.api.String(),
		Concurrency: c.concurrency,
		Rate:        c.rate,
		Seconds:     round(elapsed.Seconds(), 3),
		ErrorsBy:    map[string]int64{},
		Latency:     map[string]latencyReport{},
	}
	switch c.mode {
	case benchHealthz:
		rep.Server = c.ops.String()
	case benchContended:
		rep.Keys = c.keys
	}
	var hists [numKinds]histogram
	for _, w := range r.workers {
		rep.Cycles += w.cycles.Load()
		rep.Requests += w.requests.Load()
		rep.Errors += w.errors.Load()
		for k, n := range w.errs {
			rep.ErrorsBy[k] += n
		}
		for k := range hists {
			hists[k].merge(&w.hist[k])
		}
	}
	secs := elapsed.Seconds()
	rep.CyclesPerSecond = round(float64(rep.Cycles)/secs, 1)
	rep.RequestsPerSecond = round(float64(rep.Requests)/secs, 1)
	ms := func(d time.Duration) float64 { return round(float64(d)/float64(time.Millisecond), 3) }
	for k, h := range hists {
		if h.n == 0 {
			continue
		}
		rep.Latency[kindNames[k]] = latencyReport{
			Count: h.n,
			Min:   ms(h.min),
			Mean:  ms(h.sum / time.Duration(h.n)),
			P50:   ms(h.quantile(0.50)),
			P90:   ms(h.quantile(0.90)),
			P99:   ms(h.quantile(0.99)),
			P999:  ms(h.quantile(0.999)),
			Max:   ms(h.max),
		}
	}
	return rep
}

func round(x float64, digits int) float64 {
	p := math.Pow10(digits)
	return math.Round(x*p) / p
}

func (rep *benchReport) writeText(w io.Writer) {
	what := fmt.Sprintf("%s mode", rep.Mode)
	if rep.Keys > 0 {
		what += fmt.Sprintf(" on %d keys", rep.Keys)
	}
	if rep.Rate > 0 {
		what += fmt.Sprintf(" at %g cycles/s", rep.Rate)
	}
	fmt.Fprintf(w, "locklock bench: %s, %d workers, %.2fs against %s", what, rep.Concurrency, rep.Seconds, rep.Server)
	if rep.Interrupted {
		fmt.Fprint(w, " (interrupted)")
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "cycles    %12d  %12.1f/s\n", rep.Cycles, rep.CyclesPerSecond)
	fmt.Fprintf(w, "requests  %12d  %12.1f/s\n", rep.Requests, rep.RequestsPerSecond)
	fmt.Fprintf(w, "errors    %12d\n", rep.Errors)
	if len(rep.Latency) > 0 {
		fmt.Fprintf(w, "\nlatency   %10s %10s %10s %10s %10s %10s %10s %10s\n", "count", "min", "mean", "p50", "p90", "p99", "p99.9", "max")
		for _, kind := range kindNames {
			l, ok := rep.Latency[kind]
			if !ok {
				continue
			}
			fmt.Fprintf(w, "%-9s %10d %10s %10s %10s %10s %10s %10s %10s\n", kind, l.Count,
				fmtMillis(l.Min), fmtMillis(l.Mean), fmtMillis(l.P50), fmtMillis(l.P90), fmtMillis(l.P99), fmtMillis(l.P999), fmtMillis(l.Max))
		}
	}
	if len(rep.ErrorsBy) > 0 {
		fmt.Fprintln(w, "\nerrors by kind:")
		keys := make([]string, 0, len(rep.ErrorsBy))
		for k := range rep.ErrorsBy {
			keys = append(keys, k)
		}
		// Most frequent first.
		slices.SortFunc(keys, func(a, b string) int {
			if c := rep.ErrorsBy[b] - rep.ErrorsBy[a]; c != 0 {
				return int(max(min(c, 1), -1))
			}
			return strings.Compare(a, b)
		})
		for _, k := range keys {
			fmt.Fprintf(w, "  %s: %d\n", k, rep.ErrorsBy[k])
		}
	}
}

// fmtMillis shows a latency in milliseconds with a unit that suits it.
func fmtMillis(ms float64) string {
	switch {
	case ms < 1:
		return fmt.Sprintf("%.0fµs", ms*1000)
	case ms < 1000:
		return fmt.Sprintf("%.2fms", ms)
	default:
		return fmt.Sprintf("%.2fs", ms/1000)
	}
}
