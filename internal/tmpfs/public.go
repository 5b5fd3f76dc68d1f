package tmpfs

import (
	"os"
	"testing"
)

// PublicDir is a fresh directory every user may enter and read but only its
// owner may write, removed when the test ends. t.TempDir's parents are
// private to their owner, so a test running a server as another user (the
// image's or a pod's uid) puts the binary and the server's files here.
func PublicDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "locklock-public-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
