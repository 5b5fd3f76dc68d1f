//go:build linux

package badger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/locklock/locklock/internal/logbuf"
	"github.com/locklock/locklock/internal/tmpfs"
	"github.com/locklock/locklock/locklock"
)

// fullDiskEnv, set in the environment of a re-run of the test binary, makes
// TestMain run the full-disk scenario on the filesystem mounted there
// instead of the tests: a SIGBUS then kills only that process, and the test
// reports it as the crash it is.
const fullDiskEnv = "LOCKLOCK_TEST_FULL_DISK_MOUNT"

// fullDiskResult is what the scenario's process reports to the test.
type fullDiskResult struct {
	Held     []locklock.Lock // acknowledged acquires, not released
	Released []locklock.Lock // acknowledged acquires, then acknowledged releases
	Refused  int64           // acquires refused with ErrStorageFull
}

// TestFullDisk fills a 100 MiB tmpfs under a write load until the engine
// refuses acquires, then checks what still works, and that writes resume
// once space is freed. The scenario runs in a child process (see
// fullDiskScenario); this test checks that the process did not crash, and
// then that every lock it was told was acquired, and not released, is
// there after a reopen, with its token.
func TestFullDisk(t *testing.T) {
	mnt := tmpfs.Mount(t, "100m")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fullDiskEnv+"="+mnt)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the engine's process failed (%v); a SIGBUS is Badger writing through mmap into a full filesystem:\n%s", err, excerpt(out))
	}
	raw, err := os.ReadFile(filepath.Join(mnt, "result.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res fullDiskResult
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Fatal(err)
	}
	t.Logf("scenario: %d acquires acknowledged and held, %d released, %d refused for lack of space", len(res.Held), len(res.Released), res.Refused)

	e := open(t, filepath.Join(mnt, "data"))
	now := time.Now()
	for _, want := range res.Held {
		got, err := e.Get(t.Context(), want.ID, now)
		if err != nil {
			t.Fatalf("acknowledged lock %s after reopen: %v", want.Name, err)
		}
		if got.Token != want.Token || !got.ExpiresAt.Equal(want.ExpiresAt) {
			t.Fatalf("acknowledged lock %s after reopen: %+v, want %+v", want.Name, got, want)
		}
	}
	for _, gone := range res.Released {
		if _, err := e.Get(t.Context(), gone.ID, now); !errors.Is(err, locklock.ErrNotFound) {
			t.Fatalf("released lock %s after reopen: err %v, want ErrNotFound", gone.Name, err)
		}
	}
}

// excerpt keeps a crash's first lines (the signal) and the last ones (a
// failed check's message) of a long output.
func excerpt(out []byte) string {
	const n = 2000
	if len(out) <= 2*n {
		return string(out)
	}
	return string(out[:n]) + "\n…\n" + string(out[len(out)-n:])
}

// fullDiskScenario runs in the child process (TestMain) on the tmpfs at
// mnt and writes fullDiskResult to mnt/result.json.
func fullDiskScenario(mnt string) error {
	var logs logbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	e, err := Open(filepath.Join(mnt, "data"), WithLogger(log))
	if err != nil {
		return err
	}
	defer e.Close()
	ctx := context.Background()
	var res fullDiskResult
	secret := strings.Repeat("s", 200)

	// 1. Acquires from four goroutines; a filler file takes the free
	// space down to 2 MiB above the write reserve while they run.
	var (
		mu       sync.Mutex
		failures []error
		stop     atomic.Bool
		wg       sync.WaitGroup
	)
	refusedBy := make([]int, 4)
	for w := range 4 {
		wg.Go(func() {
			for i := 0; !stop.Load() && refusedBy[w] < 25; i++ {
				now := time.Now()
				got, err := e.TryAcquire(ctx, newLock(fmt.Sprintf("w%d-%07d", w, i), now, time.Hour, secret), now)
				mu.Lock()
				switch {
				case err == nil:
					res.Held = append(res.Held, got)
				case errors.Is(err, locklock.ErrStorageFull) && errors.Is(err, locklock.ErrUnavailable):
					refusedBy[w]++
					res.Refused++
				default:
					failures = append(failures, err)
					stop.Store(true)
				}
				mu.Unlock()
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	sp := e.Space()
	if err := fill(filepath.Join(mnt, "filler1"), sp, sp.WriteReserve+2<<20); err != nil {
		stop.Store(true)
		wg.Wait()
		return err
	}
	deadline := time.AfterFunc(60*time.Second, func() { stop.Store(true) })
	wg.Wait()
	deadline.Stop()
	if len(failures) > 0 {
		return fmt.Errorf("acquires failed other than for lack of space: %v", failures[0])
	}
	if res.Refused == 0 || len(res.Held) < 200 {
		return fmt.Errorf("after filling the disk: %d acquires granted, %d refused; want some of each", len(res.Held), res.Refused)
	}

	// 2. Below the write reserve: acquires and refreshes refused; reads,
	// answers about held locks, and releases served.
	if sp = e.Space(); !sp.WritesRefused || sp.ReleasesRefused {
		return fmt.Errorf("below the write reserve: %+v", sp)
	}
	now := time.Now()
	first := res.Held[0]
	if _, err := e.Refresh(ctx, first.ID, now, expireAt(now.Add(time.Hour)), allowAll); !errors.Is(err, locklock.ErrStorageFull) {
		return fmt.Errorf("refresh below the write reserve: %v, want ErrStorageFull", err)
	}
	var held *locklock.HeldError
	if _, err := e.TryAcquire(ctx, newLock(first.Name, now, time.Hour, ""), now); !errors.As(err, &held) || held.Lock.Token != first.Token {
		return fmt.Errorf("acquire of a held lock below the write reserve: %v, want it held with token %d", err, first.Token)
	}
	if got, err := e.Get(ctx, first.ID, now); err != nil || got.Token != first.Token {
		return fmt.Errorf("get below the write reserve: %+v, %v", got, err)
	}
	if ls, err := e.List(ctx, locklock.ListQuery{Namespace: "public", Kind: locklock.KindKey, Limit: 10}, now); err != nil || len(ls) != 10 {
		return fmt.Errorf("list below the write reserve: %d locks, %v", len(ls), err)
	}
	for range 100 {
		l := res.Held[len(res.Held)-1]
		if _, err := e.Release(ctx, l.ID, now, allowAll); err != nil {
			return fmt.Errorf("release below the write reserve: %v", err)
		}
		res.Held, res.Released = res.Held[:len(res.Held)-1], append(res.Released, l)
	}

	// 3. Below the release reserve: releases refused too, reads served.
	if err := fill(filepath.Join(mnt, "filler2"), e.Space(), e.Space().ReleaseReserve-1<<20); err != nil {
		return err
	}
	if err := waitFor(func() bool { return e.Space().ReleasesRefused }); err != nil {
		return fmt.Errorf("below the release reserve: %w: %+v", err, e.Space())
	}
	last := res.Held[len(res.Held)-1]
	if _, err := e.Release(ctx, last.ID, now, allowAll); !errors.Is(err, locklock.ErrStorageFull) {
		return fmt.Errorf("release below the release reserve: %v, want ErrStorageFull", err)
	}
	if got, err := e.Get(ctx, last.ID, now); err != nil || got.Token != last.Token {
		return fmt.Errorf("get below the release reserve: %+v, %v", got, err)
	}
	if _, err := e.Sweep(ctx, now.Add(2*time.Hour)); err != nil {
		return fmt.Errorf("sweep below the release reserve: %v, want it to wait quietly", err)
	}

	// 4. Space freed: everything accepted again, without a restart.
	for _, f := range []string{"filler1", "filler2"} {
		if err := os.Remove(filepath.Join(mnt, f)); err != nil {
			return err
		}
	}
	var again locklock.Lock
	err = waitFor(func() bool {
		now := time.Now()
		again, err = e.TryAcquire(ctx, newLock("after-space-freed", now, time.Hour, secret), now)
		return err == nil
	})
	if err != nil {
		return fmt.Errorf("acquire after the filler was deleted: %v", err)
	}
	if _, err := e.Release(ctx, last.ID, time.Now(), allowAll); err != nil {
		return fmt.Errorf("release after the filler was deleted: %v", err)
	}
	res.Held, res.Released = append(res.Held[:len(res.Held)-1], again), append(res.Released, last)
	if sp := e.Space(); sp.WritesRefused || sp.ReleasesRefused {
		return fmt.Errorf("after the filler was deleted: %+v", sp)
	}

	// 5. One log line per change of state.
	for msg, want := range map[string]int{
		"level=WARN msg=\"data directory low on free space":        1,
		"level=WARN msg=\"data directory nearly out of free space": 1,
		"level=INFO msg=\"data directory has free space again":     1,
	} {
		if n := strings.Count(logs.String(), msg); n != want {
			return fmt.Errorf("%d log lines %s, want %d; log:\n%s", n, msg, want, logs.String())
		}
	}

	if err := e.Close(); err != nil {
		return err
	}
	raw, err := json.Marshal(res)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(mnt, "result.json"), raw, 0o600)
}

// fill allocates a file so that about leave bytes stay free.
func fill(name string, sp Space, leave uint64) error {
	if !sp.Known || sp.Free <= leave+1<<20 {
		return fmt.Errorf("cannot leave %d bytes free by filling: %+v", leave, sp)
	}
	return tmpfs.Fill(name, int64(sp.Free-leave))
}

// waitFor polls cond for up to 5 s.
func waitFor(cond func() bool) error {
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
	}
	return nil
}

// TestOpenNeedsFreeSpace: on a filesystem with less than 16 MiB free, Open
// fails and says why, rather than risk SIGBUS in Badger's own writes at
// open.
func TestOpenNeedsFreeSpace(t *testing.T) {
	mnt := tmpfs.Mount(t, "8m")
	e, err := Open(filepath.Join(mnt, "data"), quiet)
	if err == nil {
		_ = e.Close()
		t.Fatal("Open with 8 MiB free succeeded, want an error")
	}
	if !strings.Contains(err.Error(), "opening needs at least 16777216 (16 MiB): free some space") {
		t.Errorf("Open with 8 MiB free: %v, want it to say how much it needs", err)
	}
}
