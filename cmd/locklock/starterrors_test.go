package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/locklock/locklock/internal/tmpfs"
)

// serveFails runs `locklock serve args...` as a child process at the
// default log level and format, expects it to exit on its own, and returns
// its exit code and stderr. cred, when not nil, is whom the child runs as
// (the binary is then copied somewhere that user can reach).
func serveFails(t *testing.T, cred *syscall.Credential, args ...string) (int, string) {
	t.Helper()
	args = append([]string{"serve", "--addr", "127.0.0.1:0"}, args...)
	bin := os.Args[0]
	if cred != nil {
		bin = reachableCopy(t, bin)
	}
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), "LOCKLOCK_TEST_MAIN=1", "LOCKLOCK_TEST_ARGS="+strings.Join(args, "\x1f"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatal(err)
		}
		return cmd.ProcessState.ExitCode(), stderr.String()
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("server did not exit; stderr:\n%s", stderr.String())
		return 0, ""
	}
}

// reachableCopy copies the test binary into a directory every user can
// read, so that a child running as another user can execute it (go test's
// build directory is private to its owner).
func reachableCopy(t *testing.T, bin string) string {
	t.Helper()
	dir := tmpfs.PublicDir(t)
	src, err := os.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst := filepath.Join(dir, "locklock.test")
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, src); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// wantOneLine checks the start-up failure contract: exit code 1 and
// exactly one line on stderr, the one given.
func wantOneLine(t *testing.T, code int, stderr, want string) {
	t.Helper()
	if code != exitError {
		t.Errorf("exit code %d, want %d", code, exitError)
	}
	if stderr != want+"\n" {
		t.Errorf("stderr:\n%s\nwant exactly the line:\n%s", stderr, want)
	}
}

// busyPort is an address something already listens on.
func busyPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln.Addr().String()
}

func TestStartupErrorDataDirNotADirectory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	code, stderr := serveFails(t, nil, "--engine", "badger", "--data-dir", file)
	wantOneLine(t, code, stderr, "locklock: --data-dir "+file+": not a directory")
}

// TestStartupErrorDataDirNotWritable: a data directory the server's user
// cannot write. Permission checks do not apply to root (CI runs as root),
// so as root the server runs as uid 65532 (the container image's user) on a
// directory root owns; as anyone else, on a directory made read-only.
func TestStartupErrorDataDirNotWritable(t *testing.T) {
	dir := filepath.Join(tmpfs.PublicDir(t), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var cred *syscall.Credential
	uid := os.Getuid()
	if uid == 0 {
		uid = 65532
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}
	} else {
		if err := os.Chmod(dir, 0o500); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
	}
	code, stderr := serveFails(t, cred, "--engine", "badger", "--data-dir", dir)
	wantOneLine(t, code, stderr, fmt.Sprintf("locklock: --data-dir %s: permission denied (running as uid %d)", dir, uid))
}

func TestStartupErrorAddrInUse(t *testing.T) {
	addr := busyPort(t)
	code, stderr := serveFails(t, nil, "--engine", "memory", "--addr", addr)
	wantOneLine(t, code, stderr, "locklock: --addr "+addr+": address already in use")
}

func TestStartupErrorOpsAddrInUse(t *testing.T) {
	addr := busyPort(t)
	code, stderr := serveFails(t, nil, "--engine", "memory", "--ops-addr", addr)
	wantOneLine(t, code, stderr, "locklock: --ops-addr "+addr+": address already in use")
}

func TestStartupErrorTLSFiles(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not PEM\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		name, cert, key, want string
	}{
		{"missing cert", missing, garbage, "locklock: --tls-cert " + missing + ": no such file or directory"},
		{"missing key", garbage, missing, "locklock: --tls-key " + missing + ": no such file or directory"},
		{"not PEM", garbage, garbage, "locklock: --tls-cert/--tls-key " + garbage + " " + garbage + ": tls: failed to find any PEM data in certificate input"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stderr := serveFails(t, nil, "--engine", "memory", "--tls-cert", tc.cert, "--tls-key", tc.key)
			wantOneLine(t, code, stderr, tc.want)
		})
	}
}

func TestStartupErrorKeysFile(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "keys.json")
	if err := os.WriteFile(bad, []byte("{bad"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.json")
	t.Run("missing", func(t *testing.T) {
		code, stderr := serveFails(t, nil, "--engine", "memory", "--keys-file", missing)
		wantOneLine(t, code, stderr, "locklock: --keys-file "+missing+": no such file or directory")
	})
	t.Run("malformed", func(t *testing.T) {
		code, stderr := serveFails(t, nil, "--engine", "memory", "--keys-file", bad)
		wantOneLine(t, code, stderr, "locklock: --keys-file "+bad+": invalid keys file: line 1: invalid character 'b'")
	})
}

// TestStartupErrorBadFlag: a flag error stays a usage error (exit 2) that
// names the flag.
func TestStartupErrorBadFlag(t *testing.T) {
	code, stderr := serveFails(t, nil, "--no-such-flag")
	if code != exitUsage || !strings.HasPrefix(stderr, "flag provided but not defined: -no-such-flag\n") {
		t.Errorf("exit %d, stderr:\n%s\nwant exit %d and the flag named first", code, stderr, exitUsage)
	}
}
