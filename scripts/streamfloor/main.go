// Command streamfloor measures the least CPU a server can spend delivering
// event streams over loopback TCP on this machine: it writes the bytes that
// scripts/bench-watchers.sh's streams carry — the same frame size, the same
// number of connections, the same write sizes and pacing — and does nothing
// else (no HTTP, no locks, no encoding, no fan-out). What it costs is a floor
// under what the streams of a real server cost (BENCHMARKS.md, issue 17).
//
//	taskset -c 1 go run ./scripts/streamfloor read 127.0.0.1:8091 1010 &
//	taskset -c 0 go run ./scripts/streamfloor write 127.0.0.1:8091
//
// write listens, waits for its connections, writes for -dur and prints the
// CPU time it used (user and system, from getrusage) per second of wall time.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: streamfloor write ADDRESS [flags] | streamfloor read ADDRESS CONNS")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "write":
		err = write(os.Args[2], os.Args[3:])
	case "read":
		var n int
		if _, err = fmt.Sscan(os.Args[3], &n); err == nil {
			err = read(os.Args[2], n)
		}
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "streamfloor:", err)
		os.Exit(1)
	}
}

// read opens n connections and reads them in 64 KiB reads until they close,
// as the bench's stream readers do.
func read(addr string, n int) error {
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 64<<10)
			for {
				if _, err := c.Read(buf); err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	return nil
}

func write(addr string, args []string) error {
	fs := flag.NewFlagSet("write", flag.ExitOnError)
	events := fs.Int("events", 39800, "lock events per second (two per cycle: 0.9 × 22,089 cycles/s)")
	locks := fs.Int("locks", 1000, "lock streams, each with an equal share of the events")
	ns := fs.Int("ns", 10, "namespace streams, each with every event")
	frame := fs.Int("frame", 485, "bytes per frame")
	batch := fs.Int("batch", 250, "frames per write of a namespace stream (the server's Filling mark)")
	linger := fs.Duration("linger", 250*time.Millisecond, "time between writes of a lock stream")
	dur := fs.Duration("dur", 5*time.Second, "how long to write")
	core := fs.Int("core", 0, "the CPU this runs on (taskset): its whole busy time is reported too, softirq included")
	_ = fs.Parse(args)

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	conns := make([]net.Conn, *locks+*ns)
	for i := range conns {
		if conns[i], err = ln.Accept(); err != nil {
			return err
		}
	}
	one := bytes.Repeat([]byte("x"), *frame-1)
	one = append(one, '\n')
	nsWrite := bytes.Repeat(one, *batch)
	perLock := int(float64(*events) / float64(*locks) * linger.Seconds())
	lockWrite := bytes.Repeat(one, max(perLock, 1))
	nsEvery := time.Duration(float64(time.Second) * float64(*batch) / float64(*events))

	var written atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	run := func(c net.Conn, b []byte, every time.Duration) {
		defer wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if _, err := c.Write(b); err != nil {
					return
				}
				written.Add(int64(len(b)))
			}
		}
	}
	before, start, busy0 := cpu(), time.Now(), coreBusy(*core)
	for i, c := range conns {
		wg.Add(1)
		if i < *ns {
			go run(c, nsWrite, nsEvery)
		} else {
			// Spread the lock streams' writes over the linger, as the
			// server's streams fall.
			time.Sleep(*linger / time.Duration(*locks))
			go run(c, lockWrite, *linger)
		}
	}
	time.Sleep(*dur)
	close(stop)
	wg.Wait()
	wall := time.Since(start)
	used := cpu() - before
	busy := coreBusy(*core) - busy0
	for _, c := range conns {
		_ = c.Close()
	}
	target := float64(*events) * float64(*frame) * float64(*ns+1)
	fmt.Printf("wrote %.0f MB/s (target %.0f MB/s) on %d connections: the process %.1f %% of a core (user+system), CPU %d busy %.1f %% (all of it: interrupts too)\n",
		float64(written.Load())/wall.Seconds()/1e6, target/1e6, len(conns), 100*used.Seconds()/wall.Seconds(), *core, 100*busy.Seconds()/wall.Seconds())
	return nil
}

// coreBusy is how long CPU n has been busy (anything but idle and iowait),
// from /proc/stat; 0 where that cannot be read.
func coreBusy(n int) time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	prefix := fmt.Sprintf("cpu%d ", n)
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		var total int64
		for i, f := range strings.Fields(line)[1:] {
			v, _ := strconv.ParseInt(f, 10, 64)
			if i != 3 && i != 4 { // idle, iowait
				total += v
			}
		}
		return time.Duration(total) * time.Second / 100 // USER_HZ
	}
	return 0
}

// cpu is the process's user and system time so far.
func cpu() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
