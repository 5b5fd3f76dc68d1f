// Command peerload puts the lock load of `locklock bench --mode cycle` on
// Locklock's peers, so that scripts/bench-compare.sh can draw their latency
// against throughput beside Locklock's: no tool installed here offers an
// open-loop rate for them (redis-benchmark has no rate option; etcd's own
// benchmark tool is not packaged by Debian).
//
//	peerload --kind redis --addr 127.0.0.1:6379 --rate 5000 --duration 5s
//	peerload --kind etcd-mutex --addr 127.0.0.1:2379 --rate 2000
//
// A cycle takes a fresh lock and gives it back:
//
//	redis       SET <key> v NX PX 30000 (+OK), then DEL <key> (:1), each
//	            worker on its own connection, one command at a time (no
//	            pipelining), like redis-benchmark -c
//	etcd-mutex  clientv3/concurrency.Mutex Lock then Unlock of a fresh key,
//	            each worker with its own session (lease, made before the
//	            run), all on one client, like the in-process benchmark
//
// The schedule is locklock bench's: with --rate R cycle n is due at start +
// n/R, a free worker takes the next due cycle and waits for its time, and an
// acquire's latency counts from when the cycle was due (no coordinated
// omission); with --rate 0 each worker starts its next cycle at once. The
// report is one JSON object with locklock bench's field names.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"time"
)

func main() {
	os.Exit(command(os.Args[1:], os.Stdout, os.Stderr))
}

func command(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("peerload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	kind := fs.String("kind", "", "the peer: redis or etcd-mutex")
	addr := fs.String("addr", "", "the peer's host:port")
	var c config
	fs.IntVar(&c.concurrency, "concurrency", 64, "workers, each with one cycle in flight")
	fs.DurationVar(&c.duration, "duration", 5*time.Second, "how long to start cycles")
	fs.Float64Var(&c.rate, "rate", 0, "cycles per second in all (0: each worker starts its next cycle at once)")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "give up on a request after this long")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	switch {
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "peerload: unexpected argument %q\n", fs.Arg(0))
		return 2
	case *addr == "":
		fmt.Fprintln(stderr, "peerload: --addr is required")
		return 2
	case c.concurrency < 1 || c.duration <= 0 || c.timeout <= 0 || !(c.rate >= 0):
		fmt.Fprintln(stderr, "peerload: --concurrency, --duration and --timeout must be positive, --rate not negative")
		return 2
	}
	var p peer
	var err error
	switch *kind {
	case "redis":
		p = newRedis(*addr, c.timeout)
	case "etcd-mutex":
		p, err = newEtcdMutex(*addr, c.timeout)
	default:
		fmt.Fprintf(stderr, "peerload: unknown --kind %q; want redis or etcd-mutex\n", *kind)
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "peerload:", err)
		return 1
	}
	defer p.close()
	rep, err := run(context.Background(), c, p)
	if err != nil {
		fmt.Fprintln(stderr, "peerload:", err)
		return 1
	}
	rep.Mode = *kind
	out, _ := json.Marshal(rep)
	fmt.Fprintf(stdout, "%s\n", out)
	if rep.Cycles == 0 {
		return 1
	}
	return 0
}
