package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the locklock binary: with LOCKLOCK_TEST_MAIN set
// it runs main's code with the arguments in LOCKLOCK_TEST_ARGS. That lets the
// tests kill a real server process with SIGKILL without building anything.
func TestMain(m *testing.M) {
	if os.Getenv("LOCKLOCK_TEST_MAIN") == "1" {
		args := strings.Split(os.Getenv("LOCKLOCK_TEST_ARGS"), "\x1f")
		os.Exit(run(args, os.Stdout, os.Stderr, os.LookupEnv))
	}
	os.Exit(m.Run())
}

// serverProcess is a `locklock serve` child process.
type serverProcess struct {
	cmd  *exec.Cmd
	base string // http://127.0.0.1:port/v1/api
	ops  string // base URL of /metrics, /healthz, /readyz
	done chan error
	logs chan string // messages of the server's log lines after the start

	mu     sync.Mutex
	stderr strings.Builder // everything the server logged
}

// output is everything the server has logged so far.
func (p *serverProcess) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

func startServer(t *testing.T, args ...string) *serverProcess {
	t.Helper()
	args = append([]string{"serve", "--addr", "127.0.0.1:0", "--log-format", "json"}, args...)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "LOCKLOCK_TEST_MAIN=1", "LOCKLOCK_TEST_ARGS="+strings.Join(args, "\x1f"))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serverProcess{cmd: cmd, done: make(chan error, 1), logs: make(chan string, 100)}
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-p.done })
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.stderr.Write(sc.Bytes())
			p.stderr.WriteByte('\n')
			p.mu.Unlock()
			var line struct {
				Msg    string `json:"msg"`
				URL    string `json:"url"`
				OpsURL string `json:"ops_url"`
			}
			if json.Unmarshal(sc.Bytes(), &line) != nil {
				continue
			}
			if line.Msg == "locklock serving" {
				p.ops = line.OpsURL
				if p.ops == "" {
					p.ops = strings.TrimSuffix(line.URL, "/v1/api")
				}
				urls <- line.URL
				continue
			}
			select {
			case p.logs <- line.Msg:
			default: // nobody is reading: drop
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		p.done <- cmd.Wait()
	}()
	select {
	case p.base = <-urls:
	case err := <-p.done:
		p.done <- err
		t.Fatalf("server exited before serving: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("server did not start")
	}
	return p
}

func (p *serverProcess) kill9(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := <-p.done
	p.done <- err
}

type lockJSON struct {
	Name      string    `json:"name"`
	Token     uint64    `json:"fencing_token"`
	ExpiresAt time.Time `json:"expires_at"`
}

func call(client *http.Client, method, url, body string) (int, lockJSON, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, lockJSON{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, lockJSON{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, lockJSON{}, err
	}
	var l lockJSON
	if method == "DELETE" {
		var rel struct {
			Lock lockJSON `json:"lock"`
		}
		_ = json.Unmarshal(raw, &rel)
		l = rel.Lock
	} else if err := json.Unmarshal(raw, &l); err != nil && (resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusCreated) {
		return 0, lockJSON{}, fmt.Errorf("%s %s: %w: %s", method, url, err, raw)
	}
	return resp.StatusCode, l, nil
}

// TestKill9KeepsAcknowledgedLocks: clients acquire and release locks on a
// Badger-backed server until it is killed with SIGKILL in mid-stream. After a
// restart on the same directory every acknowledged acquire is still held with
// the same token, every acknowledged release is still free, and new tokens are
// above every earlier one.
func TestKill9KeepsAcknowledgedLocks(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, "--engine", "badger", "--data-dir", dir)

	type state struct {
		held     bool
		token    uint64
		inFlight bool // an operation was sent but not answered when the server died
	}
	var (
		mu       sync.Mutex
		locks    = map[string]*state{}
		maxToken uint64
		wg       sync.WaitGroup
		stop     = make(chan struct{})
	)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 5 * time.Second}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("%08x-0000-4000-8000-%012x", w, i)
				url := srv.base + "/lock/uuid/" + name
				st := &state{inFlight: true}
				mu.Lock()
				locks[name] = st
				mu.Unlock()
				code, l, err := call(client, "POST", url, `{"secret":"s"}`)
				if err != nil {
					return // the server died with this acquire in flight
				}
				mu.Lock()
				if code != http.StatusCreated {
					mu.Unlock()
					t.Errorf("acquire %s: %d", name, code)
					return
				}
				*st = state{held: true, token: l.Token}
				maxToken = max(maxToken, l.Token)
				mu.Unlock()
				if i%2 == 1 {
					continue // keep every other lock
				}
				mu.Lock()
				st.inFlight = true
				mu.Unlock()
				code, _, err = call(client, "DELETE", url, `{"secret":"s"}`)
				if err != nil {
					return
				}
				mu.Lock()
				if code != http.StatusOK {
					mu.Unlock()
					t.Errorf("release %s: %d", name, code)
					return
				}
				*st = state{held: false, token: st.token}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	srv.kill9(t)
	close(stop)
	wg.Wait()

	srv = startServer(t, "--engine", "badger", "--data-dir", dir)
	client := &http.Client{Timeout: 5 * time.Second}
	var held, released, uncertain int
	for name, st := range locks {
		code, l, err := call(client, "GET", srv.base+"/lock/uuid/"+name, "")
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case st.inFlight:
			uncertain++ // either outcome is correct
			if code == http.StatusOK {
				// Issued, if unacknowledged: new tokens must beat it too.
				maxToken = max(maxToken, l.Token)
			}
		case st.held:
			held++
			if code != http.StatusOK || l.Token != st.token {
				t.Errorf("acknowledged lock %s after kill -9: %d token %d, want 200 token %d", name, code, l.Token, st.token)
			}
		default:
			released++
			if code != http.StatusNotFound {
				t.Errorf("acknowledged release %s after kill -9: %d, want 404", name, code)
			}
		}
	}
	t.Logf("after kill -9: %d held, %d released, %d in flight; max token %d", held, released, uncertain, maxToken)
	if held < 10 || released < 10 {
		t.Fatalf("too few acknowledged operations (%d held, %d released) to mean much", held, released)
	}
	for i := range 20 {
		name := fmt.Sprintf("ffffffff-0000-4000-8000-%012x", i)
		code, l, err := call(client, "POST", srv.base+"/lock/uuid/"+name, "")
		if err != nil || code != http.StatusCreated {
			t.Fatalf("acquire after restart: %d %v", code, err)
		}
		if l.Token <= maxToken {
			t.Fatalf("token after restart %d, want > %d (every token issued before the crash)", l.Token, maxToken)
		}
	}
}

// waitLog waits for a log line whose message contains text.
func (p *serverProcess) waitLog(t *testing.T, text string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case msg := <-p.logs:
			if strings.Contains(msg, text) {
				return
			}
		case <-timeout:
			t.Fatalf("no log line containing %q", text)
		}
	}
}
