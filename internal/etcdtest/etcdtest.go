// Package etcdtest starts real etcd servers for tests: in-process members
// from go.etcd.io/etcd/server/v3/embed on free loopback ports, with their data
// in t.TempDir(). Nothing needs to be installed. Setting
// LOCKLOCK_ETCD_ENDPOINTS (comma-separated URLs) points single-server tests
// at an external etcd instead.
package etcdtest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// EnvEndpoints names the variable that points tests at an external etcd.
const EnvEndpoints = "LOCKLOCK_ETCD_ENDPOINTS"

// Timing of the test members: 10 ms heartbeats and a 100 ms election
// timeout make leader elections quick and etcd's minimum lease TTL one
// second.
const (
	tickMs     = 10
	electionMs = 100
)

// Member is one embedded etcd server.
type Member struct {
	Name      string
	ClientURL string
	peerURL   string
	dir       string
	cluster   string
	etcd      *embed.Etcd
}

// Endpoints returns client URLs of one etcd: the external one named by
// LOCKLOCK_ETCD_ENDPOINTS, or a fresh embedded member stopped at cleanup.
func Endpoints(t testing.TB) []string {
	t.Helper()
	if env := os.Getenv(EnvEndpoints); env != "" {
		return strings.Split(env, ",")
	}
	return []string{StartCluster(t, 1)[0].ClientURL}
}

// StartCluster starts n members forming one cluster and waits until it has a
// leader. They are stopped at cleanup.
func StartCluster(t testing.TB, n int) []*Member {
	t.Helper()
	members := make([]*Member, n)
	var initial []string
	for i := range members {
		m := &Member{
			Name:      fmt.Sprintf("m%d", i),
			ClientURL: "http://" + freeAddr(t),
			peerURL:   "http://" + freeAddr(t),
			dir:       t.TempDir(),
		}
		members[i] = m
		initial = append(initial, m.Name+"="+m.peerURL)
	}
	errs := make(chan error, n)
	for _, m := range members {
		m.cluster = strings.Join(initial, ",")
		go func() { errs <- m.start(true) }()
	}
	for range members {
		if err := <-errs; err != nil {
			t.Fatalf("start etcd: %v", err)
		}
	}
	t.Cleanup(func() {
		for _, m := range members {
			m.Stop()
		}
	})
	return members
}

func (m *Member) start(fresh bool) error {
	cfg := embed.NewConfig()
	cfg.Name = m.Name
	cfg.Dir = m.dir
	cfg.TickMs, cfg.ElectionMs = tickMs, electionMs
	// bcrypt.MinCost: a sign-in (WithAuth's members) checks the password
	// with bcrypt, which at the default cost takes about a second under the
	// race detector on a loaded machine — longer than a server's readiness
	// check waits, so a test server never got ready.
	cfg.BcryptCost = 4
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cu, _ := url.Parse(m.ClientURL)
	pu, _ := url.Parse(m.peerURL)
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = m.cluster
	cfg.InitialClusterToken = "locklock-test"
	if fresh {
		cfg.ClusterState = embed.ClusterStateFlagNew
	} else {
		cfg.ClusterState = embed.ClusterStateFlagExisting
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return err
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return err
	case <-time.After(60 * time.Second):
		e.Close()
		return fmt.Errorf("etcd member %s not ready after 60s", m.Name)
	}
	m.etcd = e
	return nil
}

// Stop stops the member (its data stays for Restart).
func (m *Member) Stop() {
	if m.etcd != nil {
		m.etcd.Close()
		m.etcd = nil
	}
}

// Restart starts a stopped member again on the same ports and data.
func (m *Member) Restart(t testing.TB) {
	t.Helper()
	if err := m.start(false); err != nil {
		t.Fatalf("restart etcd member %s: %v", m.Name, err)
	}
}

// IsLeader says whether the member is running and leads the cluster.
func (m *Member) IsLeader() bool {
	return m.etcd != nil && m.etcd.Server.Leader() == m.etcd.Server.MemberID()
}

// Client returns a client for endpoints, closed at cleanup.
func Client(t testing.TB, endpoints ...string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// freeAddr returns a loopback address with a port free right now.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// WithAuth starts one member with authentication on: a root user, and user
// with password, whose role may read and write prefix only (as the README's
// etcdctl lines set it up). Nothing is read without credentials.
func WithAuth(t testing.TB, prefix, user, password string) *Member {
	t.Helper()
	if prefix == "" || user == "" || password == "" {
		t.Fatalf("etcd prefix %q, user %q, password set %v: all three are needed", prefix, user, password != "")
	}
	m := StartCluster(t, 1)[0]
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{m.ClientURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	defer c.Close() // it cannot read once authentication is on
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	steps := []func() error{
		func() error { _, err := c.RoleAdd(ctx, "root"); return err },
		func() error { _, err := c.UserAdd(ctx, "root", "root-"+password); return err },
		func() error { _, err := c.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := c.RoleAdd(ctx, user); return err },
		func() error {
			_, err := c.RoleGrantPermission(ctx, user, prefix, clientv3.GetPrefixRangeEnd(prefix), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := c.UserAdd(ctx, user, password); return err },
		func() error { _, err := c.UserGrantRole(ctx, user, user); return err },
		func() error { _, err := c.AuthEnable(ctx); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("etcd auth set-up step %d: %v", i, err)
		}
	}
	if _, err := c.Get(ctx, prefix); err == nil {
		t.Fatal("etcd answers a client without credentials after AuthEnable")
	}
	return m
}
