package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
	"github.com/locklock/locklock/transport/client"
)

// runProc is a `locklock run` child process (the test binary, see TestMain):
// run changes process-wide state (signal handlers, child subreaper), so it
// cannot run inside the test process.
type runProc struct {
	cmd    *exec.Cmd
	stderr *os.File
	done   chan struct{}
	code   int
}

func startRun(t *testing.T, s *lockServer, args ...string) *runProc {
	t.Helper()
	return startRunEnv(t, s, nil, args...)
}

// startRunEnv is startRun with extra environment variables for run.
func startRunEnv(t *testing.T, s *lockServer, env []string, args ...string) *runProc {
	t.Helper()
	stderr, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	// atexit_sleep_ms: the race detector would hold every exit for 1 s.
	cmd.Env = append(os.Environ(), "LOCKLOCK_TEST_MAIN=1", "LOCKLOCK_SERVER="+s.URL, "GORACE=atexit_sleep_ms=0",
		"LOCKLOCK_TEST_ARGS="+strings.Join(append([]string{"run"}, args...), "\x1f"))
	cmd.Env = append(cmd.Env, env...)
	// Files, not pipes: Wait would otherwise wait for every process that
	// inherited the pipe, which is what some tests check run kills.
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &runProc{cmd: cmd, stderr: stderr, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		var exit *exec.ExitError
		switch {
		case errors.As(err, &exit):
			p.code = exit.ExitCode()
		case err != nil:
			p.code = -1
		}
		close(p.done)
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-p.done })
	return p
}

// wait returns run's exit code and what it wrote to stderr.
func (p *runProc) wait(t *testing.T, within time.Duration) (int, string) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(within):
		t.Fatalf("locklock run still running after %v", within)
	}
	out, _ := os.ReadFile(p.stderr.Name())
	return p.code, string(out)
}

// waitFile waits for a file the command writes, and returns its content.
func waitFile(t *testing.T, path string) string {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if b, err := os.ReadFile(path); err == nil && bytes.HasSuffix(b, []byte("\n")) {
			return string(b)
		}
	}
	t.Fatalf("the command did not write %s", path)
	return ""
}

// gone reports a process that no longer runs (a zombie counts as gone).
func gone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && len(b) > i+2 && b[i+2] == 'Z'
}

func pidsIn(t *testing.T, text string) []int {
	t.Helper()
	var pids []int
	for _, f := range strings.Fields(text) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("pid file holds %q", text)
		}
		pids = append(pids, pid)
	}
	return pids
}

func lockState(t *testing.T, s *lockServer, id string) (client.Lock, error) {
	t.Helper()
	c, err := client.New(s.URL, client.WithRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	return c.Get(ctx, client.UUID(id))
}

// TestRunExitCodeTokenRelease: CMD sees the fencing token and the lock in
// its environment, run exits with CMD's code, and the lock is free after.
func TestRunExitCodeTokenRelease(t *testing.T) {
	t.Parallel()
	s := newLockServer(t)
	id := "00000000-0000-4000-8000-000000000001"
	out := filepath.Join(t.TempDir(), "env")
	p := startRun(t, s, "uuid/"+id, "--ttl", "5s", "--",
		"sh", "-c", `echo "$LOCKLOCK_FENCING_TOKEN $LOCKLOCK_LOCK $LOCKLOCK_NAMESPACE" > "$0"; exit 7`, out)
	code, stderr := p.wait(t, 10*time.Second)
	if code != 7 {
		t.Fatalf("run exited %d, want CMD's 7 (stderr %q)", code, stderr)
	}
	f := strings.Fields(waitFile(t, out))
	if len(f) != 3 || f[1] != "uuid/"+id || f[2] != "public" {
		t.Fatalf("CMD's environment: %q", f)
	}
	if token, err := strconv.ParseUint(f[0], 10, 64); err != nil || token == 0 {
		t.Errorf("LOCKLOCK_FENCING_TOKEN %q", f[0])
	}
	if _, err := lockState(t, s, id); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("lock after run: %v, want released (ErrNotFound)", err)
	}
}

// TestRunJobEnvironment: the job gets the caller's environment without the
// credentials run used — with them it released the lock run held — and
// with the variables the help names.
func TestRunJobEnvironment(t *testing.T) {
	t.Parallel()
	s := newLockServer(t)
	out := filepath.Join(t.TempDir(), "env")
	p := startRunEnv(t, s, []string{
		"LOCKLOCK_SECRET=run-secret", "LOCKLOCK_API_KEY=" + proKey, "LOCKLOCK_ETCD_PASSWORD=pw",
		"LOCKLOCK_FENCING_TOKEN=stale", "LOCKLOCK_SLOT=stale", "LOCKLOCK_WEIGHT=stale", "JOB_KEEPS_THIS=yes",
	}, "key/env-job", "--ttl", "5s", "--", "sh", "-c", `env > "$0.tmp" && mv "$0.tmp" "$0"`, out)
	if code, stderr := p.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("run exited %d (stderr %q)", code, stderr)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			env[k] = v
		}
	}
	for _, name := range []string{"LOCKLOCK_SECRET", "LOCKLOCK_API_KEY", "LOCKLOCK_ETCD_PASSWORD"} {
		if v, ok := env[name]; ok {
			t.Errorf("the job got %s=%q", name, v)
		}
	}
	if env["JOB_KEEPS_THIS"] != "yes" || env["LOCKLOCK_SERVER"] != s.URL {
		t.Errorf("the job lost the caller's ordinary variables: %q %q", env["JOB_KEEPS_THIS"], env["LOCKLOCK_SERVER"])
	}
	if tok, err := strconv.ParseUint(env["LOCKLOCK_FENCING_TOKEN"], 10, 64); err != nil || tok == 0 {
		t.Errorf("LOCKLOCK_FENCING_TOKEN=%q, want the lock's token", env["LOCKLOCK_FENCING_TOKEN"])
	}
	if env["LOCKLOCK_LOCK"] != "key/env-job" || env["LOCKLOCK_NAMESPACE"] != "acme" {
		t.Errorf("LOCKLOCK_LOCK=%q LOCKLOCK_NAMESPACE=%q", env["LOCKLOCK_LOCK"], env["LOCKLOCK_NAMESPACE"])
	}
	// An outer run's slot is not this job's: a lock holds no slot.
	for _, name := range []string{"LOCKLOCK_SLOT", "LOCKLOCK_WEIGHT"} {
		if v, ok := env[name]; ok {
			t.Errorf("the job under a lock got %s=%q", name, v)
		}
	}
}

// TestRunSignalledCommand: a CMD killed by signal N gives 128+N.
func TestRunSignalledCommand(t *testing.T) {
	t.Parallel()
	s := newLockServer(t)
	p := startRun(t, s, "uuid/00000000-0000-4000-8000-000000000002", "--", "sh", "-c", "kill -KILL $$")
	if code, stderr := p.wait(t, 10*time.Second); code != 128+int(syscall.SIGKILL) {
		t.Fatalf("run exited %d, want 137 (stderr %q)", code, stderr)
	}
}

// TestRunHeldDoesNotStart: a held lock exits 3 and CMD never runs.
func TestRunHeldDoesNotStart(t *testing.T) {
	t.Parallel()
	s := newLockServer(t)
	id := "00000000-0000-4000-8000-000000000003"
	if code, _, _ := s.cli(t, nil, "acquire", "uuid/"+id, "--ttl", "1m"); code != exitOK {
		t.Fatal("could not take the lock first")
	}
	marker := filepath.Join(t.TempDir(), "ran")
	p := startRun(t, s, "uuid/"+id, "--wait", "1s", "--", "touch", marker)
	code, stderr := p.wait(t, 10*time.Second)
	if code != exitHeld || !strings.Contains(stderr, "is held") {
		t.Fatalf("run exited %d (%q), want %d lock held", code, stderr, exitHeld)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("CMD ran although the lock was held")
	}
}

// TestRunKeepsLockPastTTL: a job longer than the TTL keeps the lock, with
// one token, throughout; the lock is released when it ends.
func TestRunKeepsLockPastTTL(t *testing.T) {
	t.Parallel()
	s := newLockServer(t)
	id := "00000000-0000-4000-8000-000000000004"
	ready := filepath.Join(t.TempDir(), "ready")
	p := startRun(t, s, "uuid/"+id, "--ttl", "1s", "--", "sh", "-c", `echo $LOCKLOCK_FENCING_TOKEN > "$0"; sleep 2.5`, ready)
	token, _ := strconv.ParseUint(strings.TrimSpace(waitFile(t, ready)), 10, 64)
	time.Sleep(2 * time.Second) // twice the TTL
	l, err := lockState(t, s, id)
	if err != nil || l.FencingToken != token {
		t.Fatalf("2 s into a job under a 1 s lock: %+v, %v; want the lock held with token %d", l, err, token)
	}
	if code, stderr := p.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("run exited %d (%q)", code, stderr)
	}
	if _, err := lockState(t, s, id); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("lock after run: %v, want released", err)
	}
}

// TestRunForwardsSignals: SIGTERM to run reaches CMD, which may clean up
// under the lock; run exits with CMD's code and releases.
func TestRunForwardsSignals(t *testing.T) {
	t.Parallel()
	s := newLockServer(t)
	id := "00000000-0000-4000-8000-000000000005"
	dir := t.TempDir()
	p := startRun(t, s, "uuid/"+id, "--", "sh", "-c",
		`trap 'echo term > "$0/got"; exit 42' TERM; echo up > "$0/ready"; while :; do sleep 0.05; done`, dir)
	waitFile(t, filepath.Join(dir, "ready"))
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, stderr := p.wait(t, 10*time.Second); code != 42 {
		t.Fatalf("run exited %d (%q), want CMD's trap code 42", code, stderr)
	}
	waitFile(t, filepath.Join(dir, "got"))
	if _, err := lockState(t, s, id); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("lock after run: %v, want released", err)
	}
}

// TestRunStopsLeftovers: what CMD leaves running — in its group, or
// detached with setsid — is stopped before the lock is released.
func TestRunStopsLeftovers(t *testing.T) {
	t.Parallel()
	s := newLockServer(t)
	pids := filepath.Join(t.TempDir(), "pids")
	p := startRun(t, s, "uuid/00000000-0000-4000-8000-000000000006", "--grace", "1s", "--", "sh", "-c",
		`sleep 60 & echo $! >> "$0"; setsid sh -c 'echo $$ >> "$0"; exec sleep 61' "$0" & sleep 0.2; exit 0`, pids)
	code, stderr := p.wait(t, 10*time.Second)
	if code != 0 || !strings.Contains(stderr, "left processes running") {
		t.Fatalf("run exited %d (%q), want 0 and a note about the leftovers", code, stderr)
	}
	for _, pid := range pidsIn(t, waitFile(t, pids)) {
		if !gone(pid) {
			t.Errorf("process %d that CMD left behind still runs", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// TestRunLostLockStopsJob: when the server stops answering, CMD's whole
// job — a child ignoring SIGTERM included — is dead before the lock could
// lapse on the server, and run says the lock was lost.
func TestRunLostLockStopsJob(t *testing.T) {
	t.Parallel()
	s := newLockServer(t)
	id := "00000000-0000-4000-8000-000000000007"
	pids := filepath.Join(t.TempDir(), "pids")
	p := startRun(t, s, "uuid/"+id, "--ttl", "2s", "--grace", "10s", "--", "sh", "-c",
		`trap '' TERM; sleep 60 & echo $$ $! > "$0"; wait`, pids)
	job := pidsIn(t, waitFile(t, pids))
	l, err := lockState(t, s, id)
	if err != nil {
		t.Fatal(err)
	}
	s.freeze()
	var allGone time.Time
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if gone(job[0]) && gone(job[1]) {
			allGone = time.Now()
			break
		}
	}
	if allGone.IsZero() {
		t.Fatal("the job still runs 10 s after the server froze")
	}
	// The last refresh came at or after l was read, so the lock lasts at
	// least until l.ExpiresAt.
	if !allGone.Before(l.ExpiresAt) {
		t.Errorf("the job stopped at %v, not before the lock could lapse at %v", allGone, l.ExpiresAt)
	}
	code, stderr := p.wait(t, 10*time.Second)
	if code != exitError || !strings.Contains(stderr, "lock lost") {
		t.Errorf("run exited %d (%q), want 1 saying the lock was lost", code, stderr)
	}
	t.Logf("job stopped %v before the lock could lapse", l.ExpiresAt.Sub(allGone))
}

// TestRunUsage: mistakes on the command line are usage errors, and a
// command that cannot start is 127/126 as in env(1), with the lock freed.
func TestRunUsage(t *testing.T) {
	t.Parallel()
	s := newLockServer(t)
	id := "00000000-0000-4000-8000-000000000008"
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"uuid/" + id, "echo", "hi"}, exitUsage}, // no --
		{[]string{"uuid/" + id, "--"}, exitUsage},         // no command
		{[]string{"--", "echo", "hi"}, exitUsage},         // no target
		{[]string{"uuid/" + id, "--ttl", "0s", "--", "true"}, exitUsage},
	} {
		code, _, stderr := s.cli(t, nil, append([]string{"run"}, tc.args...)...)
		if code != tc.code || stderr == "" {
			t.Errorf("run %q: exit %d (%q), want %d with a message", tc.args, code, stderr, tc.code)
		}
	}
	// These get as far as starting CMD, so they run in a process of their own.
	for _, tc := range []struct {
		cmd  string
		code int
	}{
		{"/nonexistent/cmd", exitCmdNotFound},
		{"/etc/passwd", exitCannotRun}, // not executable
	} {
		code, stderr := startRun(t, s, "uuid/"+id, "--", tc.cmd).wait(t, 10*time.Second)
		if code != tc.code || stderr == "" {
			t.Errorf("run %s: exit %d (%q), want %d with a message", tc.cmd, code, stderr, tc.code)
		}
	}
	if _, err := lockState(t, s, id); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("lock after failed starts: %v, want released", err)
	}
}
