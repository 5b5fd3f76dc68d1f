package main

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
)

// TestRunSemaphoreLimit: three runs on a semaphore of limit 2 at once —
// two jobs run together, the third waits for a slot; never three at once.
// Each job records when it ran (by the one clock of this machine) and what
// run told it in its environment.
func TestRunSemaphoreLimit(t *testing.T) {
	t.Parallel()
	s := newLockServer(t)
	id := "00000000-0000-4000-8000-000000000020"
	dir := t.TempDir()
	script := `f="$0/$LOCKLOCK_SLOT"; start=$(date +%s%N); sleep 1; ` +
		`echo "$start $(date +%s%N) $LOCKLOCK_FENCING_TOKEN $LOCKLOCK_NAMESPACE $LOCKLOCK_SEMAPHORE $LOCKLOCK_WEIGHT $LOCKLOCK_LIMIT ${LOCKLOCK_LOCK:-none}" > "$f.tmp" && mv "$f.tmp" "$f"`
	var runs []*runProc
	for range 3 {
		runs = append(runs, startRun(t, s, "semaphore/uuid/"+id, "--limit", "2", "--wait", "20s", "--ttl", "5s", "--", "sh", "-c", script, dir))
	}
	for i, p := range runs {
		if code, stderr := p.wait(t, 30*time.Second); code != 0 {
			t.Fatalf("run %d exited %d (%q)", i, code, stderr)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	type span struct{ start, end int64 }
	var spans []span
	tokens := map[string]bool{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(string(b))
		if len(e.Name()) != locklock.SlotIDLen || len(f) != 8 {
			t.Fatalf("job record %s: %q", e.Name(), b)
		}
		start, _ := strconv.ParseInt(f[0], 10, 64)
		end, _ := strconv.ParseInt(f[1], 10, 64)
		spans = append(spans, span{start, end})
		tokens[f[2]] = true
		if tok, err := strconv.ParseUint(f[2], 10, 64); err != nil || tok == 0 {
			t.Errorf("LOCKLOCK_FENCING_TOKEN %q", f[2])
		}
		if want := []string{"public", "semaphore/uuid/" + id, "1", "2", "none"}; !slices.Equal(f[3:], want) {
			t.Errorf("job environment %q, want namespace, semaphore, weight, limit %q and no LOCKLOCK_LOCK", f[3:], want)
		}
	}
	if len(spans) != 3 || len(tokens) != 3 {
		t.Fatalf("%d jobs recorded with %d tokens, want 3 slots of their own", len(spans), len(tokens))
	}
	most := 0
	for _, a := range spans {
		at := 0 // jobs running when a started
		for _, b := range spans {
			if b.start <= a.start && a.start < b.end {
				at++
			}
		}
		most = max(most, at)
	}
	if most != 2 {
		t.Errorf("at most %d jobs ran at once, want 2 (the limit, reached): %v", most, spans)
	}
	if _, err := semaphoreState(t, s, id); !errors.Is(err, locklock.ErrSemaphoreNotFound) {
		t.Errorf("after the runs: %v, want every slot released", err)
	}
}

// TestRunSemaphoreWeight: a run with --weight equal to the limit keeps
// everyone else out (exit 3, CMD not started), and a slot held by another
// keeps it out in turn.
func TestRunSemaphoreWeight(t *testing.T) {
	t.Parallel()
	s := newLockServer(t)
	id := "00000000-0000-4000-8000-000000000021"
	sem := "semaphore/uuid/" + id
	dir := t.TempDir()
	ready, stop, marker := filepath.Join(dir, "ready"), filepath.Join(dir, "stop"), filepath.Join(dir, "ran")
	writer := startRun(t, s, sem, "--limit", "3", "--weight", "3", "--", "sh", "-c",
		`echo "$LOCKLOCK_WEIGHT" > "$0"; while [ ! -e "$1" ]; do sleep 0.05; done`, ready, stop)
	if w := strings.TrimSpace(waitFile(t, ready)); w != "3" {
		t.Errorf("LOCKLOCK_WEIGHT=%s, want 3", w)
	}
	reader := startRun(t, s, sem, "--limit", "3", "--", "touch", marker)
	if code, stderr := reader.wait(t, 10*time.Second); code != exitHeld || !strings.Contains(stderr, "is full") {
		t.Errorf("a reader beside the writer: exit %d (%q), want %d", code, stderr, exitHeld)
	}
	if code, _, stderr := s.cli(t, nil, "acquire", sem, "--limit", "3"); code != exitHeld {
		t.Errorf("acquire beside the writer: exit %d (%q), want %d", code, stderr, exitHeld)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("CMD ran although the semaphore was full")
	}
	mismatch := startRun(t, s, sem, "--limit", "4", "--", "touch", marker)
	if code, stderr := mismatch.wait(t, 10*time.Second); code != exitUsage || !strings.Contains(stderr, "has limit 3") {
		t.Errorf("another limit: exit %d (%q), want %d", code, stderr, exitUsage)
	}
	if err := os.WriteFile(stop, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, stderr := writer.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("the writer's run exited %d (%q)", code, stderr)
	}

	// A reader's slot keeps a writer out.
	code, _, stderr := s.cli(t, nil, "acquire", sem, "--limit", "3", "--ttl", "1m")
	if code != exitOK {
		t.Fatalf("reader's acquire: exit %d (%q)", code, stderr)
	}
	writer = startRun(t, s, sem, "--limit", "3", "--weight", "3", "--", "touch", marker)
	if code, stderr := writer.wait(t, 10*time.Second); code != exitHeld {
		t.Errorf("a writer beside a reader: exit %d (%q), want %d", code, stderr, exitHeld)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("CMD ran although the semaphore had no room for its weight")
	}
}

// TestRunSemaphoreSlotLost: a slot released by someone else (here with
// run's --secret) stops CMD at once — run watches the semaphore; its next
// refresh is 10 s away — and run exits 1 saying the slot was lost.
func TestRunSemaphoreSlotLost(t *testing.T) {
	t.Parallel()
	s := newLockServer(t)
	id := "00000000-0000-4000-8000-000000000022"
	dir := t.TempDir()
	slotFile, term := filepath.Join(dir, "slot"), filepath.Join(dir, "term")
	p := startRun(t, s, "semaphore/uuid/"+id, "--limit", "2", "--ttl", "30s", "--secret", "run-secret", "--", "sh", "-c",
		`trap 'echo term > "$1"; exit 0' TERM; echo "$LOCKLOCK_SLOT" > "$0"; while :; do sleep 0.05; done`, slotFile, term)
	slot := strings.TrimSpace(waitFile(t, slotFile))
	time.Sleep(300 * time.Millisecond) // run's watch connects
	start := time.Now()
	if code, _, stderr := s.cli(t, nil, "release", "semaphore/uuid/"+id+"/"+slot, "--secret", "run-secret"); code != exitOK {
		t.Fatalf("release: exit %d (%q)", code, stderr)
	}
	code, stderr := p.wait(t, 10*time.Second)
	if code != exitError || !strings.Contains(stderr, "slot lost") || !strings.Contains(stderr, "released by someone else") {
		t.Errorf("run exited %d (%q), want 1 saying the slot was lost", code, stderr)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("run noticed the loss after %v", d)
	}
	waitFile(t, term) // CMD got SIGTERM
}

// TestRunSemaphoreUsage: semaphore flags on a lock, and the lock-delay on
// a semaphore, are usage errors; so are a missing --limit and a slot id.
func TestRunSemaphoreUsage(t *testing.T) {
	t.Parallel()
	s := newLockServer(t)
	sem := "semaphore/uuid/00000000-0000-4000-8000-000000000023"
	for _, tc := range []struct {
		args   []string
		stderr string
	}{
		{[]string{sem, "--", "true"}, "--limit is required"},
		{[]string{sem, "--limit", "2", "--lock-delay", "1s", "--", "true"}, "--lock-delay"},
		{[]string{sem + "/Wq3x9Zt0Rr6uKp1LmN2b4A", "--limit", "2", "--", "true"}, "not one of its slots"},
		{[]string{"uuid/00000000-0000-4000-8000-000000000023", "--weight", "2", "--", "true"}, "for semaphores"},
	} {
		code, _, stderr := s.cli(t, nil, append([]string{"run"}, tc.args...)...)
		if code != exitUsage || !strings.Contains(stderr, tc.stderr) {
			t.Errorf("run %q: exit %d (%q), want %d mentioning %q", tc.args, code, stderr, exitUsage, tc.stderr)
		}
	}
}
