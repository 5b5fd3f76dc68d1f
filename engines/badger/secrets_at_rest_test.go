package badger

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	bdg "github.com/dgraph-io/badger/v4"

	"github.com/locklock/locklock/internal/leakcheck"
	"github.com/locklock/locklock/locklock"
)

// TestSecretsAtRest: lock secrets live on disk only as salted hashes. After
// acquires, refreshes, releases (right and wrong), a waiter and a sweep
// through the Service, no file in the data directory — while the database is
// open (its write-ahead log) and after Close (its tables) — and no key or
// value of any version Badger still keeps holds a secret or its plain
// SHA-256, raw, in hex or in base64.
func TestSecretsAtRest(t *testing.T) {
	dir := t.TempDir()
	e, err := Open(dir, quiet)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			_ = e.Close()
		}
	}()
	clock := locklock.NewManualClock(time.Now())
	svc := locklock.NewService(e, locklock.WithClock(clock))
	ctx := t.Context()

	w := leakcheck.Run(t, svc)
	// A short lock expires and is swept.
	w.Acquire("f", time.Second)
	clock.Advance(2 * time.Second)
	if n, err := svc.Sweep(ctx); err != nil || n != 1 {
		t.Fatalf("sweep: %d %v, want the 1 expired lock", n, err)
	}

	forms := w.Forms()
	// While open, the write-ahead log is plain: the lock names must be
	// found there, or the scan proves nothing.
	leaks, seen := fileLeaks(t, dir, forms, []byte(w.ID("a").Name))
	if len(leaks) > 0 || !seen {
		t.Errorf("while open: leaks %q; lock names seen: %v", leaks, seen)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	if leaks, _ := fileLeaks(t, dir, forms, nil); len(leaks) > 0 {
		t.Errorf("after close: %q", leaks)
	}
	leaks, guards := valueLeaks(t, dir, forms)
	if len(leaks) > 0 {
		t.Errorf("stored keys and values: %q", leaks)
	}
	if guards < 5 {
		t.Errorf("read %d protected lock records back, want at least the 5 live ones: the scan proves nothing", guards)
	}
}

// TestSecretsAtRestScanFindsPlainHashes is the control: a lock stored
// straight through the engine with the secret's plain SHA-256 as its guard
// is found by every stage of the scan.
func TestSecretsAtRestScanFindsPlainHashes(t *testing.T) {
	dir := t.TempDir()
	e, err := Open(dir, quiet)
	if err != nil {
		t.Fatal(err)
	}
	secret := "s3cret-canary-" + rand.Text()
	sum := sha256.Sum256([]byte(secret))
	now := time.Now().UTC().Truncate(time.Millisecond)
	id := locklock.ID{Namespace: "public", Kind: locklock.KindKey, Name: "at-rest-control"}
	if _, err := e.TryAcquire(t.Context(), locklock.Lock{ID: id, AcquiredAt: now, ExpiresAt: now.Add(time.Hour), Guard: locklock.Guard(sum[:])}, now); err != nil {
		_ = e.Close()
		t.Fatal(err)
	}
	forms := leakcheck.Forms(secret)
	if leaks, _ := fileLeaks(t, dir, forms, nil); len(leaks) == 0 {
		t.Error("while open: the plain hash was not found in the files")
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if leaks, _ := fileLeaks(t, dir, forms, nil); len(leaks) == 0 {
		t.Log("after close: the plain hash is not visible in the (compressed) files; the value scan must find it")
	}
	if leaks, _ := valueLeaks(t, dir, forms); len(leaks) == 0 {
		t.Error("the plain hash was not found in the stored values")
	}
}

// fileLeaks reads every file under dir byte by byte and reports each that
// holds a form. seen says whether some file holds marker.
func fileLeaks(t *testing.T, dir string, forms map[string][]byte, marker []byte) (leaks []string, seen bool) {
	t.Helper()
	var names []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		names = append(names, fmt.Sprintf("%s (%d bytes)", d.Name(), len(b)))
		if what := leakcheck.Find(b, forms); what != "" {
			leaks = append(leaks, d.Name()+" holds "+what)
		}
		if marker != nil && bytes.Contains(b, marker) {
			seen = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	t.Logf("scanned %v", names)
	return leaks, seen
}

// valueLeaks opens the closed database read-only and checks every version
// of every key and value Badger keeps. Badger compresses its tables
// (Snappy), where a byte scan of the files could miss a secret. records is
// how many protected lock records it read.
func valueLeaks(t *testing.T, dir string, forms map[string][]byte) (leaks []string, records int) {
	t.Helper()
	db, err := bdg.Open(bdg.DefaultOptions(dir).WithReadOnly(true).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.View(func(txn *bdg.Txn) error {
		opts := bdg.DefaultIteratorOptions
		opts.AllVersions = true
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			if what := leakcheck.Find(item.Key(), forms); what != "" {
				leaks = append(leaks, fmt.Sprintf("key %q (version %d) holds %s", item.Key(), item.Version(), what))
			}
			if what := leakcheck.Find(v, forms); what != "" {
				leaks = append(leaks, fmt.Sprintf("value of %q (version %d) holds %s", item.Key(), item.Version(), what))
			}
			if id, err := parseLockKey(item.Key()); err == nil && len(v) > 0 {
				if l, err := decodeRecord(id, v); err == nil && l.Protected() {
					records++
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return leaks, records
}
