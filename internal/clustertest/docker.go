package clustertest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ory/dockertest/v3"
	docker "github.com/ory/dockertest/v3/docker"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Labels on every container, network and image a run makes. The run label
// finds what to remove at the end; the pid label lets a later run tell the
// leftovers of a run that was killed (its process is gone) from those of a
// run still going.
const (
	labelSuite = "io.locklock.cluster-suite"
	labelRun   = "io.locklock.cluster-run"
	labelPID   = "io.locklock.cluster-pid"
)

// etcd's timing in the containers: elections within about a second, and
// etcd's minimum lease TTL (1.5 × the election timeout, rounded up) 2 s, so
// that the suite's 2–3 s locks are taken as asked.
const (
	HeartbeatInterval = 100 * time.Millisecond
	ElectionTimeout   = time.Second
)

// Ports inside the containers.
const (
	etcdClientPort = "2379/tcp"
	etcdPeerPort   = "2380/tcp"
	httpPort       = "8080/tcp"
)

// Env is one run's cluster: three etcd members and three locklock servers
// on a private network of their own.
type Env struct {
	t       testing.TB
	Pool    *dockertest.Pool
	RunID   string
	Network *dockertest.Network
	Etcd    []*Node
	Servers []*Node

	// ProbeInterval is the servers' --etcd-probe-interval, from
	// LOCKLOCK_CLUSTER_PROBE_INTERVAL ("" leaves the servers' default).
	ProbeInterval string

	labels   map[string]string
	buildDir string
	etcd     *clientv3.Client // to the members' published client ports, to find the leader
	memberID map[uint64]*Node

	// mu serializes making a container, network or image with Close, so
	// that nothing is made after Close has looked for what to remove.
	mu        sync.Mutex
	closed    bool
	buildCut  bool // a build was cancelled; under mu
	closeOnce sync.Once
	stopSig   chan struct{}
	ctx       context.Context // ends when the run is closed
	cancel    context.CancelFunc
}

// Node is one container.
type Node struct {
	Name     string // container name: its DNS name on the network, too
	ID       string
	HostAddr string // 127.0.0.1:port, the published client (etcd) or HTTP (locklock) port
	env      *Env
}

// Start builds the images and starts the cluster. Everything it makes is
// removed at the test's cleanup, on SIGINT/SIGTERM, and — if the process
// was killed outright — by the next run.
func Start(t testing.TB) *Env {
	t.Helper()
	pool, err := dockertest.NewPool("")
	if err != nil {
		t.Fatalf("docker: %v", err)
	}
	if err := pool.Client.Ping(); err != nil {
		t.Fatalf("docker: no daemon answers: %v", err)
	}
	pool.MaxWait = time.Minute
	e := &Env{t: t, Pool: pool, RunID: newRunID(), memberID: map[uint64]*Node{}, stopSig: make(chan struct{})}
	if v := os.Getenv(EnvProbeInterval); v != "" {
		if d, err := time.ParseDuration(v); err != nil || d < 0 {
			t.Fatalf("%s=%q: want a duration such as 500ms, or 0 for no probe", EnvProbeInterval, v)
		}
		e.ProbeInterval = v
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.labels = map[string]string{labelSuite: "1", labelRun: e.RunID, labelPID: strconv.Itoa(os.Getpid())}
	e.removeStale()
	e.handleSignals()
	t.Cleanup(e.Close)
	t.Logf("cluster run %s", e.RunID)

	begin := time.Now()
	e.buildImages()
	t.Logf("built the binaries and images in %v", time.Since(begin).Round(100*time.Millisecond))

	err = e.create(func() (err error) {
		e.Network, err = pool.CreateNetwork("llc-"+e.RunID, func(o *docker.CreateNetworkOptions) {
			o.Driver, o.Labels, o.CheckDuplicate = "bridge", e.labels, true
		})
		return err
	})
	if err != nil {
		t.Fatalf("create network: %v", err)
	}
	begin = time.Now()
	e.startEtcd()
	e.startServers()
	if err := e.WaitHealthy(time.Minute); err != nil {
		t.Fatalf("cluster did not come up: %v", err)
	}
	t.Logf("3 etcd members and 3 locklock servers up in %v", time.Since(begin).Round(100*time.Millisecond))
	return e
}

var errClosed = errors.New("the cluster run is being removed")

// create runs fn, which makes a container, network or image, unless the
// run is being removed: then it refuses.
func (e *Env) create(fn func() error) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return errClosed
	}
	return fn()
}

func newRunID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}

// handleSignals removes the run's containers, network and images when the
// test process is interrupted: go test's own handling would leave them.
func (e *Env) handleSignals() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		defer signal.Stop(sig)
		select {
		case s := <-sig:
			fmt.Fprintf(os.Stderr, "cluster: %v: removing the containers, network and images of run %s\n", s, e.RunID)
			e.Close()
			fmt.Fprintf(os.Stderr, "cluster: run %s cleaned up; the cluster suite was interrupted\n", e.RunID)
			os.Exit(1)
		case <-e.stopSig:
		}
	}()
}

// Close removes everything the run made. It is safe to call more than
// once and from the signal handler.
func (e *Env) Close() {
	e.closeOnce.Do(func() {
		e.cancel() // stops a build under way
		e.mu.Lock()
		e.closed = true
		cutShort := e.buildCut
		e.mu.Unlock()
		close(e.stopSig)
		if e.etcd != nil {
			_ = e.etcd.Close()
		}
		n := e.sweep(map[string][]string{"label": {labelRun + "=" + e.RunID}})
		if cutShort {
			// The daemon may finish the step it was on after the build
			// was cancelled.
			time.Sleep(2 * time.Second)
			e.sweep(map[string][]string{"label": {labelRun + "=" + e.RunID}})
		}
		if e.buildDir != "" {
			_ = os.RemoveAll(e.buildDir)
		}
		e.t.Logf("removed %s of run %s", n, e.RunID)
	})
}
