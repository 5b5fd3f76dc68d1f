package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/locklock/locklock/transport/client"
)

// watchProc is `locklock watch` in a child process (it handles signals),
// its standard output in a file.
type watchProc struct {
	cmd  *exec.Cmd
	out  string
	done chan int
}

func startWatch(t *testing.T, s *lockServer, env []string, args ...string) *watchProc {
	t.Helper()
	out := filepath.Join(t.TempDir(), "stdout")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "LOCKLOCK_TEST_MAIN=1", "LOCKLOCK_SERVER="+s.URL, "GORACE=atexit_sleep_ms=0",
		"LOCKLOCK_TEST_ARGS="+strings.Join(append([]string{"watch"}, args...), "\x1f"))
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = f, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	p := &watchProc{cmd: cmd, out: out, done: make(chan int, 1)}
	go func() {
		err := cmd.Wait()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			code = -1
		}
		p.done <- code
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return p
}

// lines waits until the watch printed n lines and returns them decoded.
func (p *watchProc) lines(t *testing.T, n int) []watchLine {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		raw, _ := os.ReadFile(p.out)
		text := strings.TrimSuffix(string(raw), "\n")
		var got []watchLine
		if text != "" {
			for _, line := range strings.Split(text, "\n") {
				var l watchLine
				if err := json.Unmarshal([]byte(line), &l); err != nil {
					t.Fatalf("not a JSON line: %q: %v", line, err)
				}
				got = append(got, l)
			}
		}
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("watch printed %d lines, want %d: %q", len(got), n, text)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *watchProc) interrupt(t *testing.T) int {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case code := <-p.done:
		return code
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not stop on SIGINT")
		return -1
	}
}

// TestWatchCommand: one JSON line per event, state first, and exit 0 on
// SIGINT; a namespace stream with a key starts with ready.
func TestWatchCommand(t *testing.T) {
	s := newLockServer(t)
	w := startWatch(t, s, nil, "uuid/"+testUUID)
	if got := w.lines(t, 1); got[0].Type != "state" || got[0].Lock != nil || got[0].ID == "" {
		t.Fatalf("first line %+v, want the state of a free lock", got[0])
	}
	ns := startWatch(t, s, []string{"LOCKLOCK_API_KEY=" + proKey}, "--kind", "key", "--prefix", "jobs.")
	if got := ns.lines(t, 1); got[0].Type != "ready" {
		t.Fatalf("namespace stream starts with %+v, want ready", got[0])
	}
	if code, _, stderr := s.cli(t, nil, "acquire", "uuid/"+testUUID, "--holder", "h1"); code != exitOK {
		t.Fatalf("acquire: %d %s", code, stderr)
	}
	if code, _, stderr := s.cli(t, nil, "release", "uuid/"+testUUID); code != exitOK {
		t.Fatalf("release: %d %s", code, stderr)
	}
	if code, _, stderr := s.cli(t, map[string]string{"LOCKLOCK_API_KEY": proKey}, "acquire", "key/jobs.1"); code != exitOK {
		t.Fatalf("acquire key: %d %s", code, stderr)
	}
	got := w.lines(t, 3)
	if got[1].Type != "acquired" || got[1].Lock == nil || got[1].Lock.Holder != "h1" || got[1].At == nil {
		t.Errorf("second line %+v, want acquired by h1", got[1])
	}
	if got[2].Type != "released" || got[2].Lock.FencingToken != got[1].Lock.FencingToken {
		t.Errorf("third line %+v, want its release", got[2])
	}
	if l := ns.lines(t, 2)[1]; l.Type != "acquired" || l.Lock.Name != "jobs.1" || l.Lock.Namespace != "acme" {
		t.Errorf("namespace stream: %+v", l)
	}
	if code := w.interrupt(t); code != exitOK {
		t.Errorf("exit code on SIGINT %d, want 0", code)
	}
	if code := ns.interrupt(t); code != exitOK {
		t.Errorf("exit code on SIGINT %d, want 0", code)
	}
}

func TestWatchCommandRefusals(t *testing.T) {
	s := newLockServer(t)
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"watch", "--prefix", "a"}, exitUsage},
		{[]string{"watch", "uuid/" + testUUID, "--kind", "uuid"}, exitUsage},
		{[]string{"watch", "uuid/a", "uuid/b"}, exitUsage},
		{[]string{"watch", "nope"}, exitUsage},
		{[]string{"watch"}, exitRefused},               // a namespace needs an API key
		{[]string{"watch", "key/jobs.1"}, exitRefused}, // so do custom names
	} {
		if code, _, stderr := s.cli(t, nil, c.args...); code != c.code {
			t.Errorf("%v: exit %d (%s), want %d", c.args, code, strings.TrimSpace(stderr), c.code)
		}
	}
}

// TestServeStreams: the standalone server (the default Badger engine,
// behind the app's metrics wrapper) serves event streams, and a stop ends
// them rather than waiting on them.
func TestServeStreams(t *testing.T) {
	p := startServer(t, "--data-dir", t.TempDir(), "--shutdown-timeout", "5s")
	c, err := client.New(strings.TrimSuffix(p.base, client.APIPrefix))
	if err != nil {
		t.Fatal(err)
	}
	w := c.Watch(t.Context(), client.UUID(testUUID))
	defer w.Close()
	if ev, err := w.Next(); err != nil || ev.Type != client.EventState {
		t.Fatalf("first event %+v, %v; want state", ev, err)
	}
	l, err := c.Acquire(t.Context(), client.UUID(testUUID), client.WithHolder("h"))
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := w.Next(); err != nil || ev.Type != "acquired" || ev.Lock.FencingToken != l.FencingToken || ev.Lock.Holder != "h" {
		t.Fatalf("after acquire %+v, %v", ev, err)
	}
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-p.done; err != nil {
		t.Fatalf("server exit: %v\n%s", err, p.output())
	}
	p.done <- nil
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("stop took %v with a stream open", d)
	}
}
