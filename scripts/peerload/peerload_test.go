package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/locklock/locklock/internal/etcdtest"
)

// slowPeer's acquire takes a fixed time: a server that can do 1/delay
// cycles a second per worker.
type slowPeer struct{ delay time.Duration }

func (p slowPeer) worker(context.Context, int) (client, error) { return p, nil }
func (p slowPeer) close()                                      {}
func (p slowPeer) acquire(context.Context, string) error       { time.Sleep(p.delay); return nil }
func (p slowPeer) release(context.Context, string) error       { return nil }

// TestOpenLoop: offered more than the server can do, the cycles that had to
// wait for a free worker count that wait in their latency, as in locklock
// bench (no coordinated omission).
func TestOpenLoop(t *testing.T) {
	// One worker, 50 ms an acquire, 100 cycles/s offered for 500 ms: cycle
	// k is due at 10k ms and cannot start before 50k ms, so the k-th waits
	// at least 40k ms; the run starts at least 6 cycles in 500 ms, the
	// last of them at least 200 ms late.
	rep, err := run(t.Context(), config{concurrency: 1, duration: 500 * time.Millisecond, rate: 100, timeout: time.Second}, slowPeer{50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	acq := rep.Latency["acquire"]
	if rep.Cycles < 6 || rep.Cycles > 11 || rep.Errors != 0 {
		t.Fatalf("cycles %d, errors %d %v; want 6 to 11 cycles, no errors", rep.Cycles, rep.Errors, rep.ErrorsBy)
	}
	if acq.Count != int(rep.Cycles) || acq.Max < 200 || acq.P50 < 50 {
		t.Errorf("acquire latency %+v: want the wait for the worker counted (max ≥ 200 ms, p50 ≥ 50 ms)", acq)
	}
}

// TestRateStops: a run ends at its duration, not at idle workers' turns far
// ahead (64 workers at 10/s hold turns up to 6.4 s ahead).
func TestRateStops(t *testing.T) {
	rep, err := run(t.Context(), config{concurrency: 64, duration: 300 * time.Millisecond, rate: 10, timeout: time.Second}, slowPeer{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Seconds > 2 || rep.Cycles < 1 || rep.Cycles > 4 {
		t.Errorf("%.3f s, %d cycles; want about 0.3 s and 1 to 4 cycles (due at 0, 0.1, 0.2, 0.3 s)", rep.Seconds, rep.Cycles)
	}
}

func peerload(t *testing.T, args ...string) *report {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := command(args, &out, &errOut); code != 0 {
		t.Fatalf("peerload %v: exit %d, %s", args, code, errOut.String())
	}
	var rep report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("report %q: %v", out.String(), err)
	}
	if rep.Cycles < 50 || rep.Errors != 0 || rep.Latency["acquire"].Count != int(rep.Cycles) || rep.Latency["release"].Count != int(rep.Cycles) {
		t.Errorf("report %+v: want ≥ 50 cycles (200/s for 500 ms), no errors, a latency for each", rep)
	}
	return &rep
}

// TestEtcdMutex: cycles of concurrency.Mutex on a real etcd leave no key.
func TestEtcdMutex(t *testing.T) {
	ep := etcdtest.Endpoints(t)
	peerload(t, "--kind", "etcd-mutex", "--addr", ep[0], "--rate", "200", "--duration", "500ms", "--concurrency", "8")
	resp, err := etcdtest.Client(t, ep...).Get(t.Context(), "/peerload/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 0 {
		t.Errorf("%d mutex keys left after the run, want 0", resp.Count)
	}
}

// TestRedis: SET NX PX and DEL cycles on a real redis-server leave no key,
// and an acquire of a held key is an error.
func TestRedis(t *testing.T) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not installed (apt-get install redis-server; scripts/bench-compare.sh installs it)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	_, port, _ := net.SplitHostPort(addr)
	srv := exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	p := newRedis(addr, time.Second)
	var c client
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err = p.worker(t.Context(), 0); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("redis-server does not answer:", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	defer c.close()
	peerload(t, "--kind", "redis", "--addr", addr, "--rate", "200", "--duration", "500ms", "--concurrency", "8")
	rc := c.(*redisClient)
	if err := rc.do(t.Context(), ":0", "DBSIZE"); err != nil {
		t.Errorf("keys left after the run: %v", err)
	}
	key := "held-" + strconv.FormatInt(time.Now().UnixNano(), 10)
	if err := c.acquire(t.Context(), key); err != nil {
		t.Fatal(err)
	}
	if err := c.acquire(t.Context(), key); err == nil || !strings.Contains(err.Error(), "SET answered") {
		t.Errorf("second acquire of a held key: %v, want SET's nil answer as an error", err)
	}
	if err := c.release(t.Context(), key); err != nil {
		t.Fatal(err)
	}
	if err := c.release(t.Context(), key); err == nil {
		t.Error("second release of a key: no error, want DEL's :0 as one")
	}
}
