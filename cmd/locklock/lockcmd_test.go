package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/locklock/locklock/engines/memory"
	"github.com/locklock/locklock/internal/keys"
	"github.com/locklock/locklock/locklock"
	"github.com/locklock/locklock/transport"
)

const (
	proKey = "llk_cli-test-pro-key"
	devKey = "llk_cli-test-dev-key"
)

// lockServer is the real handler with API keys, behind a switch that can
// freeze it: frozen, it holds every request until unfrozen or until the
// client gives up, like a SIGSTOPped process.
type lockServer struct {
	*httptest.Server
	mu     sync.Mutex
	frozen chan struct{} // nil when not frozen
}

func newLockServer(t *testing.T, svcOpts ...locklock.Option) *lockServer {
	t.Helper()
	engine := memory.New()
	t.Cleanup(func() { _ = engine.Close() })
	file := keys.Default()
	file.Keys = []keys.Key{
		{ID: "pro", Namespace: "acme", Plan: "pro", SHA256: keys.HashKey(proKey)},
		{ID: "dev", Namespace: "acme", Plan: "developer", SHA256: keys.HashKey(devKey)},
	}
	h := http.StripPrefix("/v1/api", transport.NewHandler(locklock.NewService(engine, svcOpts...),
		transport.WithAuthenticator(keyAuthenticator(keys.NewStore(keys.NewIndex(file))))))
	s := &lockServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		frozen := s.frozen
		s.mu.Unlock()
		if frozen != nil {
			select {
			case <-frozen:
			case <-r.Context().Done():
				return
			}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { s.thaw(); s.Close() })
	return s
}

func (s *lockServer) freeze() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.frozen == nil {
		s.frozen = make(chan struct{})
	}
}

func (s *lockServer) thaw() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.frozen != nil {
		close(s.frozen)
		s.frozen = nil
	}
}

// cli runs one lock command in-process with LOCKLOCK_SERVER pointing at s.
func (s *lockServer) cli(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	lookup := func(k string) (string, bool) {
		if k == "LOCKLOCK_SERVER" {
			return s.URL, true
		}
		v, ok := env[k]
		return v, ok
	}
	code = run(args, &out, &errOut, lookup)
	return code, out.String(), errOut.String()
}

const testUUID = "180da65c-cf80-4997-8574-0c0801817d6f"

// TestLockCommandsExitCodes walks the documented exit codes through a real
// handler: 0 done, 1 other error, 2 usage, 3 held, 4 not found, 5 refused.
func TestLockCommandsExitCodes(t *testing.T) {
	s := newLockServer(t)
	target := "uuid/" + testUUID
	pro := map[string]string{"LOCKLOCK_API_KEY": proKey}
	dev := map[string]string{"LOCKLOCK_API_KEY": devKey}
	steps := []struct {
		name   string
		env    map[string]string
		args   []string
		code   int
		stderr string // a part of the one error line
	}{
		{"status of a free lock", nil, []string{"status", target}, exitNotFound, "no lock"},
		{"acquire", nil, []string{"acquire", target, "--ttl", "1m", "--secret", "s1"}, exitOK, ""},
		{"acquire again: held", nil, []string{"acquire", target}, exitHeld, "is held until"},
		{"acquire, same secret from the environment: idempotent", map[string]string{"LOCKLOCK_SECRET": "s1"}, []string{"acquire", target}, exitOK, ""},
		{"status", nil, []string{"status", target}, exitOK, ""},
		{"release without the secret", nil, []string{"release", target}, exitRefused, "secret"},
		{"refresh with a wrong secret", nil, []string{"refresh", target, "--secret", "nope", "--ttl", "10s"}, exitRefused, "secret"},
		{"refresh", nil, []string{"refresh", "--secret", "s1", target, "--ttl", "1500ms"}, exitOK, ""},
		{"release", nil, []string{"release", target, "--secret", "s1"}, exitOK, ""},
		{"release again: not found", nil, []string{"release", target, "--secret", "s1"}, exitNotFound, "no lock"},
		{"refresh a free lock", nil, []string{"refresh", target}, exitNotFound, "no lock"},
		{"key lock anonymously: unauthorized", nil, []string{"acquire", "key/job"}, exitRefused, "API key"},
		{"key lock on the developer plan: forbidden", dev, []string{"acquire", "key/job"}, exitRefused, "custom lock names"},
		{"key lock with a pro key", pro, []string{"acquire", "key/job"}, exitOK, ""},
		{"unknown key", map[string]string{"LOCKLOCK_API_KEY": "llk_nope"}, []string{"status", "key/job"}, exitRefused, "unknown API key"},
		{"no target", nil, []string{"acquire"}, exitUsage, "TARGET"},
		{"two targets", nil, []string{"acquire", target, target}, exitUsage, "TARGET"},
		{"bad target form", nil, []string{"status", "lock-1"}, exitUsage, "uuid/<uuid> or key/<name>"},
		{"bad uuid", nil, []string{"status", "uuid/nope"}, exitUsage, "not a UUID"},
		{"bad kind", nil, []string{"status", "name/x"}, exitUsage, "want uuid or key"},
		{"unknown flag", nil, []string{"acquire", target, "--tll", "1s"}, exitUsage, "flag provided but not defined"},
		{"status has no --secret", nil, []string{"status", target, "--secret", "x"}, exitUsage, "not defined"},
		{"ttl over the server's maximum", nil, []string{"acquire", target, "--ttl", "9000h"}, exitUsage, "expires_in"},
		{"bad server URL", map[string]string{}, []string{"status", target, "--server", "ftp://x"}, exitUsage, "http://"},
	}
	for _, st := range steps {
		code, stdout, stderr := s.cli(t, st.env, st.args...)
		if code != st.code {
			t.Fatalf("%s: exit %d, want %d (stderr %q)", st.name, code, st.code, stderr)
		}
		if code == exitOK {
			var l map[string]any
			if err := json.Unmarshal([]byte(stdout), &l); err != nil || l["fencing_token"] == nil {
				t.Fatalf("%s: stdout %q is not the lock object: %v", st.name, stdout, err)
			}
			if stderr != "" {
				t.Errorf("%s: stderr %q on success", st.name, stderr)
			}
			continue
		}
		if stdout != "" {
			t.Errorf("%s: stdout %q on failure", st.name, stdout)
		}
		if !strings.Contains(stderr, st.stderr) {
			t.Errorf("%s: stderr %q, want it to mention %q", st.name, stderr, st.stderr)
		}
		if st.code != exitUsage && strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("%s: stderr %q is more than one line", st.name, stderr)
		}
	}
}

// TestLockCommandsOutput: the JSON on stdout is the lock as the server has
// it, the TTL counts whole seconds rounded up, and no secret is printed.
func TestLockCommandsOutput(t *testing.T) {
	s := newLockServer(t)
	code, stdout, _ := s.cli(t, nil, "acquire", "uuid/"+strings.ToUpper(testUUID), "--ttl", "1500ms", "--secret", "hush")
	if code != exitOK {
		t.Fatalf("acquire: exit %d", code)
	}
	var l struct {
		Name      string `json:"name"`
		ExpiresIn int64  `json:"expires_in"`
		Protected bool   `json:"protected"`
		Token     uint64 `json:"fencing_token"`
	}
	if err := json.Unmarshal([]byte(stdout), &l); err != nil {
		t.Fatal(err)
	}
	if l.Name != testUUID || l.ExpiresIn != 2 || !l.Protected || l.Token == 0 {
		t.Errorf("acquire printed %+v, want name %s, expires_in 2 (1.5s rounded up), protected, a token", l, testUUID)
	}
	if strings.Contains(stdout, "hush") || strings.Contains(stdout, "secret") {
		t.Errorf("stdout %q shows the secret", stdout)
	}
	_, stdout, _ = s.cli(t, nil, "status", "uuid/"+testUUID)
	var got struct {
		Token uint64 `json:"fencing_token"`
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil || got.Token != l.Token {
		t.Errorf("status token %d (%v), want %d", got.Token, err, l.Token)
	}
}

// TestAcquireWaits: --wait turns a held lock into a wait that ends with the
// release.
func TestAcquireWaits(t *testing.T) {
	s := newLockServer(t)
	target := "uuid/" + testUUID
	if code, _, _ := s.cli(t, nil, "acquire", target, "--ttl", "1s"); code != exitOK {
		t.Fatalf("first acquire: exit %d", code)
	}
	if code, _, stderr := s.cli(t, nil, "acquire", target, "--wait", "5s"); code != exitOK {
		t.Fatalf("waiting acquire: exit %d (%s), want 0 once the 1 s lock expired", code, stderr)
	}
}
