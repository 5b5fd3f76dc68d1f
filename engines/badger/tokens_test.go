package badger

import (
	"testing"
	"time"

	"github.com/locklock/locklock/engines/memory"
)

// TestTokensRiseAfterMemoryEngine is the move the README promises to keep
// tokens rising through: a Badger directory is used, then a memory engine
// (started later) grants locks, then the Badger directory is opened again.
// Its next token must be above the memory engine's, although its stored
// counter only rose by one per grant since the directory was made.
func TestTokensRiseAfterMemoryEngine(t *testing.T) {
	dir := t.TempDir()
	e := open(t, dir)
	before := mustAcquire(t, e, newLock("before", t0, time.Hour, ""), t0)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	// Tokens are milliseconds × 1024: let the clock move on by more than
	// one millisecond at each step, so that neither start shares the
	// other's millisecond.
	time.Sleep(5 * time.Millisecond)
	mem := memory.New()
	t.Cleanup(func() { _ = mem.Close() })
	fromMemory, err := mem.TryAcquire(t.Context(), newLock("memory", t0, time.Hour, ""), t0)
	if err != nil {
		t.Fatal(err)
	}
	if fromMemory.Token <= before.Token {
		t.Fatalf("setup: the memory engine's token %d is not above the directory's %d", fromMemory.Token, before.Token)
	}
	time.Sleep(5 * time.Millisecond)

	e = open(t, dir)
	after := mustAcquire(t, e, newLock("after", t0, time.Hour, ""), t0)
	if after.Token <= fromMemory.Token {
		t.Errorf("Badger token after the memory engine: %d, want above the memory engine's %d (directory's last: %d)",
			after.Token, fromMemory.Token, before.Token)
	}
}

// TestTokensKeepStoredBoundAboveClock: when the directory's reserved bound
// is ahead of the wall clock (the clock went back, or tokens were issued
// faster than 1024 per millisecond), an open continues above the bound, not
// from the clock.
func TestTokensKeepStoredBoundAboveClock(t *testing.T) {
	dir := t.TempDir()
	e := open(t, dir)
	ahead := wallBase(time.Now().Add(time.Hour))
	if err := storeBound(e.db, ahead); err != nil {
		t.Fatal(err)
	}
	// Stop without giving tokens back, so that the bound stays as written.
	crash(t, e)
	e = open(t, dir)
	got := mustAcquire(t, e, newLock("a", t0, time.Hour, ""), t0)
	if got.Token < ahead {
		t.Errorf("token %d after reopening with the stored bound %d an hour ahead of the clock: went back", got.Token, ahead)
	}
}

// TestTokenStartReservedBeforeIssue: raising the start to the wall clock
// must not issue a token that is not covered by a reserved block on disk.
// After a crash right after the first grant, the next start is still above.
func TestTokenStartReservedBeforeIssue(t *testing.T) {
	dir := t.TempDir()
	e := open(t, dir)
	first := mustAcquire(t, e, newLock("first", t0, time.Hour, ""), t0)
	var stored uint64
	readBound(t, e, &stored)
	if stored <= first.Token {
		t.Fatalf("stored bound %d does not cover the issued token %d", stored, first.Token)
	}
	// kill -9: no give-back.
	crash(t, e)
	e = open(t, dir)
	second := mustAcquire(t, e, newLock("second", t0, time.Hour, ""), t0)
	if second.Token <= first.Token {
		t.Errorf("token after a crash %d, want above %d", second.Token, first.Token)
	}
}

func readBound(t *testing.T, e *Engine, out *uint64) {
	t.Helper()
	lease, err := loadTokenLease(e.db, tokenBandwidth, 0)
	if err != nil {
		t.Fatal(err)
	}
	*out = lease.next
}
