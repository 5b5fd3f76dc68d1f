package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/locklock/locklock/engines/memory"
	"github.com/locklock/locklock/internal/keys"
	"github.com/locklock/locklock/locklock"
	"github.com/locklock/locklock/transport"
)

// benchServer is a standalone server's routes in-process: the API (with the
// API keys of lockcmd_test.go) under /v1/api, /healthz and /readyz beside it.
type benchServer struct {
	*httptest.Server
	engine *memory.Engine
}

func newBenchServer(t *testing.T) *benchServer {
	t.Helper()
	engine := memory.New()
	t.Cleanup(func() { _ = engine.Close() })
	svc := locklock.NewService(engine)
	file := keys.Default()
	file.Keys = []keys.Key{{ID: "pro", Namespace: "acme", Plan: "pro", SHA256: keys.HashKey(proKey)}}
	api := http.StripPrefix("/v1/api", transport.NewHandler(svc,
		transport.WithAuthenticator(keyAuthenticator(keys.NewStore(keys.NewIndex(file))))))
	ops := transport.NewOpsHandler(svc)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/api/") {
			api.ServeHTTP(w, r)
			return
		}
		ops.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { svc.StopWatching(); s.Close() })
	return &benchServer{Server: s, engine: engine}
}

// held is how many locks the engine holds now.
func (s *benchServer) held(t *testing.T) int {
	t.Helper()
	n, err := s.engine.CountHeld(t.Context(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// runBench runs locklock bench in-process against url.
func runBench(t *testing.T, url string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	env := func(k string) (string, bool) {
		if k == "LOCKLOCK_SERVER" {
			return url, true
		}
		return "", false
	}
	code = run(append([]string{"bench"}, args...), &out, &errOut, env)
	return code, out.String(), errOut.String()
}

// benchJSON runs bench with --json --quiet and decodes the report.
func benchJSON(t *testing.T, url string, args ...string) benchReport {
	t.Helper()
	code, stdout, stderr := runBench(t, url, append([]string{"--json", "--quiet"}, args...)...)
	if code != exitOK {
		t.Fatalf("bench %v: exit %d, stderr %q, stdout %q", args, code, stderr, stdout)
	}
	if stderr != "" {
		t.Errorf("bench --quiet wrote to stderr: %q", stderr)
	}
	var rep benchReport
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("report %q: %v", stdout, err)
	}
	if strings.Count(strings.TrimSpace(stdout), "\n") != 0 {
		t.Errorf("report is not one line: %q", stdout)
	}
	return rep
}

// checkLatency: the kind was measured count times, with ordered percentiles.
func checkLatency(t *testing.T, rep benchReport, kind string, count int64) {
	t.Helper()
	l, ok := rep.Latency[kind]
	if !ok {
		t.Fatalf("no %s latency in %+v", kind, rep.Latency)
	}
	if l.Count != count {
		t.Errorf("%s latency count %d, want %d", kind, l.Count, count)
	}
	if !(0 < l.P50 && l.Min <= l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max) {
		t.Errorf("%s percentiles out of order: %+v", kind, l)
	}
	if l.Mean < l.Min || l.Mean > l.Max {
		t.Errorf("%s mean %v outside [min, max]: %+v", kind, l.Mean, l)
	}
}

func TestBenchCycle(t *testing.T) {
	s := newBenchServer(t)
	rep := benchJSON(t, s.URL, "--duration", "200ms", "--concurrency", "8")
	if rep.Mode != "cycle" || rep.Concurrency != 8 || rep.Server != s.URL+"/v1/api" {
		t.Errorf("report header %+v", rep)
	}
	if rep.Cycles <= 0 || rep.Errors != 0 || len(rep.ErrorsBy) != 0 || rep.Requests != 2*rep.Cycles {
		t.Fatalf("cycles %d, requests %d, errors %d %v: want cycles > 0, requests = 2 × cycles, no errors",
			rep.Cycles, rep.Requests, rep.Errors, rep.ErrorsBy)
	}
	if rep.Seconds < 0.2 || rep.Seconds > 5 || rep.CyclesPerSecond <= 0 || rep.RequestsPerSecond < rep.CyclesPerSecond {
		t.Errorf("seconds %v, cycles/s %v, requests/s %v", rep.Seconds, rep.CyclesPerSecond, rep.RequestsPerSecond)
	}
	checkLatency(t, rep, "acquire", rep.Cycles)
	checkLatency(t, rep, "release", rep.Cycles)
	if _, ok := rep.Latency["healthz"]; ok {
		t.Error("healthz latency in cycle mode")
	}
	if n := s.held(t); n != 0 {
		t.Errorf("%d locks held after cycle mode, want 0", n)
	}
}

// TestBenchRate: --rate starts that many cycles a second between all the
// workers, and the report says so.
func TestBenchRate(t *testing.T) {
	s := newBenchServer(t)
	// 200 cycles at 400/s: the last is due 0.4975 s after the start, so the
	// run cannot end sooner (unpaced, 200 cycles take a few milliseconds).
	rep := benchJSON(t, s.URL, "--rate", "400", "--count", "200", "--concurrency", "16")
	if rep.Rate != 400 || rep.Cycles != 200 || rep.Errors != 0 {
		t.Errorf("rate %v, cycles %d, errors %d %v; want 400, 200, 0", rep.Rate, rep.Cycles, rep.Errors, rep.ErrorsBy)
	}
	if rep.Seconds < 0.4975 || rep.Seconds > 10 {
		t.Errorf("200 cycles at --rate 400 took %.3fs, want about 0.5 s", rep.Seconds)
	}
	checkLatency(t, rep, "acquire", rep.Cycles)
	if code, text, _ := runBench(t, s.URL, "--quiet", "--rate", "50", "--count", "5"); code != exitOK || !strings.Contains(text, "at 50 cycles/s") {
		t.Errorf("exit %d; the text report does not name the rate:\n%s", code, text)
	}
	for _, bad := range []string{"-1", "NaN", "1e9"} {
		if code, _, stderr := runBench(t, s.URL, "--rate", bad); code != exitUsage || !strings.Contains(stderr, "--rate") {
			t.Errorf("--rate %s: exit %d, %q", bad, code, stderr)
		}
	}
}

// TestBenchRateStops: a run under --rate ends at its --duration, not when
// the last worker's far-off turn comes. Each idle worker holds a turn in the
// schedule: at 10 cycles/s, 64 workers hold turns up to 6.4 s ahead, and a
// run that waited for them would report far fewer cycles a second than
// were offered.
func TestBenchRateStops(t *testing.T) {
	s := newBenchServer(t)
	rep := benchJSON(t, s.URL, "--rate", "10", "--duration", "300ms", "--concurrency", "64")
	if rep.Seconds > 2 {
		t.Errorf("a 300 ms run at --rate 10 with 64 workers took %.3f s: it waited for the workers' future turns", rep.Seconds)
	}
	if rep.Cycles < 1 || rep.Cycles > 4 || rep.Errors != 0 {
		t.Errorf("cycles %d, errors %d %v; want 1 to 4 (due at 0, 0.1, 0.2, 0.3 s), no errors", rep.Cycles, rep.Errors, rep.ErrorsBy)
	}
}

// TestBenchCount: --count alone runs exactly that many cycles, whatever the
// time, even with more workers than cycles.
func TestBenchCount(t *testing.T) {
	s := newBenchServer(t)
	for _, c := range []string{"1", "64"} {
		rep := benchJSON(t, s.URL, "--count", "37", "--concurrency", c)
		if rep.Cycles != 37 || rep.Requests != 74 || rep.Errors != 0 {
			t.Errorf("concurrency %s: cycles %d, requests %d, errors %d; want 37, 74, 0", c, rep.Cycles, rep.Requests, rep.Errors)
		}
	}
}

func TestBenchContended(t *testing.T) {
	s := newBenchServer(t)
	rep := benchJSON(t, s.URL, "--mode", "contended", "--keys", "2", "--concurrency", "8", "--duration", "200ms", "--wait", "5s", "--ttl", "1m")
	if rep.Mode != "contended" || rep.Keys != 2 {
		t.Errorf("report header %+v", rep)
	}
	if rep.Cycles <= 0 || rep.Errors != 0 || rep.Requests != 2*rep.Cycles {
		t.Fatalf("cycles %d, requests %d, errors %d %v: want cycles > 0, requests = 2 × cycles, no errors",
			rep.Cycles, rep.Requests, rep.Errors, rep.ErrorsBy)
	}
	checkLatency(t, rep, "acquire", rep.Cycles)
	checkLatency(t, rep, "release", rep.Cycles)
	if n := s.held(t); n != 0 {
		t.Errorf("%d locks held after contended mode, want 0", n)
	}
}

// TestBenchSemaphore: semaphore mode takes and releases slots, each worker
// on its own semaphore, and leaves none behind.
func TestBenchSemaphore(t *testing.T) {
	s := newBenchServer(t)
	rep := benchJSON(t, s.URL, "--mode", "semaphore", "--concurrency", "4", "--count", "100")
	if rep.Mode != "semaphore" || rep.Cycles != 100 || rep.Errors != 0 || rep.Requests != 200 {
		t.Fatalf("cycles %d, requests %d, errors %d %v: want 100 cycles of 2 requests, no errors",
			rep.Cycles, rep.Requests, rep.Errors, rep.ErrorsBy)
	}
	checkLatency(t, rep, "acquire", rep.Cycles)
	checkLatency(t, rep, "release", rep.Cycles)
	sems, err := s.engine.ListSemaphores(t.Context(), locklock.ListQuery{Namespace: locklock.DefaultNamespace, Kind: locklock.KindUUID, Limit: 10}, time.Now())
	if err != nil || len(sems) != 0 {
		t.Errorf("semaphores left after semaphore mode: %+v, %v", sems, err)
	}
}

// TestBenchKeyedWithStreams: keyed mode cycles its fixed locks without
// racing (no errors), and the streams it keeps open — one per lock and two
// of the namespace — receive every event of the load.
func TestBenchKeyedWithStreams(t *testing.T) {
	s := newBenchServer(t)
	rep := benchJSON(t, s.URL, "--mode", "keyed", "--keys", "20", "--concurrency", "8", "--count", "200",
		"--watch", "--watch-namespace", "2", "--api-key", proKey)
	if rep.Mode != "keyed" || rep.Keys != 20 || rep.Streams != 22 || rep.StreamError != "" {
		t.Fatalf("report %+v", rep)
	}
	if rep.Cycles != 200 || rep.Errors != 0 {
		t.Fatalf("cycles %d, errors %d %v: want 200 cycles, no errors", rep.Cycles, rep.Errors, rep.ErrorsBy)
	}
	// Every cycle is two events, seen by its lock's stream and by both
	// namespace streams; the last few may still be in flight.
	if want := int64(200 * 2 * 3); rep.StreamEvents > want || rep.StreamEvents < want*9/10 {
		t.Errorf("streams received %d events, want about %d", rep.StreamEvents, want)
	}
	if rep.StreamResets != 0 || rep.StreamsCut != 0 {
		t.Errorf("streams reset %d, cut %d", rep.StreamResets, rep.StreamsCut)
	}
	if n := s.held(t); n != 0 {
		t.Errorf("%d locks held after keyed mode, want 0", n)
	}
}

// TestBenchContendedWithoutWait: acquires that find the lock held are
// errors, reported by status and problem code.
func TestBenchContendedWithoutWait(t *testing.T) {
	s := newBenchServer(t)
	// A slow holder: every release waits, so that the others find the one
	// lock held.
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodDelete {
			time.Sleep(5 * time.Millisecond)
		}
		s.Config.Handler.ServeHTTP(w, r)
	}))
	defer slow.Close()
	rep := benchJSON(t, slow.URL, "--mode", "contended", "--keys", "1", "--concurrency", "4", "--count", "40", "--wait", "0s")
	if rep.Cycles <= 0 || rep.Errors <= 0 || rep.ErrorsBy["409 lock_held"] != rep.Errors {
		t.Fatalf("cycles %d, errors %d %v: want some cycles, and errors all 409 lock_held", rep.Cycles, rep.Errors, rep.ErrorsBy)
	}
	if rep.Requests != 2*rep.Cycles+rep.Errors {
		t.Errorf("requests %d, want 2 × %d cycles + %d failed acquires", rep.Requests, rep.Cycles, rep.Errors)
	}
	checkLatency(t, rep, "acquire", rep.Cycles+rep.Errors)
}

// TestBenchHold leaves exactly --count locks held, with --ttl, in the API
// key's namespace.
func TestBenchHold(t *testing.T) {
	s := newBenchServer(t)
	rep := benchJSON(t, s.URL, "--mode", "hold", "--count", "150", "--concurrency", "16", "--ttl", "90s", "--api-key", proKey)
	if rep.Cycles != 150 || rep.Requests != 150 || rep.Errors != 0 {
		t.Fatalf("cycles %d, requests %d, errors %d %v; want 150, 150, 0", rep.Cycles, rep.Requests, rep.Errors, rep.ErrorsBy)
	}
	checkLatency(t, rep, "acquire", 150)
	if _, ok := rep.Latency["release"]; ok {
		t.Error("release latency in hold mode")
	}
	// Through the API: the key's namespace lists 150 locks expiring in 90s.
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/v1/api/locks?kind=uuid&limit=1000", nil)
	req.Header.Set("Authorization", "Bearer "+proKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var page struct {
		Locks []struct {
			Namespace string `json:"namespace"`
			ExpiresIn int    `json:"expires_in"`
			Protected bool   `json:"protected"`
		} `json:"locks"`
		Next string `json:"next"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("list: %d, %v", resp.StatusCode, err)
	}
	if len(page.Locks) != 150 || page.Next != "" {
		t.Fatalf("listed %d locks (next %q), want 150", len(page.Locks), page.Next)
	}
	for _, l := range page.Locks {
		if l.Namespace != "acme" || l.ExpiresIn < 80 || l.ExpiresIn > 90 || l.Protected {
			t.Fatalf("lock %+v: want namespace acme, expiring in 90s, unprotected", l)
		}
	}
	if n := s.held(t); n != 150 {
		t.Errorf("engine holds %d locks, want 150", n)
	}
}

func TestBenchHealthz(t *testing.T) {
	s := newBenchServer(t)
	for _, mode := range []string{"healthz", "noop"} {
		rep := benchJSON(t, s.URL, "--mode", mode, "--duration", "200ms", "--concurrency", "4")
		if rep.Mode != "healthz" || rep.Server != s.URL {
			t.Errorf("report header %+v", rep)
		}
		if rep.Cycles <= 0 || rep.Errors != 0 || rep.Requests != rep.Cycles {
			t.Fatalf("cycles %d, requests %d, errors %d %v", rep.Cycles, rep.Requests, rep.Errors, rep.ErrorsBy)
		}
		checkLatency(t, rep, "healthz", rep.Cycles)
		if len(rep.Latency) != 1 {
			t.Errorf("latency kinds %v, want healthz only", rep.Latency)
		}
	}
	// A server with --ops-addr: /healthz is elsewhere.
	rep := benchJSON(t, "http://127.0.0.1:1", "--mode", "healthz", "--ops-server", s.URL+"/", "--count", "10")
	if rep.Cycles != 10 || rep.Server != s.URL {
		t.Errorf("with --ops-server: cycles %d, server %q", rep.Cycles, rep.Server)
	}
}

// TestBenchTextReport: without --json the report is a table on stdout, and
// the progress line goes to stderr.
func TestBenchTextReport(t *testing.T) {
	defer func(d time.Duration) { benchProgressEvery = d }(benchProgressEvery)
	benchProgressEvery = 20 * time.Millisecond
	s := newBenchServer(t)
	code, stdout, stderr := runBench(t, s.URL, "--duration", "150ms", "--concurrency", "2")
	if code != exitOK {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	for _, want := range []string{"locklock bench: cycle mode, 2 workers", "cycles ", "requests ", "errors ", "p50", "p99", "\nacquire ", "\nrelease "} {
		if !strings.Contains(stdout, want) {
			t.Errorf("report lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "errors by kind") {
		t.Errorf("an error-free report lists errors:\n%s", stdout)
	}
	if !strings.Contains(stderr, "cycles/s") || !strings.Contains(stderr, "req/s") {
		t.Errorf("no progress line on stderr: %q", stderr)
	}
}

// TestBenchErrors: answers that are not what a cycle needs are counted by
// status and problem code, and a run where nothing succeeded exits 1.
func TestBenchErrors(t *testing.T) {
	limited := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write([]byte(`{"type": "urn:locklock:error:rate_limited", "status": 429, "code" : "rate_limited", "detail": "` + strings.Repeat("x", 10000) + `"}`))
	}))
	defer limited.Close()
	code, stdout, _ := runBench(t, limited.URL, "--count", "20", "--concurrency", "3", "--quiet")
	if code != exitError {
		t.Errorf("nothing succeeded: exit %d, want 1", code)
	}
	if !strings.Contains(stdout, "errors by kind:\n  429 rate_limited: 20\n") {
		t.Errorf("report:\n%s", stdout)
	}

	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	code, stdout, _ = runBench(t, gone.URL, "--count", "5", "--json", "--quiet")
	var rep benchReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || code != exitError {
		t.Fatalf("exit %d, report %q (%v)", code, stdout, err)
	}
	if rep.Cycles != 0 || rep.Requests != 5 || rep.ErrorsBy["connection refused"] != 5 || len(rep.Latency) != 0 {
		t.Errorf("against a closed port: %+v", rep)
	}
}

func TestBenchUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--mode", "nope"},
		{"--concurrency", "0"},
		{"--duration", "0s"},
		{"--duration", "-1s"},
		{"--count", "-1"},
		{"--keys", "0"},
		{"--mode", "keyed", "--keys", "3", "--concurrency", "4"},
		{"--watch"},
		{"--watch-namespace", "2"},
		{"--watch-namespace", "-1", "--api-key", "k"},
		{"--wait", "-1s"},
		{"--ttl", "-1s"},
		{"--server", "ftp://example.com"},
		{"--server", "http://127.0.0.1:8080/?q=1"},
		{"--ops-server", "127.0.0.1:8080"},
		{"extra"},
		{"--no-such-flag"},
	} {
		code, stdout, stderr := runBench(t, "http://127.0.0.1:1", args...)
		if code != exitUsage || stdout != "" || stderr == "" {
			t.Errorf("bench %q: exit %d, stdout %q, stderr %q; want 2 and a message", args, code, stdout, stderr)
		}
	}
	code, _, stderr := runBench(t, "http://127.0.0.1:1", "-h")
	if code != exitOK || !strings.Contains(stderr, "--concurrency") || !strings.Contains(stderr, "contended") {
		t.Errorf("bench -h: exit %d, %q", code, stderr)
	}
}

func TestHistogram(t *testing.T) {
	for v := uint64(0); v < 1<<20; v += 1 + v/1000 {
		i := histIndex(v)
		if i < 0 || i >= histBuckets {
			t.Fatalf("histIndex(%d) = %d, out of range", v, i)
		}
		mid := uint64(histValue(i))
		if diff := float64(mid) - float64(v); diff > float64(v)/100 || -diff > float64(v)/100 {
			t.Fatalf("value %d in bucket %d shown as %d: more than 1%% off", v, i, mid)
		}
		if i > 0 && histIndex(uint64(histValue(i-1))) != i-1 {
			t.Fatalf("bucket %d is not its own middle's bucket", i-1)
		}
	}
	if histIndex(1<<62) != histBuckets-1 {
		t.Errorf("huge values not in the last bucket")
	}
	var h histogram
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.9, 900 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {1, time.Millisecond}} {
		got := h.quantile(c.q)
		if got < c.want*99/100 || got > c.want*101/100 {
			t.Errorf("quantile(%v) = %v, want %v within 1%%", c.q, got, c.want)
		}
	}
	var m histogram
	m.merge(&h)
	m.merge(&histogram{})
	if m.n != 1000 || m.min != time.Microsecond || m.max != time.Millisecond || m.quantile(0.5) != h.quantile(0.5) {
		t.Errorf("merged %d, %v..%v", m.n, m.min, m.max)
	}
}

func TestProblemCode(t *testing.T) {
	for body, want := range map[string]string{
		`{"code":"lock_held"}`:          "lock_held",
		`{"status":409, "code" : "x1"}`: "x1",
		`{"code":""}`:                   "",
		`{"code":"Bad Code"}`:           "",
		`{"code":42}`:                   "",
		`{"code"`:                       "",
		`not json`:                      "",
	} {
		if got := problemCode([]byte(body)); got != want {
			t.Errorf("problemCode(%s) = %q, want %q", body, got, want)
		}
	}
}

// TestMarkCounter: a marker split across reads is counted once, wherever
// the reads are cut.
func TestMarkCounter(t *testing.T) {
	stream := []byte(strings.Repeat("id: 1\nevent: acquired\ndata: {}\n\n: ping\n\nevent: reset\ndata: {}\n\n", 50))
	want := bytes.Count(stream, []byte("\ndata: "))
	for _, piece := range []int{1, 2, 3, 5, 7, 13, 64, len(stream)} {
		m := markCounter{mark: []byte("\ndata: ")}
		got := 0
		for b := stream; len(b) > 0; {
			n := min(piece, len(b))
			got += m.count(b[:n])
			b = b[n:]
		}
		if got != want {
			t.Errorf("pieces of %d: counted %d, want %d", piece, got, want)
		}
	}
}
