// Package examples_test builds every example under examples/ and runs it
// against a real Locklock handler, so that an example that no longer
// compiles, fails, or prints something else than its comment promises is
// caught by `go test ./...`.
package examples_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/locklock/locklock/engines/memory"
	"github.com/locklock/locklock/locklock"
	"github.com/locklock/locklock/transport"
)

// runTimeout bounds one run of an example.
const runTimeout = 30 * time.Second

// smokeTests run the examples that need flags or whose output is checked.
// Any other directory under examples/ is built and run with no arguments
// and must exit 0 within runTimeout: a new example is covered without
// being listed here (one that serves forever must be).
var smokeTests = map[string]func(t *testing.T, exe, server string){
	"client":       smokeClient,
	"exactly-once": smokeExactlyOnce,
	"embed":        smokeEmbed,
	"leader":       smokeLeader,
}

func TestExamples(t *testing.T) {
	goBin, err := exec.LookPath("go") // go test puts its own GOROOT/bin first in PATH
	if err != nil {
		t.Skip("no go command to build the examples with:", err)
	}
	engine := memory.New()
	t.Cleanup(func() { engine.Close() })
	srv := httptest.NewServer(http.StripPrefix("/v1/api", transport.NewHandler(locklock.NewService(engine))))
	t.Cleanup(srv.Close)

	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	binDir := t.TempDir()
	for _, e := range entries {
		name := e.Name()
		// The go command ignores testdata and names starting with . or _.
		if !e.IsDir() || name == "testdata" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
			continue
		}
		if gos, _ := filepath.Glob(filepath.Join(name, "*.go")); len(gos) == 0 {
			continue // deployment files (systemd), not a program: tested on their own
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			exe := filepath.Join(binDir, name)
			if runtime.GOOS == "windows" {
				exe += ".exe"
			}
			build := exec.CommandContext(t.Context(), goBin, "build", "-o", exe, "./"+name)
			if out, err := build.CombinedOutput(); err != nil {
				t.Fatalf("go build ./examples/%s: %v\n%s", name, err, out)
			}
			smoke := smokeTests[name]
			if smoke == nil {
				smoke = func(t *testing.T, exe, server string) { run(t, exe, server) }
			}
			smoke(t, exe, srv.URL)
		})
	}
}

// smokeClient holds a lock with a 1s TTL through 3 steps of 0.7s, which it
// survives only if Hold refreshes the lock, and releases it.
func smokeClient(t *testing.T, exe, server string) {
	const id = "3f2a9c1e-5b7d-4e8f-a0b1-c2d3e4f5a6b7"
	out := run(t, exe, server, "-lock", "uuid/"+id, "-ttl", "1s", "-step", "700ms", "-steps", "3")

	m := regexp.MustCompile(`(?m)^holding uuid/` + id + ` with fencing token (\d+), TTL 1s$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no holding line with a fencing token in:\n%s", out)
	}
	for i := 1; i <= 3; i++ {
		if want := fmt.Sprintf("step %d/3: wrote with fencing token %s;", i, m[1]); !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "(refreshed)") {
		t.Errorf("no step saw the lock refreshed:\n%s", out)
	}
	if !strings.Contains(out, "released uuid/"+id+"\n") {
		t.Errorf("no release in:\n%s", out)
	}
	if status := get(t, server+"/v1/api/lock/uuid/"+id); status != http.StatusNotFound {
		t.Errorf("GET the lock after the example: %d, want 404 (released)", status)
	}
}

// smokeExactlyOnce: the example's queue delivers three events, the first
// twice, to two consumers. Each event is processed once, the duplicate
// skipped, and the claims stay behind.
func smokeExactlyOnce(t *testing.T, exe, server string) {
	out := run(t, exe, server)
	var processed, skipped []string
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		switch {
		case len(f) >= 2 && f[0] == "processing":
			processed = append(processed, f[1])
		case len(f) >= 3 && f[0] == "skipping" && f[1] == "duplicate":
			skipped = append(skipped, f[2])
		default:
			t.Errorf("unexpected line %q", line)
		}
	}
	if len(processed) != 3 || len(slices.Compact(slices.Sorted(slices.Values(processed)))) != 3 {
		t.Errorf("processed %v, want three distinct events once each", processed)
	}
	if len(skipped) != 1 || !slices.Contains(processed, skipped[0]) {
		t.Errorf("skipped %v, want the one duplicated event among %v", skipped, processed)
	}
	for _, id := range processed {
		if status := get(t, server+"/v1/api/lock/uuid/"+id); status != http.StatusOK {
			t.Errorf("GET the claim of %s: %d, want 200 (never released)", id, status)
		}
	}
}

// smokeLeader: three terms, each won by a candidate that publishes its
// address; the follower, reading only the lock's stream, sees each leader
// with that address and "no leader" between terms, terms rising, and never
// two leaders at once.
func smokeLeader(t *testing.T, exe, server string) {
	out := run(t, exe, server, "-term", "300ms")
	elected := regexp.MustCompile(`(?m)^candidate-(\d) elected: term (\d+)$`).FindAllStringSubmatch(out, -1)
	if len(elected) != 3 {
		t.Fatalf("%d elections, want 3:\n%s", len(elected), out)
	}
	seen := regexp.MustCompile(`(?m)^follower sees (no leader|leader candidate-(\d) (at 10\.0\.0\.(\d):8080 )?\(term (\d+)\)(, address not yet published)?)$`)
	var published []string // "N term" of each leader seen with its address
	leading := ""          // the term the follower believes current, "" for none
	var lastTerm string
	for _, m := range seen.FindAllStringSubmatch(out, -1) {
		switch {
		case m[1] == "no leader":
			leading = ""
		case leading != "" && leading != m[5]:
			t.Errorf("follower saw term %s while term %s led, without a no-leader between:\n%s", m[5], leading, out)
		case m[3] != "" && m[2] != m[4]:
			t.Errorf("candidate-%s published candidate-%s's address:\n%s", m[2], m[4], out)
		default:
			if lastTerm != "" && leading == "" && len(m[5]) == len(lastTerm) && m[5] <= lastTerm {
				t.Errorf("term %s after term %s:\n%s", m[5], lastTerm, out)
			}
			leading, lastTerm = m[5], m[5]
			if m[3] != "" {
				published = append(published, m[2]+" "+m[5])
			}
		}
	}
	if leading != "" {
		t.Errorf("the follower's last word is a leader, want no leader after the last term:\n%s", out)
	}
	for _, e := range elected {
		if !slices.Contains(published, e[1]+" "+e[2]) {
			t.Errorf("candidate-%s's term %s never seen with its address by the follower:\n%s", e[1], e[2], out)
		}
	}
}

// smokeEmbed serves forever, so it runs on a port of the system's choice
// until it has answered, then gets SIGINT and must shut down cleanly.
func smokeEmbed(t *testing.T, exe, _ string) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGINT to stop the server with on Windows")
	}
	ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "-addr", "127.0.0.1:0")
	cmd.Env = cleanEnv()
	stderr := &watcher{re: regexp.MustCompile(`msg=listening addr=(\S+)\n`), found: make(chan string, 1)}
	cmd.Stdout, cmd.Stderr = stderr, stderr
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	var addr string
	select {
	case addr = <-stderr.found:
	case err := <-exited:
		t.Fatalf("embed exited before listening: %v\n%s", err, stderr)
	}
	base := "http://" + addr
	if status := get(t, base+"/"); status != http.StatusOK {
		t.Errorf("GET /: %d, want 200", status)
	}
	resp, err := http.Post(base+"/locks/lock/uuid/180da65c-cf80-4997-8574-0c0801817d6f", "application/json", strings.NewReader(`{"expires_in":60}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Errorf("acquire through /locks/: %s, want 201", resp.Status)
	}

	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := <-exited; err != nil {
		t.Fatalf("embed after SIGINT: %v, want a clean exit\n%s", err, stderr)
	}
}

// run runs exe with LOCKLOCK_SERVER=server and args, and returns its
// standard output; it fails the test unless exe exits 0 in time.
func run(t *testing.T, exe, server string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = append(cleanEnv(), "LOCKLOCK_SERVER="+server)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", filepath.Base(exe), strings.Join(args, " "), err, &stdout, &stderr)
	}
	t.Logf("%s ran %v:\n%s", filepath.Base(exe), time.Since(start).Round(time.Millisecond), &stdout)
	return stdout.String()
}

// cleanEnv is the test's environment without LOCKLOCK_ settings: an API
// key from the developer's shell would be unknown to the test server.
func cleanEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "LOCKLOCK_") })
}

func get(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// watcher keeps what a process writes and sends the first match of re's
// group on found.
type watcher struct {
	re    *regexp.Regexp
	found chan string

	mu   sync.Mutex
	buf  bytes.Buffer
	sent bool
}

func (w *watcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if m := w.re.FindSubmatch(w.buf.Bytes()); m != nil && !w.sent {
		w.sent = true
		w.found <- string(m[1])
	}
	return len(p), nil
}

func (w *watcher) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
