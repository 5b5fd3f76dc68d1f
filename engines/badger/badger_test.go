package badger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	bdg "github.com/dgraph-io/badger/v4"
	"go.uber.org/goleak"

	"github.com/locklock/locklock/conformance"
	"github.com/locklock/locklock/locklock"
)

func TestMain(m *testing.M) {
	if mnt := os.Getenv(fullDiskEnv); mnt != "" {
		// The re-run of this binary by TestFullDisk.
		if err := fullDiskScenario(mnt); err != nil {
			fmt.Fprintln(os.Stderr, "full-disk scenario:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if dir := os.Getenv(slotKillEnv); dir != "" {
		// The re-run of this binary by TestSlotsSurviveKill, until killed.
		err := slotKillScenario(dir)
		fmt.Fprintln(os.Stderr, "slot kill scenario:", err)
		os.Exit(1)
	}
	goleak.VerifyTestMain(m)
}

// quiet keeps Badger's routine log lines out of test output; warnings and
// errors still show.
var quiet = WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))

func open(t *testing.T, dir string, opts ...Option) *Engine {
	t.Helper()
	e, err := Open(dir, append([]Option{quiet}, opts...)...)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return e
}

// harness is the conformance suites' view of the engine: a fresh directory
// per engine, reopened as a restart would.
func harness() conformance.Harness {
	return conformance.Harness{
		NewEngine: func(t *testing.T) locklock.Engine { return open(t, t.TempDir()) },
		Reopen: func(t *testing.T, e locklock.Engine) locklock.Engine {
			be := e.(*Engine)
			if err := be.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			return open(t, be.dir)
		},
	}
}

func TestConformance(t *testing.T) { conformance.Run(t, harness()) }

func TestSemaphoreConformance(t *testing.T) { conformance.RunSemaphores(t, harness()) }

func TestSemaphoreEventsConformance(t *testing.T) { conformance.RunSemaphoreEvents(t, harness()) }

var t0 = time.Date(2026, 11, 26, 15, 4, 5, 123_000_000, time.UTC)

func testID(name string) locklock.ID {
	return locklock.ID{Namespace: "public", Kind: locklock.KindKey, Name: name}
}

func newLock(name string, at time.Time, ttl time.Duration, secret string) locklock.Lock {
	return locklock.Lock{ID: testID(name), AcquiredAt: at, ExpiresAt: at.Add(ttl), Guard: locklock.NewGuard(secret)}
}

func allowAll(locklock.Lock) error { return nil }

// expireAt is the Change of a plain refresh.
func expireAt(t time.Time) locklock.Change { return locklock.Change{ExpiresAt: t} }

// same compares locks field by field, metadata included (a Lock holds a map,
// so == does not compile); nil and empty metadata differ, as the engine
// promises nil.
func same(a, b locklock.Lock) bool { return reflect.DeepEqual(a, b) }

func mustAcquire(t *testing.T, e *Engine, l locklock.Lock, now time.Time) locklock.Lock {
	t.Helper()
	got, err := e.TryAcquire(t.Context(), l, now)
	if err != nil {
		t.Fatalf("TryAcquire(%s): %v", l.ID, err)
	}
	return got
}

func TestAcquireGetRoundTrip(t *testing.T) {
	e := open(t, t.TempDir())
	for _, secret := range []string{"", "s3cret"} {
		l := newLock("rt-"+secret, t0, time.Minute, secret)
		got := mustAcquire(t, e, l, t0)
		if got.Token == 0 {
			t.Errorf("token 0 issued")
		}
		want := l
		want.Token = got.Token
		if !same(got, want) {
			t.Errorf("TryAcquire returned %+v, want %+v", got, want)
		}
		back, err := e.Get(t.Context(), l.ID, t0)
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if !same(back, got) {
			t.Errorf("Get = %+v, want %+v", back, got)
		}
	}
}

func TestLocksAndTokensSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	e, err := Open(dir, quiet)
	if err != nil {
		t.Fatal(err)
	}
	held := mustAcquire(t, e, newLock("held", t0, time.Hour, "x"), t0)
	gone := mustAcquire(t, e, newLock("gone", t0, time.Hour, ""), t0)
	if _, err := e.Release(t.Context(), gone.ID, t0, allowAll); err != nil {
		t.Fatalf("Release: %v", err)
	}
	// Burn through more than one lease so that the stored lease matters.
	var maxToken uint64
	for i := range tokenBandwidth + 10 {
		l := mustAcquire(t, e, newLock(fmt.Sprintf("burn-%d", i%3), t0, time.Millisecond, ""), t0.Add(time.Duration(i)*time.Second))
		maxToken = max(maxToken, l.Token)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	e = open(t, dir)
	got, err := e.Get(t.Context(), held.ID, t0)
	if err != nil {
		t.Fatalf("Get held lock after reopen: %v", err)
	}
	if !same(got, held) {
		t.Errorf("after reopen Get = %+v, want %+v", got, held)
	}
	if _, err := e.Get(t.Context(), gone.ID, t0); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("released lock after reopen: err = %v, want ErrNotFound", err)
	}
	again := mustAcquire(t, e, newLock("gone", t0, time.Hour, ""), t0)
	if again.Token <= maxToken {
		t.Errorf("token after reopen %d, want > %d", again.Token, maxToken)
	}
}

// TestTokensRiseAfterUnreleasedLease stops the engine without returning its
// token lease, as kill -9 would: the next start must continue above it.
func TestTokensRiseAfterUnreleasedLease(t *testing.T) {
	dir := t.TempDir()
	e, err := Open(dir, quiet)
	if err != nil {
		t.Fatal(err)
	}
	first := mustAcquire(t, e, newLock("a", t0, time.Hour, ""), t0)
	// Skip giving the unused tokens back: close only the database.
	crash(t, e)
	e = open(t, dir)
	second := mustAcquire(t, e, newLock("b", t0, time.Hour, ""), t0)
	if second.Token <= first.Token {
		t.Errorf("token after unclean stop %d, want > %d", second.Token, first.Token)
	}
}

func TestConcurrentAcquireOneWinner(t *testing.T) {
	e := open(t, t.TempDir())
	const workers, rounds = 64, 100
	id := testID("contended")
	var last uint64
	for round := range rounds {
		now := t0.Add(time.Duration(round) * time.Second)
		var (
			wg      sync.WaitGroup
			start   = make(chan struct{})
			results = make([]locklock.Lock, workers)
			errs    = make([]error, workers)
		)
		for w := range workers {
			wg.Go(func() {
				<-start
				results[w], errs[w] = e.TryAcquire(t.Context(), locklock.Lock{ID: id, AcquiredAt: now, ExpiresAt: now.Add(time.Hour)}, now)
			})
		}
		close(start)
		wg.Wait()
		var winners []locklock.Lock
		for w := range workers {
			var held *locklock.HeldError
			switch {
			case errs[w] == nil:
				winners = append(winners, results[w])
			case errors.As(errs[w], &held):
			default:
				t.Fatalf("round %d: unexpected error %v", round, errs[w])
			}
		}
		if len(winners) != 1 {
			t.Fatalf("round %d: %d winners, want 1", round, len(winners))
		}
		win := winners[0]
		for w := range workers {
			var held *locklock.HeldError
			if errors.As(errs[w], &held) && !same(held.Lock, win) {
				t.Fatalf("round %d: loser saw holder %+v, winner is %+v", round, held.Lock, win)
			}
		}
		if win.Token <= last {
			t.Fatalf("round %d: token %d not above previous %d", round, win.Token, last)
		}
		last = win.Token
		if _, err := e.Release(t.Context(), id, now, allowAll); err != nil {
			t.Fatalf("round %d: Release: %v", round, err)
		}
	}
}

func TestList(t *testing.T) {
	ctx := t.Context()
	e := open(t, t.TempDir())
	for _, name := range []string{"b", "a", "ab", "a-1", "c", "expired"} {
		ttl := time.Hour
		if name == "expired" {
			ttl = time.Second
		}
		mustAcquire(t, e, newLock(name, t0, ttl, ""), t0)
	}
	// Same names elsewhere must not show.
	mustAcquire(t, e, locklock.Lock{ID: locklock.ID{Namespace: "other", Kind: locklock.KindKey, Name: "a"}, ExpiresAt: t0.Add(time.Hour)}, t0)
	mustAcquire(t, e, locklock.Lock{ID: locklock.ID{Namespace: "public", Kind: locklock.KindUUID, Name: "a"}, ExpiresAt: t0.Add(time.Hour)}, t0)

	now := t0.Add(time.Minute)
	for _, tc := range []struct {
		prefix, after string
		limit         int
		want          []string
	}{
		{"", "", 10, []string{"a", "a-1", "ab", "b", "c"}},
		{"", "", 2, []string{"a", "a-1"}},
		{"", "a-1", 10, []string{"ab", "b", "c"}},
		{"a", "", 10, []string{"a", "a-1", "ab"}},
		{"a", "a", 10, []string{"a-1", "ab"}},
		{"b", "a", 10, []string{"b"}},
		{"a", "b", 10, nil},
		{"z", "", 10, nil},
	} {
		got, err := e.List(ctx, locklock.ListQuery{Namespace: "public", Kind: locklock.KindKey, Prefix: tc.prefix, After: tc.after, Limit: tc.limit}, now)
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		var names []string
		for _, l := range got {
			names = append(names, l.Name)
		}
		if !slices.Equal(names, tc.want) {
			t.Errorf("List(prefix %q, after %q, limit %d) = %v, want %v", tc.prefix, tc.after, tc.limit, names, tc.want)
		}
	}
}

func TestReleaseRefreshAllow(t *testing.T) {
	ctx := t.Context()
	e := open(t, t.TempDir())
	l := mustAcquire(t, e, newLock("guarded", t0, time.Minute, "pw"), t0)
	deny := errors.New("denied")
	if _, err := e.Release(ctx, l.ID, t0, func(locklock.Lock) error { return deny }); err != deny {
		t.Errorf("Release with denying allow: %v, want the allow error unchanged", err)
	}
	if _, err := e.Refresh(ctx, l.ID, t0, expireAt(t0.Add(time.Hour)), func(locklock.Lock) error { return deny }); err != deny {
		t.Errorf("Refresh with denying allow: %v, want the allow error unchanged", err)
	}
	r, err := e.Refresh(ctx, l.ID, t0, expireAt(t0.Add(time.Hour)), allowAll)
	if err != nil {
		t.Fatal(err)
	}
	want := l
	want.ExpiresAt = t0.Add(time.Hour)
	if !same(r, want) {
		t.Errorf("Refresh = %+v, want %+v", r, want)
	}
	got, err := e.Release(ctx, l.ID, t0, allowAll)
	if err != nil || !same(got, r) {
		t.Errorf("Release = %+v, %v; want %+v", got, err, r)
	}
	if _, err := e.Refresh(ctx, l.ID, t0, expireAt(t0.Add(time.Hour)), allowAll); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("Refresh after release: %v, want ErrNotFound", err)
	}

	// Judged expired once, a lock stays gone for calls with earlier instants.
	l = mustAcquire(t, e, newLock("guarded", t0, time.Minute, "pw"), t0)
	if _, err := e.Release(ctx, l.ID, l.ExpiresAt, allowAll); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("Release at expiry: %v, want ErrNotFound", err)
	}
	if _, err := e.Release(ctx, l.ID, t0, allowAll); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("Release at an earlier instant after expiry was judged: %v, want ErrNotFound", err)
	}
}

func TestClosedAndCanceled(t *testing.T) {
	e := open(t, t.TempDir())
	l := newLock("c", t0, time.Minute, "")

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := e.TryAcquire(ctx, l, t0); !errors.Is(err, context.Canceled) {
		t.Errorf("TryAcquire with canceled ctx: %v", err)
	}
	if _, err := e.Get(t.Context(), l.ID, t0); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("canceled acquire was applied: Get err = %v", err)
	}
	if err := e.Ping(t.Context()); err != nil {
		t.Errorf("Ping: %v", err)
	}

	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	ops := map[string]func() error{
		"TryAcquire": func() error { _, err := e.TryAcquire(t.Context(), l, t0); return err },
		"Get":        func() error { _, err := e.Get(t.Context(), l.ID, t0); return err },
		"Release":    func() error { _, err := e.Release(t.Context(), l.ID, t0, allowAll); return err },
		"Refresh":    func() error { _, err := e.Refresh(t.Context(), l.ID, t0, expireAt(t0), allowAll); return err },
		"List": func() error {
			_, err := e.List(t.Context(), locklock.ListQuery{Namespace: "public", Kind: locklock.KindKey, Limit: 1}, t0)
			return err
		},
		"Sweep": func() error { _, err := e.Sweep(t.Context(), t0); return err },
		"Ping":  func() error { return e.Ping(t.Context()) },
	}
	for name, op := range ops {
		if err := op(); !errors.Is(err, locklock.ErrClosed) || !errors.Is(err, locklock.ErrUnavailable) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}

func TestOpenTwice(t *testing.T) {
	dir := t.TempDir()
	first, err := Open(dir, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if second, err := Open(dir, quiet); err == nil {
		second.Close()
		t.Fatal("second Open of an open directory succeeded")
	} else {
		t.Logf("second Open: %v", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	// Closing frees the directory.
	open(t, dir)
}

func TestNULRejected(t *testing.T) {
	e := open(t, t.TempDir())
	l := newLock("a\x00b", t0, time.Minute, "")
	if _, err := e.TryAcquire(t.Context(), l, t0); !errors.Is(err, locklock.ErrInvalidArgument) {
		t.Errorf("TryAcquire with NUL in name: %v, want ErrInvalidArgument", err)
	}
}

// TestTokenLeaseFailureIssuesNothing: when reserving a block of tokens fails
// (a full disk, say), no token from that block is issued, and after the
// failure clears and the process restarts every token is still new.
func TestTokenLeaseFailureIssuesNothing(t *testing.T) {
	dir := t.TempDir()
	e, err := Open(dir, quiet)
	if err != nil {
		t.Fatal(err)
	}
	e.tokens.bandwidth = 2
	failing := errors.New("disk full")
	fail := false
	e.tokens.persist = func(db *bdg.DB, bound uint64) error {
		if fail {
			return failing
		}
		return storeBound(db, bound)
	}
	issued := map[uint64]bool{}
	var highest uint64
	for i := range 7 {
		// Tokens 1 and 2 fill the first block; takes 2 and 3 need a new
		// block while reserving fails.
		fail = i == 2 || i == 3
		tok, err := e.tokens.take()
		if fail {
			if !errors.Is(err, failing) {
				t.Fatalf("take %d while reserving fails: token %d, err %v; want the failure", i, tok, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("take %d: %v", i, err)
		}
		if issued[tok] || tok <= highest {
			t.Fatalf("take %d: token %d repeats or falls (highest %d)", i, tok, highest)
		}
		issued[tok], highest = true, tok
	}
	// Die without giving tokens back, then start again.
	crash(t, e)
	e = open(t, dir)
	for range 5 {
		tok, err := e.tokens.take()
		if err != nil {
			t.Fatal(err)
		}
		if tok <= highest {
			t.Fatalf("after restart token %d, want above every earlier one (%d)", tok, highest)
		}
		highest = tok
	}
}

// crash stops e as kill -9 would, as far as the directory can tell: the
// committer and the database stop, and the unused token lease is not given
// back.
func crash(t *testing.T, e *Engine) {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	e.commit.close()
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}
}
