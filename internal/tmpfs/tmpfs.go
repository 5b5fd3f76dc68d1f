//go:build linux

// Package tmpfs gives tests directories of particular kinds: small
// filesystems they can fill up (the Badger engine's free-space reserve), and
// directories other users can read (PublicDir).
package tmpfs

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Mount mounts a tmpfs of the given size (mount's size= option, e.g.
// "100m") in a fresh directory, unmounts it when the test ends, and returns
// the directory. Mounting needs root, which CI has: without root the test
// is skipped and says why; as root, a mount that fails fails the test.
// Register it before anything that must be closed before the unmount
// (cleanups run last-registered first).
func Mount(t testing.TB, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("this test mounts a tmpfs and needs root (CI runs it as root)")
	}
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Fatalf("mount a tmpfs of %s on %s (as root): %v", size, dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// Fill allocates a file of size bytes at name (fallocate: the blocks are
// taken at once, without writing them).
func Fill(name string, size int64) error {
	f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, size); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
