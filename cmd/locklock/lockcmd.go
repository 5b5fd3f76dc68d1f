package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/locklock/locklock/internal/abbrev"
	"github.com/locklock/locklock/locklock"
	"github.com/locklock/locklock/transport/client"
)

// Exit codes of the lock commands (acquire, release, status, refresh, run).
const (
	exitHeld     = 3 // the lock is held by someone else, or the semaphore full
	exitNotFound = 4 // no such lock, semaphore or slot
	exitRefused  = 5 // secret mismatch, unauthorized, forbidden
)

// defaultServer is where the lock commands look for a server.
const defaultServer = "http://127.0.0.1:8080"

// lockFlags are the flags every lock command shares.
type lockFlags struct {
	server    string
	apiKey    string
	secret    string
	ttl       time.Duration
	wait      time.Duration
	timeout   time.Duration
	holder    string
	metadata  metadataFlag
	lockDelay time.Duration
	limit     int  // semaphores
	weight    int  // semaphores, with weightSet
	weightSet bool // --weight was given (0 is refused, not the default)
	force     bool // release only: an operator's forced release
}

// newLockFlagSet defines the flags every lock command has, and those of
// "secret", "ttl", "wait", "holder", "metadata", "lock-delay", "limit" and
// "weight" that it names.
func newLockFlagSet(name string, stderr io.Writer, optional ...string) (*flag.FlagSet, *lockFlags) {
	f := &lockFlags{}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.server, "server", defaultServer, "Locklock server `URL` (env LOCKLOCK_SERVER); /v1/api is added to a URL without a path")
	fs.StringVar(&f.apiKey, "api-key", "", "API `key` (env LOCKLOCK_API_KEY; prefer it: flags show in ps)")
	for _, opt := range optional {
		switch opt {
		case "secret":
			fs.StringVar(&f.secret, "secret", "", "the lock's `secret` (env LOCKLOCK_SECRET; prefer it: flags show in ps)")
		case "ttl":
			fs.DurationVar(&f.ttl, "ttl", 0, "lock lifetime, whole seconds (rounded up); default: the server's (30 days)")
		case "wait":
			fs.DurationVar(&f.wait, "wait", 0, "if the lock is held, wait up to this long for it")
		case "holder":
			fs.StringVar(&f.holder, "holder", "", "who holds the lock, shown to everyone who may read it (`auto`: hostname:pid); default: none")
		case "metadata":
			f.metadata = metadataFlag{}
			fs.Var(f.metadata, "metadata", "a label of the lock, `NAME=VALUE` (repeat the flag for more)")
		case "lock-delay":
			fs.DurationVar(&f.lockDelay, "lock-delay", 0, "if the lock expires, keep others off it this long after (whole seconds, rounded up; at most the server's --max-lock-delay); not for semaphores")
		case "limit":
			fs.IntVar(&f.limit, "limit", 0, "semaphores: how many units may be held at once, 1–10000 (required); it must match the live slots' limit")
		case "weight":
			fs.IntVar(&f.weight, "weight", 1, "semaphores: how many units the slot holds, 1 to --limit")
		case "force":
			fs.BoolVar(&f.force, "force", false, "operator keys only: end the lock or slot whatever its secret (Locklock-Force: true); it is announced as revoked, a lock's lock-delay starts, and the server logs who did it")
		}
	}
	fs.DurationVar(&f.timeout, "timeout", 0, "give up after this long (default: --wait plus 30s)")
	return fs, f
}

// commandFlags says which optional flags each command has.
var commandFlags = map[string][]string{
	"acquire": {"secret", "ttl", "wait", "holder", "metadata", "lock-delay", "limit", "weight"},
	"release": {"secret", "force"},
	"refresh": {"secret", "ttl"},
	"status":  {},
}

// lockEnv are the environment variables the lock commands read. Only these:
// a job under `locklock run` must not pick up, say, a stray LOCKLOCK_WAIT.
var lockEnv = map[string]string{"server": "LOCKLOCK_SERVER", "api-key": "LOCKLOCK_API_KEY", "secret": "LOCKLOCK_SECRET"}

// parseLockArgs parses flags before and after the positional arguments (Go's
// flag package stops at the first one), so both `acquire --ttl 1m uuid/…`
// and `acquire uuid/… --ttl 1m` work. Environment values come first, so
// that flags win.
func parseLockArgs(fs *flag.FlagSet, args []string, env func(string) (string, bool)) ([]string, error) {
	for flagName, envName := range lockEnv {
		if v, ok := env(envName); ok && fs.Lookup(flagName) != nil {
			_ = fs.Set(flagName, v) // string flags: cannot fail
		}
	}
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, nil
		}
		positional, args = append(positional, args[0]), args[1:]
	}
}

// lockCommand is acquire, release, status or refresh: one request, the lock
// object (or the slot, or the semaphore) as JSON on stdout, an error as one
// line on stderr.
func lockCommand(cmd string, args []string, stdout, stderr io.Writer, env func(string) (string, bool)) int {
	name := "locklock " + cmd
	fs, f := newLockFlagSet(name, stderr, commandFlags[cmd]...)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s TARGET [flags]\n\nTARGET is a lock, uuid/<uuid> or key/<name>, or a semaphore,\nsemaphore/uuid/<uuid> or semaphore/key/<name>, or one of its slots,\nsemaphore/<kind>/<name>/<slot>.\n%s\nFlags:\n", name, lockCommandHelp)
		fs.PrintDefaults()
	}
	positional, err := parseLockArgs(fs, args, env)
	if err != nil {
		return parseFailure(err)
	}
	target, c, code := lockTarget(cmd, fs, positional, f, stderr)
	if c == nil {
		return code
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, f.deadline())
	defer cancel()

	var v any
	switch {
	case target.semaphore:
		v, err = semaphoreCommand(ctx, cmd, target, c, f)
	case cmd == "acquire":
		v, err = c.Acquire(ctx, target.Target, f.acquireOpts()...)
	case cmd == "release":
		v, err = c.Release(ctx, target.Target, f.releaseOpts()...)
	case cmd == "refresh":
		v, err = c.Refresh(ctx, target.Target, client.WithSecret(f.secret), client.WithTTL(f.ttl))
	case cmd == "status":
		v, err = c.Get(ctx, target.Target)
	}
	if err != nil {
		fmt.Fprintln(stderr, name+":", oneLine(err))
		return exitCode(err)
	}
	out, _ := json.Marshal(v)
	fmt.Fprintf(stdout, "%s\n", out)
	return exitOK
}

// releaseOpts are release's options, of a lock or a slot: the secret, or
// none when forced (a forced release needs none, and one from the
// environment must not travel for nothing).
func (f *lockFlags) releaseOpts() []client.LockOption {
	if f.force {
		return []client.LockOption{client.Forced()}
	}
	return []client.LockOption{client.WithSecret(f.secret)}
}

// acquireOpts are acquire's options, of a lock or a slot.
func (f *lockFlags) acquireOpts() []client.LockOption {
	opts := append([]client.LockOption{client.WithTTL(f.ttl), client.WithWait(f.wait)}, f.labels()...)
	if f.secret == "" {
		// A secret made here could not be shown, so the lock could not
		// be released; without one it is open, as with curl.
		return append(opts, client.Unprotected())
	}
	return append(opts, client.WithSecret(f.secret))
}

const lockCommandHelp = `
Prints the lock object as JSON on standard output. Exit codes: 0 done,
1 other error, 2 usage, 3 lock held, 4 lock not found, 5 refused (secret
mismatch, unauthorized, forbidden).

acquire without --secret takes an open lock that anyone may release. A
lock-delay that keeps others off counts as held (3).

release --force, with an API key on an operator plan, ends a lock or a slot
of the key's namespace without its secret: it is announced as revoked, a
lock's lock-delay starts as on expiry, and the server logs a "forced
release" line naming the key. Any other key exits 5 (forbidden).

Semaphores: acquire semaphore/<kind>/<name> --limit N [--weight W] takes a
slot and prints it; its "slot" is the id that release and refresh take
(semaphore/<kind>/<name>/<slot>, with the --secret it was acquired with).
status prints the semaphore (its limit, the units in use and every slot)
or, given a slot id, the slot. A full semaphore exits 3, a semaphore or
slot that is not there 4, and a --limit other than the live slots' 2.
`

// parseFailure is the exit code for a flag error, which the flag package
// has printed already, with the usage.
func parseFailure(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	return exitUsage
}

// lockTarget checks the one positional argument and the flags (against
// what cmd may do with a lock, a semaphore or a slot), resolves --holder
// auto, and makes the client. A nil client means stop with the returned
// exit code.
func lockTarget(cmd string, fs *flag.FlagSet, positional []string, f *lockFlags, stderr io.Writer) (cliTarget, *client.Client, int) {
	name := "locklock " + cmd
	if len(positional) != 1 {
		fmt.Fprintf(stderr, "%s: want exactly one TARGET (uuid/<uuid>, key/<name> or semaphore/<kind>/<name>), got %d arguments\n", name, len(positional))
		return cliTarget{}, nil, exitUsage
	}
	target, err := parseCLITarget(positional[0])
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return cliTarget{}, nil, exitUsage
	}
	if f.ttl < 0 || f.wait < 0 || f.timeout < 0 || f.lockDelay < 0 {
		fmt.Fprintf(stderr, "%s: --ttl, --wait, --timeout and --lock-delay must not be negative\n", name)
		return cliTarget{}, nil, exitUsage
	}
	if code := f.checkTarget(cmd, fs, target, stderr); code != exitOK {
		return cliTarget{}, nil, code
	}
	if f.holder == "auto" {
		host, err := os.Hostname()
		if err != nil {
			fmt.Fprintf(stderr, "%s: --holder auto: %v\n", name, err)
			return cliTarget{}, nil, exitError
		}
		f.holder = host + ":" + strconv.Itoa(os.Getpid())
	}
	c, err := client.New(f.server, client.WithAPIKey(f.apiKey), client.WithUserAgent("locklock-cli/"+versionString()))
	if err != nil {
		fmt.Fprintf(stderr, "%s: --server: %v\n", name, err)
		return cliTarget{}, nil, exitUsage
	}
	return target, c, exitOK
}

// deadline bounds a command: the wait it asked for, plus time for the
// server to answer and for retries.
func (f *lockFlags) deadline() time.Duration {
	if f.timeout > 0 {
		return f.timeout
	}
	return f.wait + 30*time.Second
}

// labels are the acquire options of --holder, --metadata and --lock-delay.
func (f *lockFlags) labels() []client.LockOption {
	var opts []client.LockOption
	if f.holder != "" {
		opts = append(opts, client.WithHolder(f.holder))
	}
	if len(f.metadata) > 0 {
		opts = append(opts, client.WithMetadata(f.metadata))
	}
	if f.lockDelay > 0 {
		opts = append(opts, client.WithLockDelay(f.lockDelay))
	}
	return opts
}

// metadataFlag collects repeated --metadata NAME=VALUE flags. A name given
// twice is refused: which of two values was meant is a guess.
type metadataFlag map[string]string

func (m metadataFlag) String() string {
	var kv []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		kv = append(kv, k+"="+m[k])
	}
	return strings.Join(kv, ",")
}

func (m metadataFlag) Set(s string) error {
	name, value, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return fmt.Errorf("%q: want NAME=VALUE", abbrev.String(s))
	}
	if _, dup := m[name]; dup {
		return fmt.Errorf("%q is given twice", abbrev.String(name))
	}
	m[name] = value
	return nil
}

// exitCode maps an error to the documented exit codes. A lock-delay counts
// as held, as does a full semaphore: neither can be had now, and will be
// free later. A limit other than the semaphore's is the caller's mistake,
// which waiting does not mend.
func exitCode(err error) int {
	switch {
	case errors.Is(err, locklock.ErrHeld), errors.Is(err, locklock.ErrDelayed), errors.Is(err, locklock.ErrSemaphoreFull):
		return exitHeld
	case errors.Is(err, locklock.ErrNotFound), errors.Is(err, locklock.ErrSemaphoreNotFound), errors.Is(err, locklock.ErrSlotNotFound):
		return exitNotFound
	case errors.Is(err, locklock.ErrSecretMismatch), errors.Is(err, locklock.ErrUnauthorized), errors.Is(err, locklock.ErrForbidden):
		return exitRefused
	case errors.Is(err, locklock.ErrInvalidArgument), errors.Is(err, locklock.ErrInvalidUUID), errors.Is(err, locklock.ErrInvalidName),
		errors.Is(err, locklock.ErrLimitMismatch):
		return exitUsage
	}
	return exitError
}

// oneLine keeps an error message on one line, as promised on stderr.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
