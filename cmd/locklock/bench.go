package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/locklock/locklock/transport/client"
)

// Modes of locklock bench.
const (
	benchCycle     = "cycle"
	benchContended = "contended"
	benchKeyed     = "keyed"
	benchHold      = "hold"
	benchHealthz   = "healthz"
	benchSemaphore = "semaphore"
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
  keyed      acquire then release on --keys fixed random UUIDs, each
             worker cycling through its own share of them (so no two
             workers race for one; --keys must be at least --concurrency);
             with --watch a stream is open on each of them meanwhile
  contended  the same on --keys fixed random UUIDs (worker i uses key i mod
             --keys), acquiring with --wait; a cycle is a 201 then a 200, and
             the acquire latency includes the wait
  hold       acquire fresh UUID locks and keep them (no release): --count N
             leaves N more locks held, for --ttl (default: the server's, 30
             days); a cycle is one 201
  semaphore  take a slot (POST /semaphore/uuid/<uuid>, limit 1000) then
             release it (DELETE …/<slot>), each worker on a semaphore of
             its own; a cycle is both succeeding (201, then 200)
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

	watch          bool // keyed: a stream on each lock
	watchNamespace int  // namespace streams (needs an API key)
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
	fs.StringVar(&c.mode, "mode", benchCycle, "what to do, a `mode`: cycle, keyed, contended, hold, semaphore or healthz (see above)")
	fs.IntVar(&c.concurrency, "concurrency", 64, "number of workers, each with one request in flight and its own connection")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "how long to run (with --count: whichever ends first)")
	fs.Int64Var(&c.count, "count", 0, "stop after this many cycles have been attempted (hold: locks to acquire); without --duration no time limit")
	fs.IntVar(&c.keys, "keys", 4, "contended, keyed: number of lock names the workers use")
	fs.BoolVar(&c.watch, "watch", false, "keyed: keep an event stream open on each of the --keys locks during the run, read as fast as it comes")
	fs.IntVar(&c.watchNamespace, "watch-namespace", 0, "keep this many event streams of the API key's namespace open during the run (needs --api-key)")
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
	case benchCycle, benchContended, benchKeyed, benchHold, benchSemaphore, benchHealthz:
	default:
		return usageErr("unknown --mode %q; want cycle, keyed, contended, hold, semaphore or healthz", c.mode)
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
	case c.mode == benchKeyed && c.keys < c.concurrency:
		return usageErr("--mode keyed needs --keys of at least --concurrency (%d), so that no two workers race for a lock", c.concurrency)
	case c.watch && c.mode != benchKeyed:
		return usageErr("--watch needs --mode keyed (the streams watch its fixed locks)")
	case c.watchNamespace < 0 || c.watchNamespace > 0 && c.apiKey == "":
		return usageErr("--watch-namespace needs --api-key (namespace streams are for API keys) and must not be negative")
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
		u.Path = client.APIPrefix
	}
	return u, nil
}
