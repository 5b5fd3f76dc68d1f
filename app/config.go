package app

import (
	"errors"
	"fmt"
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
	KeysFile      string
	BaseDomain    string
	TLSCert       string
	TLSKey        string

	DefaultTTL    time.Duration // expires_in when a request has none
	MaxTTL        time.Duration // largest expires_in
	MaxWait       time.Duration // largest wait
	SweepInterval time.Duration // how often expired locks are reclaimed

	// ShutdownTimeout bounds draining in-flight requests on stop.
	ShutdownTimeout time.Duration
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
		// Accepted on the command line so that scripts can be written
		// against the final interface, refused until it exists.
		return errors.New("--engine etcd is not available in this version yet; use memory or badger")
	default:
		return fmt.Errorf("unknown --engine %q: use memory, badger or etcd", c.Engine)
	}
	if c.KeysFile != "" {
		return errors.New("--keys-file (API keys and plans) is not available in this version yet")
	}
	if c.BaseDomain != "" {
		return errors.New("--base-domain (custom subdomains) is not available in this version yet")
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
