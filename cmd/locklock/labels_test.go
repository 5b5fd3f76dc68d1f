package main

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
)

// cliLock is the lock object a lock command prints.
type cliLock struct {
	Token     uint64            `json:"fencing_token"`
	Holder    string            `json:"holder"`
	Metadata  map[string]string `json:"metadata"`
	LockDelay int64             `json:"lock_delay"`
}

// TestLockCommandsLabels: acquire takes --holder, repeated --metadata and
// --lock-delay, status shows them, and a lock-delay counts as held (3).
func TestLockCommandsLabels(t *testing.T) {
	clock := locklock.NewManualClock(time.Now().UTC().Truncate(time.Millisecond))
	s := newLockServer(t, locklock.WithClock(clock))
	target := "uuid/" + testUUID
	parse := func(what, stdout string) cliLock {
		t.Helper()
		var l cliLock
		if err := json.Unmarshal([]byte(stdout), &l); err != nil {
			t.Fatalf("%s: stdout %q: %v", what, stdout, err)
		}
		return l
	}
	want := map[string]string{"addr": "10.0.0.7:8080", "note": "", "eq": "a=b"}
	code, stdout, stderr := s.cli(t, nil, "acquire", target, "--secret", "s1", "--ttl", "5s", "--holder", "web-1",
		"--metadata", "addr=10.0.0.7:8080", "--metadata", "note=", "--metadata", "eq=a=b", "--lock-delay", "1500ms")
	if code != exitOK {
		t.Fatalf("acquire: exit %d (%s)", code, stderr)
	}
	if l := parse("acquire", stdout); l.Holder != "web-1" || !maps.Equal(l.Metadata, want) || l.LockDelay != 2 {
		t.Errorf("acquire printed %+v, want holder web-1, metadata %v, lock_delay 2 (1.5 s rounded up)", l, want)
	}
	code, stdout, _ = s.cli(t, nil, "status", target)
	if l := parse("status", stdout); code != exitOK || l.Holder != "web-1" || !maps.Equal(l.Metadata, want) || l.LockDelay != 2 {
		t.Errorf("status: exit %d, %+v", code, l)
	}

	// --holder auto is this process: hostname:pid.
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	other := "uuid/28e5a3c1-0b7e-4c43-9d4e-7a7b9e2f6a11"
	code, stdout, _ = s.cli(t, nil, "acquire", other, "--holder", "auto")
	if l := parse("acquire --holder auto", stdout); code != exitOK || l.Holder != host+":"+strconv.Itoa(os.Getpid()) {
		t.Errorf("--holder auto: exit %d, holder %q, want %s:%d", code, l.Holder, host, os.Getpid())
	}
	code, stdout, _ = s.cli(t, nil, "acquire", "uuid/3f2504e0-4f89-41d3-9a0c-0305e82c3301")
	if l := parse("acquire", stdout); code != exitOK || l.Holder != "" || l.Metadata != nil || l.LockDelay != 0 ||
		strings.Contains(stdout, "holder") || strings.Contains(stdout, "lock_delay") {
		t.Errorf("no --holder: exit %d, %s; want no holder, metadata or lock_delay", code, stdout)
	}

	bad := []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"--metadata", "novalue"}, exitUsage, "NAME=VALUE"},
		{[]string{"--metadata", "=v"}, exitUsage, "NAME=VALUE"},
		{[]string{"--metadata", "a=1", "--metadata", "a=2"}, exitUsage, "twice"},
		{[]string{"--metadata", "a b=c"}, exitUsage, "metadata"},
		{[]string{"--holder", strings.Repeat("h", locklock.MaxHolderLen+1)}, exitUsage, "holder"},
		{[]string{"--lock-delay", "-1s"}, exitUsage, "must not be negative"},
		{[]string{"--lock-delay", "2m"}, exitUsage, "lock_delay"},
		{[]string{"--lock-delay", "10"}, exitUsage, "invalid value"},
	}
	free := "uuid/6ba7b810-9dad-11d1-80b4-00c04fd430c8"
	for _, b := range bad {
		code, stdout, stderr := s.cli(t, nil, append([]string{"acquire", free}, b.args...)...)
		if code != b.code || !strings.Contains(stderr, b.stderr) || stdout != "" {
			t.Errorf("acquire %q: exit %d, stderr %q; want %d mentioning %q", b.args, code, stderr, b.code, b.stderr)
		}
	}
	if code, _, _ := s.cli(t, nil, "status", free); code != exitNotFound {
		t.Errorf("a refused acquire took the lock: status exit %d", code)
	}
	for _, cmd := range []string{"release", "refresh", "status"} {
		if code, _, stderr := s.cli(t, nil, cmd, target, "--holder", "x"); code != exitUsage || !strings.Contains(stderr, "not defined") {
			t.Errorf("%s --holder: exit %d (%q), want the flag undefined", cmd, code, stderr)
		}
	}

	// The lock expires; its lock-delay keeps others off: exit 3.
	clock.Advance(6 * time.Second)
	if code, _, stderr := s.cli(t, nil, "acquire", target, "--secret", "s2"); code != exitHeld || !strings.Contains(stderr, "lock-delay") {
		t.Errorf("acquire during the lock-delay: exit %d (%q), want %d", code, stderr, exitHeld)
	}
	if code, _, stderr := s.cli(t, nil, "status", target); code != exitNotFound || !strings.Contains(stderr, "lock-delay") {
		t.Errorf("status during the lock-delay: exit %d (%q), want %d saying until when", code, stderr, exitNotFound)
	}
	// The lost holder's secret takes it back.
	if code, _, stderr := s.cli(t, nil, "acquire", target, "--secret", "s1"); code != exitOK {
		t.Errorf("the lost holder's acquire: exit %d (%q)", code, stderr)
	}
}

// TestRunLabels: run takes the lock with --holder auto (run's own process),
// --metadata and --lock-delay, and keeps them while CMD runs.
func TestRunLabels(t *testing.T) {
	t.Parallel()
	s := newLockServer(t)
	id := "00000000-0000-4000-8000-000000000010"
	dir := t.TempDir()
	ready, stop := filepath.Join(dir, "ready"), filepath.Join(dir, "stop")
	p := startRun(t, s, "uuid/"+id, "--ttl", "3s", "--holder", "auto", "--metadata", "role=worker", "--metadata", "shard=7",
		"--lock-delay", "2s", "--", "sh", "-c", `echo ready > "$0"; while [ ! -e "$1" ]; do sleep 0.05; done`, ready, stop)
	waitFile(t, ready)
	l, err := lockState(t, s, id)
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	wantHolder := host + ":" + strconv.Itoa(p.cmd.Process.Pid)
	if l.Holder != wantHolder || !maps.Equal(l.Metadata, map[string]string{"role": "worker", "shard": "7"}) || l.LockDelay != 2 {
		t.Errorf("lock under run: %+v, want holder %s, the metadata and lock_delay 2", l, wantHolder)
	}
	if err := os.WriteFile(stop, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, stderr := p.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("run exited %d (%q)", code, stderr)
	}
}

// TestRunDelayedDoesNotStart: a lock in its lock-delay is like a held one:
// exit 3, CMD never runs.
func TestRunDelayedDoesNotStart(t *testing.T) {
	t.Parallel()
	clock := locklock.NewManualClock(time.Now().UTC().Truncate(time.Millisecond))
	s := newLockServer(t, locklock.WithClock(clock))
	id := "00000000-0000-4000-8000-000000000011"
	if code, _, stderr := s.cli(t, nil, "acquire", "uuid/"+id, "--ttl", "5s", "--lock-delay", "30s"); code != exitOK {
		t.Fatalf("could not take the lock first: %s", stderr)
	}
	clock.Advance(6 * time.Second)
	marker := filepath.Join(t.TempDir(), "ran")
	p := startRun(t, s, "uuid/"+id, "--", "touch", marker)
	code, stderr := p.wait(t, 10*time.Second)
	if code != exitHeld || !strings.Contains(stderr, "lock-delay") {
		t.Fatalf("run exited %d (%q), want %d", code, stderr, exitHeld)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("CMD ran although the lock was in its lock-delay")
	}
}
