package examples_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSystemdUnit checks examples/systemd/locklock.service with
// systemd-analyze verify — against the binary built from this checkout,
// since verify checks that ExecStart's program exists — and that it carries
// the hardening and the settings the README promises. This machine's PID 1
// is not systemd: the unit is checked for syntax and content, not run.
func TestSystemdUnit(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze is needed (Debian: apt-get install systemd): %v", err)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the binary: %v", err)
	}
	unit, err := os.ReadFile("systemd/locklock.service")
	if err != nil {
		t.Fatal(err)
	}
	const installed = "/usr/local/bin/locklock"
	if !strings.Contains(string(unit), "ExecStart="+installed+" serve") {
		t.Fatalf("the unit's ExecStart is not %s serve", installed)
	}

	dir := t.TempDir()
	bin := filepath.Join(dir, "locklock")
	build := exec.Command(goBin, "build", "-o", bin, "../cmd/locklock")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	copyPath := filepath.Join(dir, "locklock.service")
	if err := os.WriteFile(copyPath, []byte(strings.ReplaceAll(string(unit), installed, bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	// verify exits 0 on an unknown or misspelt key and only says so: any
	// output at all is a failure.
	out, err := exec.Command(analyze, "verify", copyPath).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}

	directives := map[string][]string{}
	sc := bufio.NewScanner(strings.NewReader(string(unit)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			directives[k] = append(directives[k], v)
		}
	}
	for key, want := range map[string]string{
		"DynamicUser":             "yes",
		"StateDirectory":          "locklock",
		"ProtectSystem":           "strict",
		"NoNewPrivileges":         "yes",
		"PrivateTmp":              "yes",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"SystemCallFilter":        "@system-service",
		"ExecReload":              "/bin/kill -HUP $MAINPID",
		"EnvironmentFile":         "-/etc/locklock/locklock.env",
		"Environment":             "LOCKLOCK_DATA_DIR=/var/lib/locklock",
		"KillSignal":              "SIGTERM",
		"CapabilityBoundingSet":   "",
		"SystemCallErrorNumber":   "EPERM",
		"MemoryDenyWriteExecute":  "yes",
		"StateDirectoryMode":      "0700",
	} {
		if got := directives[key]; len(got) != 1 || got[0] != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
	// systemd must not kill the server while it drains: its stop timeout
	// exceeds the server's --shutdown-timeout (10 s by default).
	stop, err := time.ParseDuration(strings.Join(directives["TimeoutStopSec"], ""))
	if err != nil || stop <= 10*time.Second {
		t.Errorf("TimeoutStopSec = %q, want a duration above the 10 s shutdown timeout", directives["TimeoutStopSec"])
	}
}
