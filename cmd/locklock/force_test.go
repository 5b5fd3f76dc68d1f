package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/locklock/locklock/internal/keys"
)

// TestReleaseForceEndToEnd: against `locklock serve` with a keys file that
// has an operator plan, `locklock release --force` by an operator key ends
// a lock and a slot taken with secrets it does not know, and the server's
// log has one `forced release` line for each, naming the key; the same
// command with an ordinary key exits 5 and changes nothing.
func TestReleaseForceEndToEnd(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys.json")
	f := keys.Default()
	f.Plans["ops"] = keys.Plan{CustomNames: true, Operator: true}
	raw, err := keys.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	pro := newKey(t, file, "acme", "pro")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"keys", "new", "--keys-file", file, "--namespace", "acme", "--plan", "ops", "--id", "acme-oncall"}, &stdout, &stderr, noEnv); code != 0 {
		t.Fatalf("keys new: exit %d: %s", code, stderr.String())
	}
	ops := strings.TrimSpace(stdout.String())
	srv := startServer(t, "--engine", "memory", "--keys-file", file)

	cli := func(key string, args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		env := map[string]string{"LOCKLOCK_SERVER": srv.base, "LOCKLOCK_API_KEY": key}
		code := run(args, &out, &errOut, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		return code, out.String(), errOut.String()
	}
	if code, _, errOut := cli(pro, "acquire", "key/stuck", "--secret", "only-the-holder-knows", "--holder", "ci-9", "--lock-delay", "5s"); code != exitOK {
		t.Fatalf("acquire: exit %d: %s", code, errOut)
	}
	if code, _, errOut := cli(pro, "release", "key/stuck", "--force"); code != exitRefused || !strings.Contains(errOut, "operator") {
		t.Errorf("release --force with an ordinary key: exit %d (%s), want %d saying an operator key is needed", code, errOut, exitRefused)
	}
	code, out, errOut := cli(ops, "release", "key/stuck", "--force")
	if code != exitOK {
		t.Fatalf("release --force by the operator: exit %d: %s", code, errOut)
	}
	var lock struct {
		Name   string `json:"name"`
		Holder string `json:"holder"`
		Token  uint64 `json:"fencing_token"`
	}
	if err := json.Unmarshal([]byte(out), &lock); err != nil || lock.Name != "stuck" || lock.Holder != "ci-9" || lock.Token == 0 {
		t.Errorf("release --force printed %q (%v), want the lock as it was", out, err)
	}
	// The revoke's lock-delay: the lost holder's secret cannot pass it.
	if code, _, errOut := cli(pro, "acquire", "key/stuck", "--secret", "only-the-holder-knows"); code != exitHeld {
		t.Errorf("acquire during the revoke's lock-delay: exit %d (%s), want %d", code, errOut, exitHeld)
	}

	code, out, errOut = cli(pro, "acquire", "semaphore/key/pool", "--limit", "1", "--secret", "s")
	if code != exitOK {
		t.Fatalf("acquire a slot: exit %d: %s", code, errOut)
	}
	var slot struct {
		Slot string `json:"slot"`
	}
	_ = json.Unmarshal([]byte(out), &slot)
	if code, _, errOut := cli(ops, "release", "semaphore/key/pool/"+slot.Slot, "--force"); code != exitOK {
		t.Fatalf("release --force of a slot: exit %d: %s", code, errOut)
	}

	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(srv.output(), `"msg":"forced release"`) < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	var audit []map[string]any
	for _, line := range strings.Split(srv.output(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "forced release" {
			audit = append(audit, m)
		}
	}
	if len(audit) != 2 {
		t.Fatalf("audit lines %v, want 2; the log:\n%s", audit, srv.output())
	}
	if a := audit[0]; a["level"] != "INFO" || a["key_id"] != "acme-oncall" || a["namespace"] != "acme" || a["kind"] != "key" || a["name"] != "stuck" || a["token"] != float64(lock.Token) {
		t.Errorf("the lock's audit line %v", a)
	}
	if a := audit[1]; a["key_id"] != "acme-oncall" || a["name"] != "pool" || a["slot"] != slot.Slot {
		t.Errorf("the slot's audit line %v", a)
	}
	for _, secret := range []string{"only-the-holder-knows", ops, pro} {
		if strings.Contains(srv.output(), secret) {
			t.Errorf("the server's log holds a secret or a key (%.12s…)", secret)
		}
	}
}
