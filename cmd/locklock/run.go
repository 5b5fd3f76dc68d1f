package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/locklock/locklock/transport/client"
)

// Exit codes of run itself, as timeout(1) and env(1) use them.
const (
	exitCannotRun   = 126 // CMD was found but could not be started
	exitCmdNotFound = 127 // CMD was not found
)

// runCommand is `locklock run TARGET [flags] -- CMD ARGS…`: CMD runs while
// the lock (or a slot of the semaphore) is held, and never without it.
func runCommand(args []string, stderr io.Writer, env func(string) (string, bool)) int {
	const name = "locklock run"
	fs, f := newLockFlagSet(name, stderr, "secret", "ttl", "wait", "holder", "metadata", "lock-delay", "limit", "weight")
	f.ttl = 30 * time.Second
	fs.Lookup("ttl").DefValue = "30s"
	fs.Lookup("ttl").Usage = "lock lifetime, whole seconds (rounded up); refreshed every third of it while CMD runs"
	grace := fs.Duration("grace", 5*time.Second, "after SIGTERM, how long CMD has before SIGKILL when the lock is lost (at most a quarter of --ttl)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s TARGET [flags] -- CMD [ARGS...]\n%s\nFlags:\n", name, runHelp)
		fs.PrintDefaults()
	}
	dash := slices.Index(args, "--")
	if dash < 0 {
		if slices.ContainsFunc(args, isHelp) {
			fs.Usage()
			return exitOK
		}
		fmt.Fprintf(stderr, "%s: want TARGET [flags] -- CMD [ARGS...]; the command comes after --\n", name)
		return exitUsage
	}
	command := args[dash+1:]
	positional, err := parseLockArgs(fs, args[:dash], env)
	if err != nil {
		return parseFailure(err)
	}
	target, c, code := lockTarget("run", fs, positional, f, stderr)
	if c == nil {
		return code
	}
	if len(command) == 0 {
		fmt.Fprintf(stderr, "%s: no command after --\n", name)
		return exitUsage
	}
	if f.ttl < time.Second || *grace < 0 {
		fmt.Fprintf(stderr, "%s: --ttl must be at least 1s and --grace not negative\n", name)
		return exitUsage
	}
	r := &runner{name: name, stderr: stderr, client: c, target: target, flags: f, grace: *grace, command: command}
	return r.run()
}

const runHelp = `
Acquires TARGET (uuid/<uuid> or key/<name>), then runs CMD in a process group
of its own with LOCKLOCK_FENCING_TOKEN, LOCKLOCK_LOCK and LOCKLOCK_NAMESPACE in
its environment (and without LOCKLOCK_SECRET, LOCKLOCK_API_KEY and
LOCKLOCK_ETCD_PASSWORD: the job cannot release the lock or act with the key),
refreshing the lock every third of --ttl. SIGINT, SIGTERM and SIGHUP are
passed on to CMD's group. When CMD exits, anything it left running in its
group is stopped, the lock is released, and run exits with CMD's code
(128+N if a signal N killed it).

With a semaphore, semaphore/<kind>/<name> --limit N [--weight W], run holds
a slot of it instead, so that at most N units' worth of jobs run at once
(--weight N: this job alone). CMD's environment then has
LOCKLOCK_FENCING_TOKEN, LOCKLOCK_NAMESPACE, LOCKLOCK_SEMAPHORE (the TARGET),
LOCKLOCK_SLOT (the slot id), LOCKLOCK_WEIGHT and LOCKLOCK_LIMIT. Everything
else holds for the slot as for a lock.

If a refresh cannot be confirmed in time, or the server reports the lock
gone (expired, or released by someone else), CMD's whole group gets SIGTERM,
and SIGKILL after --grace, both before the lock can lapse; run then exits 1
saying the lock was lost. Without --secret, run makes a random one.

--holder auto names run's own process (hostname:pid), which holds the lock.

Exit codes of run itself: 2 usage (a --limit other than the semaphore's
too), 3 lock held or in its lock-delay, or semaphore full (CMD not started),
5 refused, 126 CMD could not be started, 127 CMD not found, 1 other errors.
`

func isHelp(s string) bool { return s == "-h" || s == "--help" || s == "-help" || s == "help" }

type runner struct {
	name    string
	stderr  io.Writer
	client  *client.Client
	target  cliTarget
	flags   *lockFlags
	grace   time.Duration
	command []string

	// mu orders signals and the acquire timeout against the start of CMD:
	// before it they abort, after it signals go to CMD's group.
	mu          sync.Mutex
	job         job       // CMD's processes, once started
	interrupted os.Signal // a signal that came before CMD started
	timedOut    bool
	interrupt   context.CancelFunc
}

// timing: how long before the lock could lapse run stops CMD. safety
// covers clock drift and the time a kill takes; grace is capped so that
// SIGKILL, too, lands before the lapse whatever --ttl is.
func (r *runner) timing() (grace, safety time.Duration) {
	ttl := time.Duration((r.flags.ttl+time.Second-1)/time.Second) * time.Second
	safety = min(max(ttl/10, 100*time.Millisecond), 2*time.Second)
	return min(r.grace, ttl/4), safety
}

func (r *runner) run() int {
	grace, safety := r.timing()
	// The Held's context derives from this one, so only what comes before
	// CMD starts may cancel it: a signal, or the acquire's timeout.
	ctx, interrupt := context.WithCancel(context.Background())
	defer interrupt()
	r.interrupt = interrupt
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(signals)
	go r.forward(signals)
	timeout := time.AfterFunc(r.flags.deadline(), r.acquireTimedOut)
	defer timeout.Stop()

	opts := append([]client.LockOption{client.WithWait(r.flags.wait), client.WithSafetyMargin(safety + grace)}, r.flags.labels()...)
	if r.flags.secret != "" {
		opts = append(opts, client.WithSecret(r.flags.secret))
	}
	held, vars, err := r.hold(ctx, opts)
	if err != nil {
		return r.fail(err)
	}
	// Best effort: without it, daemonising grandchildren escape.
	_ = adoptOrphans()
	cmd, err := r.start(held, vars)
	if err != nil {
		r.release(held)
		if se, ok := err.(*startError); ok {
			fmt.Fprintf(r.stderr, "%s: %v\n", r.name, se)
			return se.exitCode()
		}
		return r.fail(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	var lost error
	select {
	case err = <-exited:
	case <-held.Context().Done():
		lost = held.Lost()
		if lost == nil { // not expected: only loss ends it now
			lost = context.Cause(held.Context())
		}
		fmt.Fprintf(r.stderr, "%s: %v; stopping the command\n", r.name, oneLine(lost))
		err = r.stopJob(exited, time.Now().Add(grace), held.ValidUntil().Add(-safety))
	}
	// Whatever CMD left behind in its group must not outlive the lock.
	r.stopLeftovers(grace)
	r.release(held)
	if lost != nil {
		fmt.Fprintf(r.stderr, "%s: %s lost; the command was stopped\n", r.name, r.target.noun())
		return exitError
	}
	return commandExitCode(err)
}

// holding is a held lock or slot: what run needs of client.Held and
// client.HeldSlot.
type holding interface {
	Context() context.Context
	Lost() error
	ValidUntil() time.Time
	Release(ctx context.Context) error
}

// hold takes and keeps the lock, or a slot of the semaphore, and returns
// the variables that tell CMD what it holds.
func (r *runner) hold(ctx context.Context, opts []client.LockOption) (holding, []string, error) {
	if !r.target.semaphore {
		h, err := r.client.Hold(ctx, r.target.Target, r.flags.ttl, opts...)
		if err != nil {
			return nil, nil, err
		}
		l := h.Lock()
		return h, []string{
			"LOCKLOCK_FENCING_TOKEN=" + strconv.FormatUint(l.FencingToken, 10),
			"LOCKLOCK_LOCK=" + l.Target().String(),
			"LOCKLOCK_NAMESPACE=" + l.Namespace,
		}, nil
	}
	if r.flags.weightSet {
		opts = append(opts, client.WithWeight(r.flags.weight))
	}
	h, err := r.client.Semaphore(r.target.Target, r.flags.limit).Hold(ctx, r.flags.ttl, opts...)
	if err != nil {
		return nil, nil, err
	}
	sl := h.Slot()
	return h, []string{
		"LOCKLOCK_FENCING_TOKEN=" + strconv.FormatUint(sl.FencingToken, 10),
		"LOCKLOCK_NAMESPACE=" + sl.Namespace,
		"LOCKLOCK_SEMAPHORE=" + cliTarget{Target: sl.Target(), semaphore: true}.String(),
		"LOCKLOCK_SLOT=" + sl.ID,
		"LOCKLOCK_WEIGHT=" + strconv.Itoa(sl.Weight),
		"LOCKLOCK_LIMIT=" + strconv.Itoa(sl.Limit),
	}, nil
}

// forward passes signals on to CMD's group once it runs; before that, a
// signal aborts the acquire.
func (r *runner) forward(signals <-chan os.Signal) {
	for sig := range signals {
		r.mu.Lock()
		if r.job.group != 0 {
			r.job.signal(sig.(syscall.Signal))
		} else if r.interrupted == nil {
			r.interrupted = sig
			r.interrupt()
		}
		r.mu.Unlock()
	}
}

func (r *runner) acquireTimedOut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.job.group == 0 && r.interrupted == nil {
		r.timedOut = true
		r.interrupt()
	}
}

// fail reports an acquire that did not succeed.
func (r *runner) fail(err error) int {
	r.mu.Lock()
	sig, timedOut := r.interrupted, r.timedOut
	r.mu.Unlock()
	switch {
	case sig != nil:
		fmt.Fprintf(r.stderr, "%s: interrupted by %v before the command started\n", r.name, sig)
		return 128 + int(sig.(syscall.Signal))
	case timedOut:
		fmt.Fprintf(r.stderr, "%s: could not acquire %s within %v\n", r.name, r.target, r.flags.deadline())
		return exitError
	}
	fmt.Fprintf(r.stderr, "%s: %s\n", r.name, oneLine(err))
	return exitCode(err)
}

// start runs CMD in a process group of its own, so that every process it
// makes can be signalled at once, with vars in its environment. It does
// not start CMD when a signal or the timeout came just as the lock was
// granted.
func (r *runner) start(held holding, vars []string) (*exec.Cmd, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if held.Context().Err() != nil {
		return nil, context.Cause(held.Context())
	}
	cmd := exec.Command(r.command[0], r.command[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = jobEnv(os.Environ(), vars)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, &startError{err}
	}
	r.job.group = cmd.Process.Pid // Setpgid: the group's id is the leader's pid
	return cmd, nil
}

// credentialEnv are the variables that carry credentials run may have
// used. The job does not get them: it could release the lock run holds
// (with the secret) or act as the caller (with the key), and a job is often
// someone else's program.
var credentialEnv = map[string]bool{
	"LOCKLOCK_SECRET":        true,
	"LOCKLOCK_API_KEY":       true,
	"LOCKLOCK_ETCD_PASSWORD": true,
}

// jobVars are the variables run sets for CMD, of a lock or a slot. An
// outer run's are dropped, so that a job under a lock inside a job under a
// semaphore (or the other way round) sees only what it holds itself.
var jobVars = map[string]bool{
	"LOCKLOCK_FENCING_TOKEN": true, "LOCKLOCK_LOCK": true, "LOCKLOCK_NAMESPACE": true,
	"LOCKLOCK_SEMAPHORE": true, "LOCKLOCK_SLOT": true, "LOCKLOCK_WEIGHT": true, "LOCKLOCK_LIMIT": true,
}

// jobEnv is CMD's environment: the caller's minus credentials (and minus
// stale copies of the variables run sets), plus set.
func jobEnv(environ []string, set []string) []string {
	env := make([]string, 0, len(environ)+len(set))
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if credentialEnv[name] || jobVars[name] {
			continue
		}
		env = append(env, kv)
	}
	return append(env, set...)
}

// startError is CMD failing to start, as opposed to run aborting.
type startError struct{ err error }

func (e *startError) Error() string { return e.err.Error() }

func (e *startError) exitCode() int {
	if errors.Is(e.err, exec.ErrNotFound) || errors.Is(e.err, os.ErrNotExist) {
		return exitCmdNotFound
	}
	return exitCannotRun
}

// stopJob sends SIGTERM to CMD's job and SIGKILL at killAt or lapseAt,
// whichever is first, unless CMD exits before. It returns CMD's exit status.
func (r *runner) stopJob(exited <-chan error, killAt, lapseAt time.Time) error {
	r.job.signal(syscall.SIGTERM)
	kill := time.NewTimer(time.Until(earliest(killAt, lapseAt)))
	defer kill.Stop()
	select {
	case err := <-exited:
		return err
	case <-kill.C:
		r.job.signal(syscall.SIGKILL)
		return <-exited
	}
}

// stopLeftovers stops what CMD left running: SIGTERM, then SIGKILL after
// grace. The lock is released only afterwards, so nothing CMD started
// works on without it.
func (r *runner) stopLeftovers(grace time.Duration) {
	if !r.job.alive() {
		return
	}
	fmt.Fprintf(r.stderr, "%s: the command left processes running; stopping them\n", r.name)
	r.job.signal(syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for r.job.alive() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	for end := time.Now().Add(time.Second); r.job.alive() && time.Now().Before(end); {
		r.job.signal(syscall.SIGKILL)
		time.Sleep(10 * time.Millisecond)
	}
}

// release gives the lock back, with a bound: a server that stopped
// answering must not keep run from exiting (the lock expires anyway).
func (r *runner) release(held holding) {
	timeout := min(r.flags.ttl, 10*time.Second)
	if held.Lost() != nil {
		timeout = time.Second // a courtesy: the server is likely unreachable
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := held.Release(ctx); err != nil && held.Lost() == nil {
		fmt.Fprintf(r.stderr, "%s: could not release %s (it expires by itself): %s\n", r.name, r.target, oneLine(err))
	}
}

// commandExitCode is CMD's exit code, 128+N when signal N killed it.
func commandExitCode(err error) int {
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		if err != nil {
			return exitError
		}
		return exitOK
	}
	if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return exit.ExitCode()
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
