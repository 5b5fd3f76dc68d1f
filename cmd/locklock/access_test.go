package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// newKey runs `locklock keys new` and returns the key it printed.
func newKey(t *testing.T, file, namespace, plan string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := run([]string{"keys", "new", "--keys-file", file, "--namespace", namespace, "--plan", plan}, &stdout, &stderr, noEnv); code != 0 {
		t.Fatalf("keys new: exit %d: %s", code, stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}

func noEnv(string) (string, bool) { return "", false }

func request(t *testing.T, method, url, key string, hdr ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// TestKeysEndToEnd: a key made by `locklock keys new` works right after
// SIGHUP; a broken keys file on reload changes nothing; subdomains map to
// namespaces; anonymous callers over their plan's rate get 429 while a pro
// key is unaffected.
func TestKeysEndToEnd(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "keys.json")
	acme := newKey(t, file, "acme", "pro") // creates the file with the default plans
	// Limit anonymous callers to bursts of 3, refilled slowly enough that no
	// token comes back during the test, however loaded the machine.
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var f map[string]json.RawMessage
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	f["plans"] = json.RawMessage(`{"developer":{"custom_names":false,"rate":0.01,"burst":3},"pro":{"custom_names":true,"rate":0,"burst":0}}`)
	raw, _ = json.Marshal(f)
	if err := os.WriteFile(file, raw, 0o600); err != nil {
		t.Fatal(err)
	}

	srv := startServer(t, "--engine", "memory", "--keys-file", file, "--base-domain", "locks.example.com")
	lockURL := srv.base + "/lock/key/deploy"

	if resp := request(t, "POST", lockURL, acme); resp.StatusCode != 201 {
		t.Fatalf("custom name with the pro key: %d", resp.StatusCode)
	}

	// A new key is unknown until the server re-reads the file.
	globex := newKey(t, file, "globex", "pro")
	if resp := request(t, "GET", srv.base+"/locks?kind=key", globex); resp.StatusCode != 401 {
		t.Fatalf("new key before SIGHUP: %d, want 401", resp.StatusCode)
	}
	if err := srv.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new key to work after SIGHUP", func() bool {
		return request(t, "GET", srv.base+"/locks?kind=key", globex).StatusCode == 200
	})
	// Namespaces: globex does not see acme's lock.
	if resp := request(t, "GET", lockURL, globex); resp.StatusCode != 404 {
		t.Errorf("globex reading acme's lock: %d, want 404", resp.StatusCode)
	}

	// A broken file is refused on reload: both keys keep working.
	if err := os.WriteFile(file, []byte(`{"plans": {`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := srv.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	srv.waitLog(t, "keys file refused")
	for _, k := range []string{acme, globex} {
		if resp := request(t, "GET", srv.base+"/locks?kind=key", k); resp.StatusCode != 200 {
			t.Errorf("a key after a broken reload: %d, want 200", resp.StatusCode)
		}
	}

	// Subdomains.
	sub := func(host, key string) int {
		return request(t, "POST", srv.base+"/lock/key/nightly", key, "Host", host).StatusCode
	}
	if got := sub("globex.locks.example.com", acme); got != 403 {
		t.Errorf("acme's key on globex's subdomain: %d, want 403", got)
	}
	if got := sub("acme.locks.example.com", ""); got != 401 {
		t.Errorf("anonymous on a subdomain: %d, want 401", got)
	}
	if got := sub("acme.locks.example.com", acme); got != 201 {
		t.Errorf("acme's key on its subdomain: %d, want 201", got)
	}

	// Anonymous: three requests, then 429 with the headers; the pro key
	// is unaffected.
	anon := srv.base + "/lock/uuid/180da65c-cf80-4997-8574-0c0801817d6f"
	for i := range 3 {
		if resp := request(t, "GET", anon, ""); resp.StatusCode != 404 || resp.Header.Get("RateLimit-Limit") != "3" {
			t.Fatalf("anonymous request %d: %d, RateLimit-Limit %q", i, resp.StatusCode, resp.Header.Get("RateLimit-Limit"))
		}
	}
	resp := request(t, "GET", anon, "")
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || resp.Header.Get("RateLimit-Remaining") != "0" || resp.Header.Get("RateLimit-Reset") == "" {
		t.Errorf("anonymous over its rate: %d, headers %v", resp.StatusCode, resp.Header)
	}
	for range 10 {
		if resp := request(t, "GET", anon, acme); resp.StatusCode != 404 {
			t.Fatalf("pro key while anonymous is throttled: %d", resp.StatusCode)
		}
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
