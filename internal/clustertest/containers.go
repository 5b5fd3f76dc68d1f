package clustertest

import (
	"bytes"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/ory/dockertest/v3"
	docker "github.com/ory/dockertest/v3/docker"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

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

// Logs returns the tail of a container's output, for a failure report.
func (n *Node) Logs(lines int) string {
	var out bytes.Buffer
	_ = n.env.Pool.Client.Logs(docker.LogsOptions{
		Container: n.ID, OutputStream: &out, ErrorStream: &out,
		Stdout: true, Stderr: true, Tail: strconv.Itoa(lines),
	})
	return out.String()
}
