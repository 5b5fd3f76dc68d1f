//go:build unix

package badger

import (
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/locklock/locklock/internal/logbuf"
)

// checkModes fails for a directory that is not 0700 or a file in it that is
// not 0600.
func checkModes(t *testing.T, dir, when string) {
	t.Helper()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("%s: directory mode %v, want 0700", when, fi.Mode().Perm())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range entries {
		fi, err := ent.Info()
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %s has mode %v, want 0600", when, ent.Name(), fi.Mode().Perm())
		}
	}
}

// TestFileModes: an existing 0755 directory is tightened to 0700 and every
// file in it is 0600 after Open; files Badger creates while running (a new
// WAL and the table of a flushed memtable) become 0600 on the next pass and
// at Close. The process umask is the usual 022, under which Badger's own
// files would be 0644.
func TestFileModes(t *testing.T) {
	old := syscall.Umask(0o022)
	t.Cleanup(func() { syscall.Umask(old) })
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	e, err := Open(dir, quiet, WithSyncWrites(false))
	if err != nil {
		t.Fatal(err)
	}
	checkModes(t, dir, "after Open")

	before := fileNames(t, dir)
	// Fill more than one memtable (4 MiB, ~250 bytes a lock) so that Badger
	// creates a new WAL and flushes the old one to a table.
	for i := 0; ; i++ {
		mustAcquire(t, e, newLock(fmt.Sprintf("lock-%07d", i), t0, time.Hour, "secret"), t0)
		if i%1000 == 0 && hasNewTable(t, dir, before) {
			break
		}
		if i > 200_000 {
			t.Fatal("no table was flushed after 200,000 acquires")
		}
	}
	e.modes.last.Store(0) // the pass is due, as after 5 s
	mustAcquire(t, e, newLock("one-more", t0, time.Hour, ""), t0)
	checkModes(t, dir, "while running, after a flush")

	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	checkModes(t, dir, "after Close")
}

func fileNames(t *testing.T, dir string) map[string]bool {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, ent := range entries {
		names[ent.Name()] = true
	}
	return names
}

func hasNewTable(t *testing.T, dir string, before map[string]bool) bool {
	for name := range fileNames(t, dir) {
		if strings.HasSuffix(name, ".sst") && !before[name] {
			return true
		}
	}
	return false
}

// TestNewDirectoryMode: a directory Open creates is 0700 whatever the umask.
func TestNewDirectoryMode(t *testing.T) {
	old := syscall.Umask(0)
	t.Cleanup(func() { syscall.Umask(old) })
	dir := filepath.Join(t.TempDir(), "new")
	open(t, dir)
	checkModes(t, dir, "new directory after Open")
}

// TestChmodRefused: where the directory's mode cannot be changed (a volume
// root owned by another user), Open warns and serves.
func TestChmodRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil { // past the umask
		t.Fatal(err)
	}
	var logs logbuf.Buffer
	refuse := func(c *config) {
		c.chmod = func(name string, mode fs.FileMode) error {
			if name == dir {
				return &fs.PathError{Op: "chmod", Path: name, Err: syscall.EPERM}
			}
			return os.Chmod(name, mode)
		}
	}
	e, err := Open(dir, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))), refuse)
	if err != nil {
		t.Fatalf("Open with a directory whose mode cannot be changed: %v, want it to serve", err)
	}
	t.Cleanup(func() { _ = e.Close() })
	mustAcquire(t, e, newLock("a", t0, time.Hour, ""), t0)
	if !strings.Contains(logs.String(), "level=WARN msg=\"cannot restrict the data directory to its owner") {
		t.Errorf("no warning about the directory's mode; log:\n%s", logs.String())
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o755 {
		t.Errorf("directory mode %v, want it left at 0755", fi.Mode().Perm())
	}
}
