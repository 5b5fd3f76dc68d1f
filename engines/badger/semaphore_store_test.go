package badger

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
)

// Semaphores in storage: durability, the free-space guard, listing, and the
// separation of semaphores from locks.

// TestSlotsSurviveReopen: slots, labels and guards included, are as they
// were after a clean reopen and after a crash; released ones stay gone.
func TestSlotsSurviveReopen(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	e, err := Open(dir, quiet)
	if err != nil {
		t.Fatal(err)
	}
	a := newSlot("dur", 5, 2, t0, time.Hour, "pw")
	a.Holder, a.Metadata = "host-a", map[string]string{"x": "1", "y": "2"}
	a = mustSlot(t, e, a, t0)
	b := mustSlot(t, e, newSlot("dur", 5, 3, t0, time.Hour, ""), t0)
	gone := mustSlot(t, e, newSlot("other", 1, 1, t0, time.Hour, ""), t0)
	if _, err := e.ReleaseSlot(ctx, gone.Semaphore, gone.ID, t0, allowAnySlot); err != nil {
		t.Fatal(err)
	}
	b, err = e.RefreshSlot(ctx, b.Semaphore, b.ID, t0, expireAt(t0.Add(2*time.Hour)), allowAnySlot)
	if err != nil {
		t.Fatal(err)
	}
	check := func(e *Engine, when string) {
		t.Helper()
		sem, err := e.GetSemaphore(ctx, testID("dur"), t0)
		if err != nil || sem.InUse != 5 || len(sem.Slots) != 2 || !sameSlot(sem.Slots[0], a) || !sameSlot(sem.Slots[1], b) {
			t.Errorf("%s: GetSemaphore = %+v, %v; want %+v and %+v", when, sem, err, a, b)
		}
		if !sem.Slots[0].Guard.Admits("pw") || sem.Slots[0].Guard.Admits("other") {
			t.Errorf("%s: the guard does not check the secret any more", when)
		}
		if _, err := e.GetSemaphore(ctx, gone.Semaphore, t0); !errors.Is(err, locklock.ErrSemaphoreNotFound) {
			t.Errorf("%s: released semaphore: %v", when, err)
		}
		checkSlots(t, e)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e, err = Open(dir, quiet)
	if err != nil {
		t.Fatal(err)
	}
	check(e, "after a reopen")
	c := mustSlot(t, e, newSlot("late", 2, 1, t0, time.Hour, ""), t0)
	crash(t, e)
	e = open(t, dir)
	check(e, "after a crash")
	if got, err := e.GetSlot(ctx, c.Semaphore, c.ID, t0); err != nil || !sameSlot(got, c) {
		t.Errorf("slot acquired just before the crash: %+v, %v", got, err)
	}
	if d := mustSlot(t, e, newSlot("late", 2, 1, t0, time.Hour, ""), t0); d.Token <= c.Token {
		t.Errorf("token after the crash %d, want above %d", d.Token, c.Token)
	}
}

// slotKillEnv, set in the environment of a re-run of the test binary,
// makes TestMain run slotKillScenario in the directory it names instead of
// the tests, until the test kills it.
const slotKillEnv = "LOCKLOCK_TEST_SLOT_KILL_DIR"

// slotKillLine is what the scenario prints once an operation has been
// acknowledged.
type slotKillLine struct {
	Slot     locklock.Slot
	Released bool
}

// TestSlotsSurviveKill: every slot the engine acknowledged to a process
// killed with SIGKILL is there when the directory is opened again, with
// its token; every acknowledged release stays released; tokens go on
// rising.
func TestSlotsSurviveKill(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), slotKillEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[string]locklock.Slot{}
	released := map[string]bool{}
	var top uint64
	lines := bufio.NewScanner(out)
	for n := 0; n < 300 && lines.Scan(); n++ {
		var l slotKillLine
		if err := json.Unmarshal(lines.Bytes(), &l); err != nil {
			t.Fatalf("line %q: %v", lines.Text(), err)
		}
		if l.Released {
			released[l.Slot.ID] = true
			delete(acked, l.Slot.ID)
			continue
		}
		acked[l.Slot.ID] = l.Slot
		top = max(top, l.Slot.Token)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if len(acked) < 100 || len(released) < 10 {
		t.Fatalf("the scenario acknowledged %d slots held and %d released before it was killed; want more", len(acked), len(released))
	}

	e := open(t, dir)
	now := time.Now()
	for _, want := range acked {
		got, err := e.GetSlot(t.Context(), want.Semaphore, want.ID, now)
		if err != nil || got.Token != want.Token || !got.ExpiresAt.Equal(want.ExpiresAt) || got.Holder != want.Holder {
			t.Fatalf("acknowledged slot %s after kill -9: %+v, %v; want %+v", want.ID, got, err, want)
		}
	}
	for id := range released {
		if _, err := e.GetSlot(t.Context(), testID("kill"), id, now); !errors.Is(err, locklock.ErrSlotNotFound) {
			t.Fatalf("released slot %s after kill -9: %v", id, err)
		}
	}
	checkSlots(t, e)
	if s := mustSlot(t, e, newSlot("kill", 100000/10, 1, now, time.Hour, ""), now); s.Token <= top {
		t.Errorf("token after kill -9 %d, want above %d", s.Token, top)
	}
	t.Logf("%d slots acknowledged and held, %d released, before kill -9: all as acknowledged", len(acked), len(released))
}

// slotKillScenario acquires slots in dir, releasing every fifth, and prints
// each acknowledgement, until it is killed.
func slotKillScenario(dir string) error {
	e, err := Open(dir, quiet)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(os.Stdout) // unbuffered: a line printed is out
	for i := 0; ; i++ {
		now := time.Now()
		cand := newSlot("kill", 10000, 1, now, time.Hour, "")
		cand.Holder = fmt.Sprintf("w-%d", i)
		s, _, err := e.TryAcquireSlot(context.Background(), cand, now, nil)
		if err != nil {
			return err
		}
		if err := enc.Encode(slotKillLine{Slot: s}); err != nil {
			return err
		}
		if i%5 == 4 {
			if _, err := e.ReleaseSlot(context.Background(), s.Semaphore, s.ID, now, allowAnySlot); err != nil {
				return err
			}
			if err := enc.Encode(slotKillLine{Slot: s, Released: true}); err != nil {
				return err
			}
		}
	}
}

// TestSlotStorageFull: with free space below the write reserve, slot
// acquires and refreshes are refused with ErrStorageFull while answers that
// write nothing (full, a retry) and releases are served; below the release
// reserve, releases and the deletion of expired slots wait too, and an
// expired slot, though still stored, is neither served nor revived.
func TestSlotStorageFull(t *testing.T) {
	ctx := t.Context()
	e := open(t, t.TempDir(), WithLogger(nil)) // the warnings are expected
	var free atomic.Uint64
	free.Store(1 << 40)
	e.space.free = func(string) (uint64, error) { return free.Load(), nil }
	e.space.every = 0 // measure on every admission
	id := testID("space")
	a := mustSlot(t, e, newSlot("space", 3, 2, t0, time.Minute, "pw"), t0)
	b := mustSlot(t, e, newSlot("space", 3, 1, t0, time.Hour, ""), t0)

	free.Store(e.tableBytes() + releaseHeadroom + writeMargin/2) // between the reserves
	if _, _, err := e.TryAcquireSlot(ctx, newSlot("elsewhere", 3, 1, t0, time.Minute, ""), t0, nil); !errors.Is(err, locklock.ErrStorageFull) || !errors.Is(err, locklock.ErrUnavailable) {
		t.Errorf("acquire below the write reserve: %v, want ErrStorageFull", err)
	}
	if _, _, err := e.TryAcquireSlot(ctx, newSlot("space", 3, 1, t0, time.Minute, ""), t0, nil); !errors.Is(err, locklock.ErrSemaphoreFull) {
		t.Errorf("acquire of a full semaphore below the write reserve: %v, want ErrSemaphoreFull", err)
	}
	if r, created, err := e.TryAcquireSlot(ctx, newSlot("space", 3, 1, t0, time.Minute, "pw"), t0, sameSecret("pw")); err != nil || created || !sameSlot(r, a) {
		t.Errorf("retry below the write reserve: %+v, %v, %v; want the slot", r, created, err)
	}
	if _, err := e.RefreshSlot(ctx, id, b.ID, t0, expireAt(t0.Add(2*time.Hour)), allowAnySlot); !errors.Is(err, locklock.ErrStorageFull) {
		t.Errorf("refresh below the write reserve: %v, want ErrStorageFull", err)
	}
	if _, err := e.ReleaseSlot(ctx, id, b.ID, t0, allowAnySlot); err != nil {
		t.Errorf("release below the write reserve: %v", err)
	}

	free.Store(1 << 20) // below both
	c := a.ExpiresAt
	if _, err := e.GetSlot(ctx, id, a.ID, c); !errors.Is(err, locklock.ErrSlotNotFound) {
		t.Errorf("expired slot below the release reserve: %v, want ErrSlotNotFound", err)
	}
	if _, err := e.GetSemaphore(ctx, id, c); !errors.Is(err, locklock.ErrSemaphoreNotFound) {
		t.Errorf("semaphore with only an expired slot below the release reserve: %v, want ErrSemaphoreNotFound", err)
	}
	if got, err := e.ListSemaphores(ctx, locklock.ListQuery{Namespace: id.Namespace, Kind: id.Kind, Limit: 10}, c); err != nil || len(got) != 0 {
		t.Errorf("ListSemaphores below the release reserve: %+v, %v; want nothing", got, err)
	}
	if n, err := e.Sweep(ctx, c); err != nil || n != 0 {
		t.Errorf("Sweep below the release reserve: %d, %v; want it to wait quietly", n, err)
	}
	// Still stored, it is not revived by a refresh judged earlier.
	if _, err := e.RefreshSlot(ctx, id, a.ID, t0, expireAt(t0.Add(time.Hour)), allowAnySlot); !errors.Is(err, locklock.ErrStorageFull) {
		t.Errorf("refresh judged before the expiry, below the release reserve: %v, want ErrStorageFull", err)
	}

	free.Store(1 << 40)
	if n, err := e.Sweep(ctx, c); err != nil || n != 1 {
		t.Errorf("Sweep with space again: %d, %v; want the expired slot", n, err)
	}
	if _, err := e.RefreshSlot(ctx, id, a.ID, t0, expireAt(t0.Add(time.Hour)), allowAnySlot); !errors.Is(err, locklock.ErrSlotNotFound) {
		t.Errorf("refresh after the sweep: %v, want ErrSlotNotFound", err)
	}
	mustSlot(t, e, newSlot("space", 9, 9, c, time.Minute, ""), c)
	checkSlots(t, e)
}

// TestListSemaphores: name order, prefix, after and limit; only semaphores
// with live slots; only the namespace and kind asked for; locks apart.
func TestListSemaphores(t *testing.T) {
	ctx := t.Context()
	e := open(t, t.TempDir())
	for _, s := range []struct {
		name          string
		limit, weight int
		n             int
	}{{"b", 10, 2, 3}, {"a", 4, 1, 1}, {"ab", 2, 2, 1}, {"a-1", 1, 1, 1}, {"c", 5, 5, 1}} {
		for range s.n {
			mustSlot(t, e, newSlot(s.name, s.limit, s.weight, t0, time.Hour, ""), t0)
		}
	}
	mustSlot(t, e, newSlot("expired", 3, 1, t0, time.Second, ""), t0)
	short := mustSlot(t, e, newSlot("b", 10, 1, t0, time.Second, ""), t0) // b: one slot expires
	// Same names elsewhere, and locks, must not show.
	for _, other := range []locklock.ID{
		{Namespace: "other", Kind: locklock.KindKey, Name: "a"},
		{Namespace: "public", Kind: locklock.KindUUID, Name: "a"},
	} {
		s := newSlot("", 3, 1, t0, time.Hour, "")
		s.Semaphore = other
		mustSlot(t, e, s, t0)
	}
	mustAcquire(t, e, newLock("a", t0, time.Hour, ""), t0)
	mustAcquire(t, e, newLock("lock-only", t0, time.Hour, ""), t0)

	now := t0.Add(time.Minute)
	all := map[string]locklock.SemaphoreSummary{
		"a": {Limit: 4, InUse: 1, Slots: 1}, "a-1": {Limit: 1, InUse: 1, Slots: 1}, "ab": {Limit: 2, InUse: 2, Slots: 1},
		"b": {Limit: 10, InUse: 6, Slots: 3}, "c": {Limit: 5, InUse: 5, Slots: 1},
	}
	for _, tc := range []struct {
		prefix, after string
		limit         int
		want          []string
	}{
		{"", "", 10, []string{"a", "a-1", "ab", "b", "c"}},
		{"", "", 2, []string{"a", "a-1"}},
		{"", "a-1", 10, []string{"ab", "b", "c"}},
		{"", "a-1", 1, []string{"ab"}},
		{"a", "", 10, []string{"a", "a-1", "ab"}},
		{"a", "a", 10, []string{"a-1", "ab"}},
		{"b", "a", 10, []string{"b"}},
		{"a", "b", 10, nil},
		{"e", "", 10, nil}, // "expired" has no live slot
		{"z", "", 10, nil},
	} {
		got, err := e.ListSemaphores(ctx, locklock.ListQuery{Namespace: "public", Kind: locklock.KindKey, Prefix: tc.prefix, After: tc.after, Limit: tc.limit}, now)
		if err != nil {
			t.Fatalf("ListSemaphores: %v", err)
		}
		var names []string
		for _, s := range got {
			names = append(names, s.Name)
			want := all[s.Name]
			want.ID = testID(s.Name)
			if s != want {
				t.Errorf("summary %+v, want %+v", s, want)
			}
		}
		if !slices.Equal(names, tc.want) {
			t.Errorf("ListSemaphores(prefix %q, after %q, limit %d) = %v, want %v", tc.prefix, tc.after, tc.limit, names, tc.want)
		}
	}
	// Listed as expired, b's short slot stays gone for earlier instants.
	if _, err := e.GetSlot(ctx, testID("b"), short.ID, t0); !errors.Is(err, locklock.ErrSlotNotFound) {
		t.Errorf("expired slot left out of the list, judged earlier: %v, want ErrSlotNotFound", err)
	}
	got, err := e.ListSemaphores(ctx, locklock.ListQuery{Namespace: "other", Kind: locklock.KindKey, Limit: 10}, now)
	if err != nil || len(got) != 1 || got[0].ID != (locklock.ID{Namespace: "other", Kind: locklock.KindKey, Name: "a"}) {
		t.Errorf("the other namespace: %+v, %v", got, err)
	}
	// Locks do not see semaphores.
	locks, err := e.List(ctx, locklock.ListQuery{Namespace: "public", Kind: locklock.KindKey, Limit: 10}, now)
	if err != nil || len(locks) != 2 || locks[0].Name != "a" || locks[1].Name != "lock-only" {
		t.Errorf("List of locks = %+v, %v; want a and lock-only", locks, err)
	}
	if n, err := e.CountHeld(ctx, now); err != nil || n != 2 {
		t.Errorf("CountHeld = %d, %v; want the 2 locks", n, err)
	}
	checkSlots(t, e)
	checkIndex(t, e)
}

// TestLockAndSemaphoreShareName: a lock and a semaphore of one ID are
// apart: each is taken, released and swept without the other noticing.
func TestLockAndSemaphoreShareName(t *testing.T) {
	ctx := t.Context()
	e := open(t, t.TempDir())
	id := testID("shared")
	l := mustAcquire(t, e, newLock("shared", t0, time.Second, ""), t0)
	s := mustSlot(t, e, newSlot("shared", 1, 1, t0, time.Hour, ""), t0)
	if s.Token <= l.Token {
		t.Errorf("slot token %d not above the lock's %d", s.Token, l.Token)
	}
	if n, err := e.Sweep(ctx, t0.Add(time.Minute)); err != nil || n != 1 {
		t.Errorf("Sweep = %d, %v; want the lock only", n, err)
	}
	if _, err := e.GetSlot(ctx, id, s.ID, t0.Add(time.Minute)); err != nil {
		t.Errorf("slot after the lock was swept: %v", err)
	}
	l = mustAcquire(t, e, newLock("shared", t0, time.Hour, ""), t0)
	if _, err := e.ReleaseSlot(ctx, id, s.ID, t0, allowAnySlot); err != nil {
		t.Fatal(err)
	}
	if got, err := e.Get(ctx, id, t0); err != nil || !same(got, l) {
		t.Errorf("lock after the slot's release: %+v, %v", got, err)
	}
	checkSlots(t, e)
	checkIndex(t, e)
}

func TestSlotClosedAndCanceled(t *testing.T) {
	e := open(t, t.TempDir())
	id := testID("c")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := e.TryAcquireSlot(ctx, newSlot("c", 1, 1, t0, time.Minute, ""), t0, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("acquire with a canceled context: %v", err)
	}
	if _, err := e.GetSemaphore(t.Context(), id, t0); !errors.Is(err, locklock.ErrSemaphoreNotFound) {
		t.Errorf("a canceled acquire was applied: %v", err)
	}
	s := mustSlot(t, e, newSlot("c", 1, 1, t0, time.Minute, ""), t0)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	bg := t.Context()
	for name, err := range map[string]error{
		"TryAcquireSlot": func() error {
			_, _, err := e.TryAcquireSlot(bg, newSlot("c", 1, 1, t0, time.Minute, ""), t0, nil)
			return err
		}(),
		"GetSemaphore":   second(e.GetSemaphore(bg, id, t0)),
		"GetSlot":        second(e.GetSlot(bg, id, s.ID, t0)),
		"ReleaseSlot":    second(e.ReleaseSlot(bg, id, s.ID, t0, allowAnySlot)),
		"RefreshSlot":    second(e.RefreshSlot(bg, id, s.ID, t0, expireAt(t0), allowAnySlot)),
		"ListSemaphores": second(e.ListSemaphores(bg, locklock.ListQuery{Namespace: "public", Kind: locklock.KindKey, Limit: 1}, t0)),
	} {
		if !errors.Is(err, locklock.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}
