package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/locklock/locklock/internal/keys"
)

// runKeys runs locklock with args and env (only these variables).
func runKeys(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut, func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	})
	return code, out.String(), errOut.String()
}

var keyLine = regexp.MustCompile(`^llk_[A-Za-z0-9_-]{43}\n$`)

func TestKeysNewCreatesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	code, stdout, stderr := runKeys(t, nil, "keys", "new", "--keys-file", path, "--namespace", "acme", "--plan", "pro", "--id", "acme-ci")
	if code != exitOK {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if !keyLine.MatchString(stdout) {
		t.Fatalf("stdout = %q, want exactly one line llk_<43 characters>", stdout)
	}
	key := strings.TrimSuffix(stdout, "\n")
	for _, w := range []string{`"acme-ci"`, "namespace acme", "plan pro", path, "Authorization: Bearer", "SIGHUP", "default plans"} {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr %q does not mention %q", stderr, w)
		}
	}
	if strings.Contains(stderr, key) || strings.Count(stderr, "\n") != 1 {
		t.Errorf("stderr should be one line without the key: %q", stderr)
	}

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte(key)) || bytes.Contains(data, []byte(key[4:])) {
		t.Fatal("the key itself is in the keys file")
	}
	f, err := keys.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	want := keys.Default()
	want.Keys = []keys.Key{{ID: "acme-ci", Namespace: "acme", Plan: "pro", SHA256: keys.HashKey(key)}}
	if !reflect.DeepEqual(f, want) {
		t.Fatalf("keys file = %+v, want %+v", f, want)
	}
	if got, plan, ok := keys.NewIndex(f).Lookup(key); !ok || got.ID != "acme-ci" || !plan.CustomNames {
		t.Fatalf("the printed key does not work: %+v %+v %v", got, plan, ok)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode of the new keys file: %v %v", st.Mode(), err)
	}

	// A second key, with the default id, is appended.
	code, stdout2, stderr := runKeys(t, nil, "keys", "new", "--keys-file", path, "--namespace", "beta", "--plan", "developer")
	if code != exitOK || !keyLine.MatchString(stdout2) || stdout2 == stdout {
		t.Fatalf("second key: exit %d, stdout %q, stderr %q", code, stdout2, stderr)
	}
	if strings.Contains(stderr, "default plans") {
		t.Errorf("stderr %q says the file was created", stderr)
	}
	f, err = keys.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Keys) != 2 || !regexp.MustCompile(`^beta-[0-9a-f]{8}$`).MatchString(f.Keys[1].ID) {
		t.Fatalf("keys after the second: %+v", f.Keys)
	}
	if f.Keys[1].SHA256 != keys.HashKey(strings.TrimSuffix(stdout2, "\n")) {
		t.Fatal("the second entry is not the printed key's hash")
	}
}

func TestKeysList(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	data := `{"anonymous": {"plan": "free"},
	 "plans": {"free": {"rate": 2.5, "burst": 5}, "pro": {"custom_names": true}, "ops": {"custom_names": true, "operator": true}},
	 "keys": [{"id": "acme-ci", "namespace": "acme", "plan": "pro", "sha256": "` + keys.HashKey("k1") + `"},
	          {"id": "beta-1", "namespace": "beta", "plan": "free", "sha256": "` + keys.HashKey("k2") + `"}]}`
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runKeys(t, nil, "keys", "list", "--keys-file", path)
	if code != exitOK || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	want := `anonymous: plan free

PLAN  CUSTOM_NAMES  OPERATOR  RATE       BURST
free  false         false     2.5/s      5
ops   true          true      unlimited  -
pro   true          false     unlimited  -

ID       NAMESPACE  PLAN
acme-ci  acme       pro
beta-1   beta       free
`
	if stdout != want {
		t.Fatalf("list =\n%s\nwant\n%s", stdout, want)
	}
	for _, h := range []string{keys.HashKey("k1"), keys.HashKey("k2")} {
		if strings.Contains(stdout, h[:16]) {
			t.Fatal("list shows a hash")
		}
	}

	// Anonymous off, no keys.
	if err := os.WriteFile(path, []byte(`{"anonymous": null, "plans": {"pro": {}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, _ = runKeys(t, nil, "keys", "list", "--keys-file", path)
	if code != exitOK || !strings.HasPrefix(stdout, "anonymous: off\n") || !strings.HasSuffix(stdout, "\nno keys\n") {
		t.Fatalf("exit %d, list =\n%s", code, stdout)
	}
}

func TestKeysUsageErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys.json")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no subcommand", []string{"keys"}, "Usage: locklock keys"},
		{"unknown subcommand", []string{"keys", "delete"}, `unknown command "delete"`},
		{"new without flags", []string{"keys", "new"}, "missing --keys-file, --namespace, --plan"},
		{"new without keys file", []string{"keys", "new", "--namespace", "acme", "--plan", "pro"}, "missing --keys-file"},
		{"new without namespace", []string{"keys", "new", "--keys-file", path, "--plan", "pro"}, "missing --namespace"},
		{"new without plan", []string{"keys", "new", "--keys-file", path, "--namespace", "acme"}, "missing --plan"},
		{"new with an unknown flag", []string{"keys", "new", "--keys-file", path, "--namespace", "acme", "--plan", "pro", "--name", "x"}, "flag provided but not defined"},
		{"new with an argument", []string{"keys", "new", "--keys-file", path, "--namespace", "acme", "--plan", "pro", "extra"}, `unexpected argument "extra"`},
		{"list without keys file", []string{"keys", "list"}, "missing --keys-file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runKeys(t, nil, tt.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			if stdout != "" {
				t.Errorf("stdout = %q", stdout)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr %q does not contain %q", stderr, tt.want)
			}
		})
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("a usage error created the keys file")
	}
	if code, stdout, _ := runKeys(t, nil, "keys", "help"); code != exitOK || !strings.Contains(stdout, "keys <command>") {
		t.Errorf("keys help: exit %d, stdout %q", code, stdout)
	}
	if code, _, stderr := runKeys(t, nil, "keys", "new", "-h"); code != exitOK || !strings.Contains(stderr, "--keys-file F") {
		t.Errorf("keys new -h: exit %d, stderr %q", code, stderr)
	}
	if code, stdout, _ := runKeys(t, nil, "help"); code != exitOK || !strings.Contains(stdout, "keys") {
		t.Errorf("help does not list keys: %q", stdout)
	}
}

func TestKeysNewRefusals(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	if code, _, stderr := runKeys(t, nil, "keys", "new", "--keys-file", path, "--namespace", "acme", "--plan", "pro", "--id", "acme-ci"); code != exitOK {
		t.Fatalf("first key: %s", stderr)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown plan", []string{"--namespace", "acme", "--plan", "gold"}, `plan "gold" does not exist (plans: developer, pro)`},
		{"duplicate id", []string{"--namespace", "acme", "--plan", "pro", "--id", "acme-ci"}, `key "acme-ci": duplicate id`},
		{"bad namespace", []string{"--namespace", "Acme", "--plan", "pro"}, `namespace "Acme"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runKeys(t, nil, append([]string{"keys", "new", "--keys-file", path}, tt.args...)...)
			if code != exitError {
				t.Errorf("exit %d, want %d", code, exitError)
			}
			if stdout != "" {
				t.Errorf("stdout = %q: a refused key must not be shown", stdout)
			}
			if !strings.Contains(stderr, tt.want) || strings.Count(stderr, "\n") != 1 {
				t.Errorf("stderr %q: want one line containing %q", stderr, tt.want)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
				t.Errorf("the keys file changed:\n%s", after)
			}
		})
	}

	// A broken keys file is neither listed nor appended to.
	if err := os.WriteFile(path, []byte(`{"plans": {"pro": {"rate": 1}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runKeys(t, nil, "keys", "list", "--keys-file", path); code != exitError || !strings.Contains(stderr, `plan "pro"`) {
		t.Errorf("list of a broken file: exit %d, stderr %q", code, stderr)
	}
	if code, stdout, _ := runKeys(t, nil, "keys", "new", "--keys-file", path, "--namespace", "acme", "--plan", "pro"); code != exitError || stdout != "" {
		t.Errorf("new on a broken file: exit %d, stdout %q", code, stdout)
	}
	if code, _, _ := runKeys(t, nil, "keys", "list", "--keys-file", filepath.Join(t.TempDir(), "missing.json")); code != exitError {
		t.Errorf("list of a missing file: exit %d", code)
	}
}

func TestKeysEnvironment(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	env := map[string]string{"LOCKLOCK_KEYS_FILE": path, "LOCKLOCK_NAMESPACE": "acme", "LOCKLOCK_PLAN": "pro"}
	code, stdout, stderr := runKeys(t, env, "keys", "new", "--id", "from-env")
	if code != exitOK || !keyLine.MatchString(stdout) {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	// Flags win over the environment.
	code, _, stderr = runKeys(t, env, "keys", "new", "--plan", "developer", "--id", "flag-wins")
	if code != exitOK {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	// --id is not taken from the environment.
	env["LOCKLOCK_ID"] = "from-env"
	if code, _, stderr = runKeys(t, env, "keys", "new"); code != exitOK {
		t.Fatalf("LOCKLOCK_ID was used: exit %d, stderr %q", code, stderr)
	}
	f, err := keys.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, k := range f.Keys {
		got = append(got, k.ID+" "+k.Namespace+" "+k.Plan)
	}
	if len(got) != 3 || got[0] != "from-env acme pro" || got[1] != "flag-wins acme developer" || !strings.HasPrefix(got[2], "acme-") {
		t.Fatalf("keys = %q", got)
	}
	code, stdout, _ = runKeys(t, map[string]string{"LOCKLOCK_KEYS_FILE": path}, "keys", "list")
	if code != exitOK || !strings.Contains(stdout, "flag-wins") {
		t.Fatalf("list with LOCKLOCK_KEYS_FILE: exit %d\n%s", code, stdout)
	}
}
