package app

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/locklock/locklock/locklock"
)

// Engine names accepted by Config.Engine.
const (
	EngineMemory = "memory"
	EngineBadger = "badger"
	EngineEtcd   = "etcd"
)

// Config is everything the standalone server can be told. cmd/locklock fills
// it from flags and LOCKLOCK_* environment variables.
type Config struct {
	Addr          string   // listen address
	OpsAddr       string   // optional separate listener for /metrics, /healthz, /readyz
	Pprof         bool     // serve Go's profiles at /debug/pprof/ on the ops listener
	UI            bool     // serve the dashboard at /ui/ on the API listener (API.md §11)
	Engine        string   // memory | badger | etcd
	DataDir       string   // Badger's directory
	EtcdEndpoints []string // etcd client URLs
	Etcd          EtcdConfig
	KeysFile      string // plans, anonymous policy and API keys (API.md §5)
	BaseDomain    string // acme.<BaseDomain> serves namespace acme
	// TrustedProxies are CIDRs of proxies whose X-Forwarded-For is believed
	// when throttling anonymous clients by address.
	TrustedProxies []string
	TLSCert        string
	TLSKey         string

	// ReadHeaderTimeout cuts off clients that send their headers slowly
	// (slowloris); MaxHeaderBytes bounds the header block.
	ReadHeaderTimeout time.Duration
	MaxHeaderBytes    int

	DefaultTTL    time.Duration // expires_in when a request has none
	MaxTTL        time.Duration // largest expires_in
	MaxWait       time.Duration // largest wait
	MaxLockDelay  time.Duration // largest lock_delay (API.md §8)
	SweepInterval time.Duration // how often expired locks are reclaimed

	// MaxWaiters caps the acquires waiting (long poll) at once on this
	// server, and MaxWaitersPerLock those waiting for any one lock; 0 means
	// no cap. Beyond a cap, an acquire with a wait still gets a free lock,
	// but for a held one it is answered 503 with Retry-After at once
	// instead of waiting (locklock.WithMaxWaiters).
	MaxWaiters        int
	MaxWaitersPerLock int

	// MaxWatchers caps the event streams open at once on this server, and
	// MaxWatchersPerCaller those of one API key or anonymous address; 0
	// means no cap. Beyond either, opening a stream is answered 503.
	MaxWatchers          int
	MaxWatchersPerCaller int

	// ShutdownTimeout bounds draining in-flight requests on stop.
	ShutdownTimeout time.Duration
}

// EtcdConfig is how to reach etcd for the etcd engine.
type EtcdConfig struct {
	Username, Password string        // etcd authentication, if enabled
	CA                 string        // PEM file of the CA that signed etcd's certificates
	Cert, Key          string        // PEM files of a client certificate, for etcd's client-cert auth
	DialTimeout        time.Duration // how long to wait for a connection
	RequestTimeout     time.Duration // bound on each etcd request; past it the answer is 503
	Prefix             string        // key prefix, so deployments can share one etcd
	ProbeInterval      time.Duration // how often each member must answer a status request to get requests (etcdprobe); 0: off
}

// DefaultConfig is what `locklock serve` runs with when told nothing.
func DefaultConfig() Config {
	return Config{
		Addr:                 "127.0.0.1:8080",
		Engine:               EngineBadger,
		UI:                   true,
		DataDir:              "./locklock-data",
		DefaultTTL:           locklock.DefaultTTL,
		MaxTTL:               locklock.DefaultMaxTTL,
		MaxWait:              locklock.DefaultMaxWait,
		MaxLockDelay:         locklock.DefaultMaxLockDelay,
		MaxWaiters:           locklock.DefaultMaxWaiters,
		MaxWaitersPerLock:    locklock.DefaultMaxWaitersPerLock,
		MaxWatchers:          locklock.DefaultMaxWatchers,
		MaxWatchersPerCaller: locklock.DefaultMaxWatchersPerCaller,
		SweepInterval:        30 * time.Second,
		ShutdownTimeout:      10 * time.Second,
		ReadHeaderTimeout:    10 * time.Second,
		MaxHeaderBytes:       64 << 10,
		Etcd: EtcdConfig{
			DialTimeout:    5 * time.Second,
			RequestTimeout: 5 * time.Second,
			ProbeInterval:  500 * time.Millisecond,
			Prefix:         "/locklock/",
		},
	}
}

// Validate reports the first setting that cannot work, in words an operator
// can act on.
func (c Config) Validate() error {
	switch c.Engine {
	case EngineMemory:
	case EngineBadger:
		if c.DataDir == "" {
			return errors.New("--data-dir must name a directory for the badger engine")
		}
	case EngineEtcd:
		if len(c.EtcdEndpoints) == 0 {
			return errors.New("--engine etcd needs --etcd-endpoints (comma-separated client URLs)")
		}
		if (c.Etcd.Cert == "") != (c.Etcd.Key == "") {
			return errors.New("--etcd-cert and --etcd-key go together: give both or neither")
		}
		if c.Etcd.Password != "" && c.Etcd.Username == "" {
			return errors.New("--etcd-password needs --etcd-username")
		}
		if c.Etcd.RequestTimeout <= 0 || c.Etcd.DialTimeout <= 0 {
			return errors.New("--etcd-request-timeout and --etcd-dial-timeout must be positive")
		}
		if c.Etcd.ProbeInterval < 0 {
			return errors.New("--etcd-probe-interval cannot be negative (0 turns the probe off)")
		}
	default:
		return fmt.Errorf("unknown --engine %q: use memory, badger or etcd", c.Engine)
	}
	if err := validateBaseDomain(c.BaseDomain); err != nil {
		return err
	}
	if c.ReadHeaderTimeout <= 0 || c.MaxHeaderBytes < 1024 {
		return errors.New("--read-header-timeout must be positive and --max-header-bytes at least 1024")
	}
	if c.OpsAddr != "" && c.OpsAddr == c.Addr && !strings.HasSuffix(c.Addr, ":0") {
		return errors.New("--ops-addr must differ from --addr")
	}
	if c.Pprof && c.OpsAddr == "" {
		// Profiles show code paths and stacks and a CPU profile costs the
		// server; they belong on the operators' listener, not the API's.
		return errors.New("--pprof needs --ops-addr: profiles are served only on the ops listener")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("--tls-cert and --tls-key go together: give both or neither")
	}
	if c.DefaultTTL < time.Second || c.MaxTTL < c.DefaultTTL {
		return fmt.Errorf("the default TTL (%v) must be at least 1s and at most the maximum TTL (%v)", c.DefaultTTL, c.MaxTTL)
	}
	if c.MaxWait < 0 {
		return errors.New("the maximum wait cannot be negative")
	}
	if c.MaxLockDelay < 0 {
		return errors.New("--max-lock-delay cannot be negative (0 allows no lock-delay)")
	}
	if c.MaxWaiters < 0 || c.MaxWaitersPerLock < 0 {
		return errors.New("--max-waiters and --max-waiters-per-lock cannot be negative (0 means no limit)")
	}
	if c.MaxWatchers < 0 || c.MaxWatchersPerCaller < 0 {
		return errors.New("--max-watchers and --max-watchers-per-caller cannot be negative (0 means no limit)")
	}
	return nil
}

// validateBaseDomain accepts a DNS name such as locks.example.com: lower
// case, at least two labels, no scheme, port or path.
func validateBaseDomain(d string) error {
	if d == "" {
		return nil
	}
	bad := fmt.Errorf("--base-domain %q must be a DNS name such as locks.example.com (lower case, no scheme, port or path)", d)
	labels := strings.Split(strings.TrimSuffix(d, "."), ".")
	if len(labels) < 2 {
		return bad
	}
	for _, l := range labels {
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return bad
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return bad
			}
		}
	}
	return nil
}
