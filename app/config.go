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

	DefaultTTL    time.Duration // expires_in when a request has none
	MaxTTL        time.Duration // largest expires_in
	MaxWait       time.Duration // largest wait
	SweepInterval time.Duration // how often expired locks are reclaimed

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
}

// DefaultConfig is what `locklock serve` runs with when told nothing.
func DefaultConfig() Config {
	return Config{
		Addr:            "127.0.0.1:8080",
		Engine:          EngineBadger,
		DataDir:         "./locklock-data",
		DefaultTTL:      locklock.DefaultTTL,
		MaxTTL:          locklock.DefaultMaxTTL,
		MaxWait:         locklock.DefaultMaxWait,
		SweepInterval:   30 * time.Second,
		ShutdownTimeout: 10 * time.Second,
		Etcd: EtcdConfig{
			DialTimeout:    5 * time.Second,
			RequestTimeout: 5 * time.Second,
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
	default:
		return fmt.Errorf("unknown --engine %q: use memory, badger or etcd", c.Engine)
	}
	if err := validateBaseDomain(c.BaseDomain); err != nil {
		return err
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
