package app

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/fx"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/locklock/locklock/internal/etcdprobe"
)

// Keepalive of the etcd client's connections. gRPC pings no more often than
// every 10 s (it raises a shorter interval to that), far too slow to keep
// requests off a frozen member (the probe, etcdprobe, does that); the pings
// still close a connection to a member that stopped answering, which ends
// the watches and requests stuck on it (a member left out by the probe
// keeps the streams it already had until they end) and lets gRPC reconnect,
// to a new address too. etcd refuses pings more often than every 5 s
// (--grpc-keepalive-min-time) and, by default, pings on a connection
// without streams, so the client sends none then.
const (
	etcdKeepAliveTime    = 10 * time.Second
	etcdKeepAliveTimeout = 3 * time.Second
)

// newEtcdClient builds the etcd client from the configuration. It does not
// wait for a connection: /readyz tells whether etcd answers. When the member
// probe will run and every endpoint is dialled directly, the client dials
// through conns, for the probe to cut the connections to a member it leaves
// out; conns is nil otherwise.
func newEtcdClient(cfg Config) (client *clientv3.Client, conns *etcdprobe.Conns, err error) {
	ec := cfg.Etcd
	tlsConfig, err := etcdTLS(ec)
	if err != nil {
		return nil, nil, err
	}
	var dialOptions []grpc.DialOption
	if probing(cfg) && allDialledDirectly(cfg.EtcdEndpoints) {
		conns = etcdprobe.NewConns()
		dialOptions = append(dialOptions, grpc.WithContextDialer(conns.Dial))
	}
	ccfg := clientv3.Config{
		Endpoints:            cfg.EtcdEndpoints,
		DialTimeout:          ec.DialTimeout,
		DialKeepAliveTime:    etcdKeepAliveTime,
		DialKeepAliveTimeout: etcdKeepAliveTimeout,
		TLS:                  tlsConfig,
		// The client's own logging is noise here; failures reach the
		// server's log as 503s and readiness.
		Logger:      zap.NewNop(),
		DialOptions: dialOptions,
	}
	login := ec.Username != "" && ec.Password != "" // as clientv3: a user without a password signs in by TLS certificate
	if login {
		// Given a user and password, clientv3.New signs in before it
		// returns and fails when etcd does not answer within the dial
		// timeout: a server started while etcd is down (a rolling etcd, a
		// pod scheduled first) would exit and crash-loop instead of
		// waiting, unready, as it does without authentication. So the
		// client starts with a placeholder token, which makes it carry
		// tokens, and gets the user and password once built: etcd refuses
		// the placeholder like an expired token, and the client's own
		// retry then signs in with them — on the first request etcd
		// answers, exactly as when a real token expires.
		ccfg.Token = unauthenticatedToken
	}
	client, err = clientv3.New(ccfg)
	if err != nil {
		return nil, nil, fmt.Errorf("etcd client for %v: %w", cfg.EtcdEndpoints, err)
	}
	if login {
		// Before any request: from here on the client's interceptors read
		// these fields, and New started nothing that does.
		client.Token = ""
		client.Username, client.Password = ec.Username, ec.Password
	}
	return client, conns, nil
}

// unauthenticatedToken is the etcd token a client with a user and password
// starts with: never valid, so the first request signs in (newEtcdClient).
const unauthenticatedToken = "locklock-not-signed-in"

// probing says whether the etcd member probe runs: with one endpoint there
// is nothing to choose, and an interval of 0 turns it off.
func probing(cfg Config) bool {
	return cfg.Etcd.ProbeInterval > 0 && len(cfg.EtcdEndpoints) > 1
}

// allDialledDirectly: every endpoint is host:port over TCP, reached without
// an HTTP proxy from the environment (a dialer of one's own would bypass
// gRPC's proxy support; a unix socket it does not dial).
func allDialledDirectly(endpoints []string) bool {
	for _, ep := range endpoints {
		if _, ok := etcdprobe.DialAddress(ep); !ok {
			return false
		}
	}
	return true
}

// probeEtcdMembers keeps client's requests off etcd members that do not
// answer, while the app runs (see etcdprobe); conns, if the client dials
// through it, lets the probe cut the connections to a member it leaves out.
func probeEtcdMembers(lc fx.Lifecycle, cfg Config, client *clientv3.Client, conns *etcdprobe.Conns, log *slog.Logger) {
	if !probing(cfg) {
		return
	}
	p := etcdprobe.New(client, etcdprobe.Config{
		Endpoints: cfg.EtcdEndpoints,
		Interval:  cfg.Etcd.ProbeInterval,
		Conns:     conns,
		Log:       log.With("component", "etcdprobe"),
	})
	lc.Append(fx.StartStopHook(p.Start, p.Stop))
}

// etcdTLS returns nil (plain connections) unless a CA or a client
// certificate is configured.
func etcdTLS(ec EtcdConfig) (*tls.Config, error) {
	if ec.CA == "" && ec.Cert == "" {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if ec.CA != "" {
		pem, err := os.ReadFile(ec.CA)
		if err != nil {
			return nil, settingError("--etcd-ca", ec.CA, err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, &SettingError{Flag: "--etcd-ca", Value: ec.CA, Err: errors.New("no PEM certificate found")}
		}
	}
	if ec.Cert != "" {
		pair, err := tls.LoadX509KeyPair(ec.Cert, ec.Key)
		if err != nil {
			return nil, settingError("--etcd-cert/--etcd-key", ec.Cert+" "+ec.Key, err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c, nil
}
