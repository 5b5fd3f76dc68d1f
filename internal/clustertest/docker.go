package clustertest

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ory/dockertest/v3"
	docker "github.com/ory/dockertest/v3/docker"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
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

// removeStale removes what earlier runs left behind when their process was
// killed before it could clean up (SIGKILL, go test's -timeout panic).
func (e *Env) removeStale() {
	owners := map[string]bool{}
	containers, _ := e.Pool.Client.ListContainers(docker.ListContainersOptions{All: true, Filters: map[string][]string{"label": {labelSuite}}})
	for _, c := range containers {
		owners[c.Labels[labelRun]+"/"+c.Labels[labelPID]] = true
	}
	networks, _ := e.Pool.Client.FilteredListNetworks(docker.NetworkFilterOpts{"label": {labelSuite: true}})
	for _, n := range networks {
		owners[n.Labels[labelRun]+"/"+n.Labels[labelPID]] = true
	}
	images, _ := e.Pool.Client.ListImages(docker.ListImagesOptions{All: true, Filters: map[string][]string{"label": {labelSuite}}})
	for _, im := range images {
		owners[im.Labels[labelRun]+"/"+im.Labels[labelPID]] = true
	}
	for owner := range owners {
		run, pid, _ := strings.Cut(owner, "/")
		if p, err := strconv.Atoi(pid); err == nil && processAlive(p) {
			e.t.Logf("leaving run %s alone: its process %d still runs", run, p)
			continue
		}
		n := e.sweep(map[string][]string{"label": {labelRun + "=" + run}})
		dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "locklock-cluster-"+run+"-*"))
		for _, d := range dirs {
			_ = os.RemoveAll(d)
		}
		e.t.Logf("removed %s and %d build directories left behind by run %s", n, len(dirs), run)
	}
}

func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// sweep removes the containers, images and networks matching filter and
// says what it removed.
func (e *Env) sweep(filter map[string][]string) string {
	var nc, nn, ni int
	containers, err := e.Pool.Client.ListContainers(docker.ListContainersOptions{All: true, Filters: filter})
	if err != nil {
		e.t.Logf("list containers: %v", err)
	}
	for _, c := range containers {
		// Force removal kills a running container; a paused one is
		// thawed first so that the kill lands.
		_ = e.Pool.Client.UnpauseContainer(c.ID)
		if err := e.Pool.Client.RemoveContainer(docker.RemoveContainerOptions{ID: c.ID, Force: true, RemoveVolumes: true}); err != nil {
			e.t.Logf("remove container %s: %v", c.Names, err)
			continue
		}
		nc++
	}
	// Newest first: an image built on another goes before it. Removing
	// the built image also removes the untagged layers of its build,
	// labelled or not.
	images, err := e.Pool.Client.ListImages(docker.ListImagesOptions{All: true, Filters: filter})
	if err != nil {
		e.t.Logf("list images: %v", err)
	}
	slices.SortFunc(images, func(a, b docker.APIImages) int { return cmp.Compare(b.Created, a.Created) })
	for _, im := range images {
		err := e.Pool.Client.RemoveImageExtended(im.ID, docker.RemoveImageOptions{Force: true})
		switch {
		case errors.Is(err, docker.ErrNoSuchImage):
			// a layer of a build, gone with the image built on it
		case err != nil:
			e.t.Logf("remove image %v: %v", im.RepoTags, err)
		case len(im.RepoTags) > 0 && im.RepoTags[0] != "<none>:<none>":
			ni++
		}
	}
	networks, err := e.Pool.Client.FilteredListNetworks(docker.NetworkFilterOpts{"label": {filter["label"][0]: true}})
	if err != nil {
		e.t.Logf("list networks: %v", err)
	}
	for _, n := range networks {
		if err := e.Pool.Client.RemoveNetwork(n.ID); err != nil {
			e.t.Logf("remove network %s: %v", n.Name, err)
			continue
		}
		nn++
	}
	return fmt.Sprintf("%d containers, %d networks, %d images", nc, nn, ni)
}

// buildImages builds static locklock and etcd binaries and an image FROM
// scratch around each.
func (e *Env) buildImages() {
	t := e.t
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if e.buildDir, err = os.MkdirTemp("", "locklock-cluster-"+e.RunID+"-"); err != nil {
		t.Fatal(err)
	}
	for _, b := range []struct{ name, pkg string }{
		{"locklock", "./cmd/locklock"},
		{"etcd", "./internal/clustertest/etcd-server"},
	} {
		dir := filepath.Join(e.buildDir, b.name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		begin := time.Now()
		cmd := exec.CommandContext(e.ctx, goCommand(), "build", "-trimpath", "-ldflags", "-s -w", "-o", filepath.Join(dir, b.name), b.pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", b.pkg, err, out)
		}
		dockerfile, err := os.ReadFile(filepath.Join(root, "internal", "clustertest", "Dockerfile."+b.name))
		if err != nil {
			t.Fatal(err)
		}
		dockerfile, err = labelled(dockerfile, e.labels)
		if err != nil {
			t.Fatalf("internal/clustertest/Dockerfile.%s: %v", b.name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), dockerfile, 0o644); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		err = e.create(func() error {
			err := e.Pool.Client.BuildImage(docker.BuildImageOptions{
				Name:                e.image(b.name),
				Dockerfile:          "Dockerfile",
				ContextDir:          dir,
				NoCache:             true,
				RmTmpContainer:      true,
				ForceRmTmpContainer: true,
				OutputStream:        &out,
				Context:             e.ctx,
			})
			e.buildCut = err != nil && e.ctx.Err() != nil
			return err
		})
		if err != nil {
			t.Fatalf("docker build %s: %v\n%s", b.name, err, out.String())
		}
		t.Logf("image %s: static %s built and packed in %v", e.image(b.name), b.pkg, time.Since(begin).Round(100*time.Millisecond))
	}
}

// labelled puts a LABEL step with labels right after the Dockerfile's FROM,
// so that every layer the build commits carries them (labels given to the
// build API come last, leaving the layers before them unlabelled: a build
// cut short would leave those behind, unfindable).
func labelled(dockerfile []byte, labels map[string]string) ([]byte, error) {
	lines := strings.Split(string(dockerfile), "\n")
	for i, l := range lines {
		if strings.HasPrefix(strings.ToUpper(strings.TrimSpace(l)), "FROM ") {
			keys := slices.Sorted(maps.Keys(labels))
			step := "LABEL"
			for _, k := range keys {
				step += fmt.Sprintf(" %s=%q", k, labels[k])
			}
			lines = slices.Insert(lines, i+1, step)
			return []byte(strings.Join(lines, "\n")), nil
		}
	}
	return nil, errors.New("no FROM line")
}

func (e *Env) image(name string) string { return "locklock-cluster-" + name + ":" + e.RunID }

func moduleRoot() (string, error) {
	out, err := exec.Command(goCommand(), "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the locklock module")
	}
	return filepath.Dir(mod), nil
}

// goCommand is the go command: the one on PATH, or the one in
// /usr/local/go, where .ci/run and the README put it.
func goCommand() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

// freePort returns a loopback port that is free right now. Ports are fixed
// for a container's life so that a restarted server keeps its address.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port, nil
}

// run starts a container of image on the run's network with port published
// on 127.0.0.1.
func (e *Env) run(name, image string, cmd []string, port string) *Node {
	t := e.t
	hostPort, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	repo, tag, _ := strings.Cut(image, ":")
	var r *dockertest.Resource
	err = e.create(func() (err error) {
		r, err = e.Pool.RunWithOptions(&dockertest.RunOptions{
			Name:         name,
			Hostname:     name,
			Repository:   repo,
			Tag:          tag,
			Cmd:          cmd,
			Networks:     []*dockertest.Network{e.Network},
			Labels:       e.labels,
			ExposedPorts: []string{port},
			PortBindings: map[docker.Port][]docker.PortBinding{docker.Port(port): {{HostIP: "127.0.0.1", HostPort: hostPort}}},
		}, func(hc *docker.HostConfig) {
			hc.PublishAllPorts = false
			hc.RestartPolicy = docker.RestartPolicy{Name: "no"}
		})
		return err
	})
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	return &Node{Name: name, ID: r.Container.ID, HostAddr: "127.0.0.1:" + hostPort, env: e}
}

func (e *Env) startEtcd() {
	var initial []string
	names := make([]string, 3)
	for i := range names {
		names[i] = fmt.Sprintf("llc-%s-etcd%d", e.RunID, i)
		initial = append(initial, fmt.Sprintf("etcd%d=http://%s:2380", i, names[i]))
	}
	for i, name := range names {
		e.Etcd = append(e.Etcd, e.run(name, e.image("etcd"), []string{
			"--name", fmt.Sprintf("etcd%d", i),
			"--data-dir", "/data",
			"--listen-client-urls", "http://0.0.0.0:2379",
			"--advertise-client-urls", "http://" + name + ":2379",
			"--listen-peer-urls", "http://0.0.0.0:2380",
			"--initial-advertise-peer-urls", "http://" + name + ":2380",
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new",
			"--initial-cluster-token", "llc-" + e.RunID,
			"--heartbeat-interval", strconv.Itoa(int(HeartbeatInterval / time.Millisecond)),
			"--election-timeout", strconv.Itoa(int(ElectionTimeout / time.Millisecond)),
			"--log-level", "warn",
		}, etcdClientPort))
	}
	var endpoints []string
	for _, m := range e.Etcd {
		endpoints = append(endpoints, "http://"+m.HostAddr)
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		e.t.Fatalf("etcd client: %v", err)
	}
	e.etcd = c
}

// EtcdEndpoints is what the locklock servers are given: every member, by
// its name on the network.
func (e *Env) EtcdEndpoints() string {
	var eps []string
	for _, m := range e.Etcd {
		eps = append(eps, "http://"+m.Name+":2379")
	}
	return strings.Join(eps, ",")
}

// EnvProbeInterval names the variable that sets the locklock servers'
// --etcd-probe-interval (0 turns their etcd member probe off), to compare
// runs with and without it.
const EnvProbeInterval = "LOCKLOCK_CLUSTER_PROBE_INTERVAL"

// ServerRequestTimeout is the locklock servers' --etcd-request-timeout: a
// request that etcd cannot answer in time gets 503 after this long.
const ServerRequestTimeout = 2 * time.Second

func (e *Env) startServers() {
	for i := range 3 {
		name := fmt.Sprintf("llc-%s-locklock%d", e.RunID, i)
		cmd := []string{
			"serve", "--engine", "etcd",
			"--etcd-endpoints", e.EtcdEndpoints(),
			"--etcd-prefix", "/locklock-cluster/",
			"--etcd-request-timeout", ServerRequestTimeout.String(),
			"--etcd-dial-timeout", "2s",
			"--addr", "0.0.0.0:8080",
		}
		if e.ProbeInterval != "" {
			cmd = append(cmd, "--etcd-probe-interval", e.ProbeInterval)
		}
		e.Servers = append(e.Servers, e.run(name, e.image("locklock"), cmd, httpPort))
	}
}

// URL is a locklock server's base URL, as the test process reaches it.
func (n *Node) URL() string { return "http://" + n.HostAddr }

// Kill sends SIGKILL to the container's process.
func (n *Node) Kill() error {
	return n.env.Pool.Client.KillContainer(docker.KillContainerOptions{ID: n.ID, Signal: docker.SIGKILL})
}

// Restart starts the killed container again, with its data (etcd's data
// dir lives in the container's own layer) and its published port.
func (n *Node) Restart() error {
	// The kill is asynchronous: wait until docker has seen the process go.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := n.env.Pool.Client.InspectContainer(n.ID)
		if err != nil {
			return err
		}
		if !c.State.Running {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s still running 10s after SIGKILL", n.Name)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return n.env.Pool.Client.StartContainer(n.ID, nil)
}

// Pause freezes every process of the container (the cgroup freezer), as a
// stopped VM or a long GC pause would: sockets stay open, nothing answers.
func (n *Node) Pause() error { return n.env.Pool.Client.PauseContainer(n.ID) }

// Unpause thaws it.
func (n *Node) Unpause() error { return n.env.Pool.Client.UnpauseContainer(n.ID) }

// Disconnect cuts the container off the cluster's network: its peers and
// the locklock servers can no longer reach it, nor it them.
func (n *Node) Disconnect() error {
	return n.env.Pool.Client.DisconnectNetwork(n.env.Network.Network.ID, docker.NetworkConnectionOptions{Container: n.ID, Force: true})
}

// Connect puts it back; its name resolves again through Docker's DNS (its
// address may change, which is why everything names members by name).
func (n *Node) Connect() error {
	return n.env.Pool.Client.ConnectNetwork(n.env.Network.Network.ID, docker.NetworkConnectionOptions{
		Container:      n.ID,
		EndpointConfig: &docker.EndpointConfig{Aliases: []string{n.Name}},
	})
}

// EtcdLeader returns the member that leads the etcd cluster now.
func (e *Env) EtcdLeader(ctx context.Context) (*Node, error) {
	var lastErr error
	for _, m := range e.Etcd {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := e.etcd.Status(sctx, "http://"+m.HostAddr)
		cancel()
		if err != nil {
			lastErr = err
			continue
		}
		e.memberID[st.Header.MemberId] = m
		if st.Leader == 0 {
			lastErr = fmt.Errorf("%s knows no leader", m.Name)
			continue
		}
		if l, ok := e.memberID[st.Leader]; ok {
			return l, nil
		}
		lastErr = fmt.Errorf("leader %x not among the members seen so far", st.Leader)
	}
	return nil, lastErr
}

// WaitHealthy waits until all three etcd members answer and agree on a
// leader, and every locklock server is ready (its /readyz does a
// linearizable etcd read).
func (e *Env) WaitHealthy(within time.Duration) error {
	ctx, cancel := context.WithTimeout(e.ctx, within)
	defer cancel()
	hc := &http.Client{Timeout: time.Second}
	var last error
	for {
		last = e.healthy(ctx, hc)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return last
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (e *Env) healthy(ctx context.Context, hc *http.Client) error {
	leaders := map[uint64]bool{}
	for _, m := range e.Etcd {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := e.etcd.Status(sctx, "http://"+m.HostAddr)
		cancel()
		if err != nil {
			return fmt.Errorf("etcd member %s: %w", m.Name, err)
		}
		e.memberID[st.Header.MemberId] = m
		if st.Leader == 0 {
			return fmt.Errorf("etcd member %s has no leader", m.Name)
		}
		leaders[st.Leader] = true
	}
	if len(leaders) != 1 {
		return fmt.Errorf("etcd members disagree on the leader")
	}
	for _, s := range e.Servers {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL()+"/readyz", nil)
		resp, err := hc.Do(req)
		if err != nil {
			return fmt.Errorf("locklock %s: %w", s.Name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("locklock %s: /readyz %d", s.Name, resp.StatusCode)
		}
	}
	return nil
}

// Logs returns the tail of a container's output, for a failure report.
func (n *Node) Logs(lines int) string {
	var out bytes.Buffer
	_ = n.env.Pool.Client.Logs(docker.LogsOptions{
		Container: n.ID, OutputStream: &out, ErrorStream: &out,
		Stdout: true, Stderr: true, Tail: strconv.Itoa(lines),
	})
	return out.String()
}
