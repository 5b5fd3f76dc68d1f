package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"go.uber.org/dig"

	"github.com/locklock/locklock/app"
)

func serve(args []string, stderr io.Writer, env func(string) (string, bool)) int {
	cfg := app.DefaultConfig()
	fs := flag.NewFlagSet("locklock serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "listen `address`")
	fs.StringVar(&cfg.Engine, "engine", cfg.Engine, "storage `engine`: memory (lost on restart), badger (durable, on disk) or etcd (clustered)")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "`directory` of the badger engine")
	endpoints := fs.String("etcd-endpoints", "", "comma-separated etcd client `URLs` for --engine etcd")
	fs.StringVar(&cfg.Etcd.Username, "etcd-username", "", "etcd `user`, when etcd has authentication on")
	fs.StringVar(&cfg.Etcd.Password, "etcd-password", "", "etcd `password` (prefer LOCKLOCK_ETCD_PASSWORD: flags show in ps)")
	fs.StringVar(&cfg.Etcd.CA, "etcd-ca", "", "PEM `file` of the CA for etcd's TLS certificates")
	fs.StringVar(&cfg.Etcd.Cert, "etcd-cert", "", "PEM `file` of the client certificate for etcd")
	fs.StringVar(&cfg.Etcd.Key, "etcd-key", "", "PEM `file` of the client certificate's key")
	fs.DurationVar(&cfg.Etcd.DialTimeout, "etcd-dial-timeout", cfg.Etcd.DialTimeout, "how long to wait for a connection to etcd")
	fs.DurationVar(&cfg.Etcd.RequestTimeout, "etcd-request-timeout", cfg.Etcd.RequestTimeout, "bound on each etcd request; past it the client gets 503")
	fs.DurationVar(&cfg.Etcd.ProbeInterval, "etcd-probe-interval", cfg.Etcd.ProbeInterval, "how often each etcd member is asked for its status, and how long it has to answer; one that does not answer gets no requests until it does (0: off)")
	fs.StringVar(&cfg.Etcd.Prefix, "etcd-prefix", cfg.Etcd.Prefix, "etcd key `prefix`, so that deployments can share one etcd")
	fs.StringVar(&cfg.KeysFile, "keys-file", "", "JSON `file` of plans and API keys")
	fs.StringVar(&cfg.BaseDomain, "base-domain", "", "base `domain` for custom subdomains (acme.<domain> → namespace acme)")
	trusted := fs.String("trusted-proxies", "", "comma-separated `CIDRs` of proxies whose X-Forwarded-For is believed (for throttling anonymous clients)")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "TLS certificate `file` (PEM); serves HTTPS with --tls-key")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "TLS private key `file` (PEM); both are re-read on SIGHUP")
	fs.StringVar(&cfg.OpsAddr, "ops-addr", "", "separate listen `address` for /metrics, /healthz and /readyz (plain HTTP); the API listener then does not serve them")
	fs.BoolVar(&cfg.UI, "ui", cfg.UI, "serve the dashboard at /ui/ on the --addr listener (--ui=false: 404)")
	fs.BoolVar(&cfg.Pprof, "pprof", false, "serve Go's runtime profiles (CPU, heap, mutex, block, goroutines) at /debug/pprof/ on the --ops-addr listener")
	fs.DurationVar(&cfg.ReadHeaderTimeout, "read-header-timeout", cfg.ReadHeaderTimeout, "how long a client may take to send its request headers")
	fs.IntVar(&cfg.MaxHeaderBytes, "max-header-bytes", cfg.MaxHeaderBytes, "largest request header block, in bytes")
	fs.DurationVar(&cfg.DefaultTTL, "default-ttl", cfg.DefaultTTL, "lifetime of a lock acquired without expires_in")
	fs.DurationVar(&cfg.MaxTTL, "max-ttl", cfg.MaxTTL, "largest expires_in a client may ask for")
	fs.DurationVar(&cfg.MaxWait, "max-wait", cfg.MaxWait, "longest wait a client may ask for")
	fs.DurationVar(&cfg.MaxLockDelay, "max-lock-delay", cfg.MaxLockDelay, "longest lock_delay a client may ask for: how long an expired lock stays barred to others (0: none allowed)")
	fs.IntVar(&cfg.MaxWaiters, "max-waiters", cfg.MaxWaiters, "most acquires waiting for held locks at once on this server; beyond it one gets 503 instead of waiting (0: no limit)")
	fs.IntVar(&cfg.MaxWaitersPerLock, "max-waiters-per-lock", cfg.MaxWaitersPerLock, "most acquires waiting for any one lock at once; beyond it one gets 503 instead of waiting (0: no limit)")
	fs.IntVar(&cfg.MaxWatchers, "max-watchers", cfg.MaxWatchers, "most event streams open at once on this server; beyond it opening one gets 503 (0: no limit)")
	fs.IntVar(&cfg.MaxWatchersPerCaller, "max-watchers-per-caller", cfg.MaxWatchersPerCaller, "most event streams open at once per API key or anonymous client address (0: no limit)")
	fs.DurationVar(&cfg.SweepInterval, "sweep-interval", cfg.SweepInterval, "how often expired locks are removed from storage")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", cfg.ShutdownTimeout, "how long to drain in-flight requests on SIGINT/SIGTERM")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "log `format`: text or json")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: locklock serve [flags]\n\nEvery flag can also be set as LOCKLOCK_<FLAG> in the environment (--data-dir → LOCKLOCK_DATA_DIR).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := applyEnv(fs, env); err != nil {
		fmt.Fprintln(stderr, "locklock serve:", err)
		return exitUsage
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "locklock serve: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	if *endpoints != "" {
		cfg.EtcdEndpoints = strings.Split(*endpoints, ",")
	}
	if *trusted != "" {
		cfg.TrustedProxies = strings.Split(*trusted, ",")
	}
	log, err := newLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		fmt.Fprintln(stderr, "locklock serve:", err)
		return exitUsage
	}
	if err := cfg.Validate(); err != nil {
		log.Error("invalid configuration", "err", err)
		return exitUsage
	}

	a := app.New(cfg, log)
	startCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Start(startCtx); err != nil {
		// fx's dependency chain is for debugging; the user gets one line
		// naming the setting and the cause.
		log.Debug("could not start", "err", err)
		fmt.Fprintln(stderr, startupMessage(err))
		return exitError
	}
	sig := <-a.Wait() // SIGINT, SIGTERM, or a fatal server error
	log.Info("stopping", "signal", sig.Signal)
	stopCtx, cancelStop := context.WithTimeout(context.Background(), cfg.ShutdownTimeout+5*time.Second)
	defer cancelStop()
	if err := a.Stop(stopCtx); err != nil {
		log.Error("unclean stop", "err", err)
		return exitError
	}
	return sig.ExitCode
}

// startupMessage is a start-up failure as one line: the setting at fault
// and the cause when a constructor or hook said which (app.SettingError),
// else the first error under fx's and dig's wrapping. A permission error
// says whom the server runs as, since that is what the user has to match
// (a container's non-root user, systemd's DynamicUser).
func startupMessage(err error) string {
	var msg string
	var setting *app.SettingError
	if errors.As(err, &setting) {
		msg = setting.Error()
	} else {
		msg = dig.RootCause(err).Error()
	}
	if errors.Is(err, os.ErrPermission) {
		msg += fmt.Sprintf(" (running as uid %d)", os.Getuid())
	}
	return "locklock: " + msg
}

// applyEnv sets every flag that has a LOCKLOCK_* variable, before the
// command line is parsed, so that flags win.
func applyEnv(fs *flag.FlagSet, env func(string) (string, bool)) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		name := "LOCKLOCK_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := env(name); ok && err == nil {
			if setErr := fs.Set(f.Name, v); setErr != nil {
				err = fmt.Errorf("environment %s=%q: %w", name, v, setErr)
			}
		}
	})
	return err
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format %q: use text or json", format)
	}
}
