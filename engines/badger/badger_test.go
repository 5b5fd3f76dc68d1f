package badger

import (
	"bytes"
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

func TestConformance(t *testing.T) {
	conformance.Run(t, conformance.Harness{
		NewEngine: func(t *testing.T) locklock.Engine { return open(t, t.TempDir()) },
		Reopen: func(t *testing.T, e locklock.Engine) locklock.Engine {
			be := e.(*Engine)
			if err := be.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			return open(t, be.dir)
		},
	})
}

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

func TestSweep(t *testing.T) {
	ctx := t.Context()
	e := open(t, t.TempDir())
	for i, ttl := range []time.Duration{1, 2, 3, 4, 5} {
		mustAcquire(t, e, newLock(fmt.Sprintf("l%d", i+1), t0, ttl*time.Second, ""), t0)
	}
	// l1 expired and was taken again: its first index entry must be gone.
	again := mustAcquire(t, e, newLock("l1", t0.Add(time.Second), 10*time.Second, ""), t0.Add(time.Second))
	// l2 is refreshed before it expires; its old expiry must not sweep it.
	if _, err := e.Refresh(ctx, testID("l2"), t0.Add(time.Second), expireAt(t0.Add(20*time.Second)), allowAll); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	checkIndex(t, e)

	sweep := func(at time.Duration, want int, stored ...string) {
		t.Helper()
		now := t0.Add(at)
		n, err := e.Sweep(ctx, now)
		if err != nil {
			t.Fatalf("Sweep(+%v): %v", at, err)
		}
		if n != want {
			t.Errorf("Sweep(+%v) = %d, want %d", at, n, want)
		}
		// Judged at t0, when every lock was live, Get shows what is stored.
		var left []string
		for _, name := range []string{"l1", "l2", "l3", "l4", "l5"} {
			if _, err := e.Get(ctx, testID(name), t0.Add(time.Second)); err == nil {
				left = append(left, name)
			}
		}
		if !slices.Equal(left, stored) {
			t.Errorf("after Sweep(+%v) stored locks %v, want %v", at, left, stored)
		}
		checkIndex(t, e)
	}
	sweep(0, 0, "l1", "l2", "l3", "l4", "l5")
	sweep(3*time.Second, 1, "l1", "l2", "l4", "l5") // l3; l2's old expiry passed
	sweep(3*time.Second, 0, "l1", "l2", "l4", "l5")
	sweep(5*time.Second, 2, "l1", "l2") // l4, l5
	if got, err := e.Get(ctx, again.ID, t0.Add(5*time.Second)); err != nil || !same(got, again) {
		t.Errorf("re-acquired l1 = %+v, %v; want %+v", got, err, again)
	}
	sweep(11*time.Second, 1, "l2") // l1 expires at exactly +11s
	sweep(time.Hour, 1)

	// Nothing left in the index either.
	n, err := e.Sweep(ctx, t0.Add(1000*time.Hour))
	if n != 0 || err != nil {
		t.Errorf("final Sweep = %d, %v; want 0, nil", n, err)
	}
}

// checkIndex verifies the index invariant: one entry per stored record, in
// the expiry index at its expiry while it is held, in the delay index at the
// end of its lock-delay once it has ended, and nothing else.
func checkIndex(t *testing.T, e *Engine) {
	t.Helper()
	want := map[string]bool{}
	var got []string
	err := e.view(func(txn *bdg.Txn) error {
		it := txn.NewIterator(bdg.IteratorOptions{Prefix: lockPrefix, PrefetchValues: true})
		for it.Rewind(); it.Valid(); it.Next() {
			id, err := parseLockKey(it.Item().Key())
			if err != nil {
				return err
			}
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			l, err := decodeRecord(id, v)
			if err != nil {
				return err
			}
			want[string(indexKey(l))] = true
		}
		it.Close()
		for _, prefix := range [][]byte{expiryPrefix, delayPrefix} {
			it = txn.NewIterator(bdg.IteratorOptions{Prefix: prefix})
			for it.Rewind(); it.Valid(); it.Next() {
				got = append(got, string(it.Item().KeyCopy(nil)))
			}
			it.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("reading the index: %v", err)
	}
	for _, k := range got {
		if !want[k] {
			t.Errorf("stray expiry index entry %q", k)
		}
		delete(want, k)
	}
	for k := range want {
		t.Errorf("missing expiry index entry %q", k)
	}
}

// TestSweepStaleIndexEntry plants an index entry that disagrees with the
// record, as a bug or a future format change might leave: Sweep must judge by
// the record and only drop the stray entry.
func TestSweepStaleIndexEntry(t *testing.T) {
	e := open(t, t.TempDir())
	l := mustAcquire(t, e, newLock("s", t0, time.Hour, ""), t0)
	err := e.update(t.Context(), func(txn *bdg.Txn) error {
		return txn.Set(expiryKey(t0.Add(time.Second), l.ID), []byte{})
	})
	if err != nil {
		t.Fatal(err)
	}
	n, err := e.Sweep(t.Context(), t0.Add(time.Minute))
	if err != nil || n != 0 {
		t.Fatalf("Sweep = %d, %v; want 0, nil", n, err)
	}
	if got, err := e.Get(t.Context(), l.ID, t0.Add(time.Minute)); err != nil || !same(got, l) {
		t.Fatalf("Get after Sweep = %+v, %v; want %+v", got, err, l)
	}
	checkIndex(t, e)
}

// TestConcurrentMixed runs every writing operation and Sweep at once over a
// few locks, with and without lock-delays, so that conflicts and retries
// happen, then checks the index.
func TestConcurrentMixed(t *testing.T) {
	ctx := t.Context()
	e := open(t, t.TempDir(), WithSyncWrites(false))
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 200 {
				now := t0.Add(time.Duration(i) * 100 * time.Millisecond)
				id := testID(fmt.Sprintf("m%d", (w+i)%4))
				var err error
				switch i % 4 {
				case 0:
					// Half the workers' locks have a lock-delay, so that
					// ended records meet every other step too.
					_, err = e.TryAcquire(ctx, locklock.Lock{ID: id, AcquiredAt: now, ExpiresAt: now.Add(time.Duration(w+1) * 100 * time.Millisecond),
						LockDelay: time.Duration(w%2) * time.Second}, now)
				case 1:
					_, err = e.Refresh(ctx, id, now, expireAt(now.Add(time.Second)), allowAll)
				case 2:
					_, err = e.Release(ctx, id, now, allowAll)
				case 3:
					_, err = e.Sweep(ctx, now)
				}
				if err != nil && !errors.Is(err, locklock.ErrHeld) && !errors.Is(err, locklock.ErrNotFound) && !errors.Is(err, locklock.ErrDelayed) {
					t.Errorf("op %d: %v", i%4, err)
					return
				}
			}
		})
	}
	wg.Wait()
	checkIndex(t, e)
}

func TestSweepManyBatches(t *testing.T) {
	ctx := t.Context()
	e := open(t, t.TempDir(), WithSyncWrites(false)) // speed; durability is tested elsewhere
	const expired, live = 3*sweepBatch + 7, 5
	for i := range expired + live {
		ttl := time.Second
		if i >= expired {
			ttl = time.Hour
		}
		mustAcquire(t, e, newLock(fmt.Sprintf("n%04d", i), t0, ttl, ""), t0)
	}
	n, err := e.Sweep(ctx, t0.Add(time.Minute))
	if err != nil || n != expired {
		t.Fatalf("Sweep = %d, %v; want %d, nil", n, err, expired)
	}
	got, err := e.List(ctx, locklock.ListQuery{Namespace: "public", Kind: locklock.KindKey, Limit: 100}, t0)
	if err != nil || len(got) != live {
		t.Fatalf("List after sweep: %d locks, %v; want %d", len(got), err, live)
	}
	checkIndex(t, e)
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

func TestKeyEncoding(t *testing.T) {
	ids := []locklock.ID{
		testID("a"),
		{Namespace: "acme", Kind: locklock.KindUUID, Name: "180da65c-cf80-4997-8574-0c0801817d6f"},
		{Namespace: "x", Kind: locklock.KindKey, Name: "A.b_c-d:e~f"},
	}
	times := []time.Time{
		t0,
		time.UnixMilli(0).UTC(),
		time.UnixMilli(-1).UTC(),
		time.Date(1900, 1, 1, 0, 0, 0, 1_000_000, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999_000_000, time.UTC),
	}
	for _, id := range ids {
		k := lockKey(id)
		if got, err := parseLockKey(k); err != nil || got != id {
			t.Errorf("parseLockKey(lockKey(%v)) = %v, %v", id, got, err)
		}
		if !bytes.HasPrefix(k, listPrefix(id.Namespace, id.Kind)) {
			t.Errorf("lockKey(%v) = %q lacks its list prefix", id, k)
		}
		for _, at := range times {
			ek := expiryKey(at, id)
			gotAt, gotID, err := parseExpiryKey(ek)
			if err != nil || gotID != id || gotAt != at {
				t.Errorf("parseExpiryKey(expiryKey(%v, %v)) = %v, %v, %v", at, id, gotAt, gotID, err)
			}
			dk := delayKey(at, id)
			gotAt, gotID, err = parseTimeKey(delayPrefix, dk)
			if err != nil || gotID != id || gotAt != at {
				t.Errorf("parseTimeKey(delayKey(%v, %v)) = %v, %v, %v", at, id, gotAt, gotID, err)
			}
			if _, _, err := parseExpiryKey(dk); !errors.Is(err, errCorrupt) {
				t.Errorf("a delay key read as an expiry key: %v", err)
			}
			for _, guard := range []locklock.Guard{"", locklock.NewGuard("pw")} {
				l := locklock.Lock{ID: id, AcquiredAt: at, ExpiresAt: at.Add(time.Hour), Token: 1<<64 - 1, Guard: guard}
				if got, err := decodeRecord(id, encodeRecord(l)); err != nil || !same(got, l) {
					t.Errorf("decodeRecord(encodeRecord(%+v)) = %+v, %v", l, got, err)
				}
			}
		}
	}
	// The index sorts by time, including before 1970.
	sorted := slices.SortedFunc(slices.Values(times), time.Time.Compare)
	for i := 1; i < len(sorted); i++ {
		a, b := expiryKey(sorted[i-1], ids[2]), expiryKey(sorted[i], ids[0])
		if bytes.Compare(a, b) >= 0 {
			t.Errorf("expiry key of %v does not sort before that of %v", sorted[i-1], sorted[i])
		}
	}
	// Lock keys sort by name within a namespace and kind.
	if bytes.Compare(lockKey(testID("a")), lockKey(testID("a-1"))) >= 0 ||
		bytes.Compare(lockKey(testID("a-1")), lockKey(testID("ab"))) >= 0 {
		t.Error("lock keys do not sort by name")
	}
	// Corrupt input is reported, not misread.
	for _, bad := range [][]byte{nil, {recordV1}, append([]byte{3}, make([]byte, recordHeader)...)} {
		if _, err := decodeRecord(ids[0], bad); !errors.Is(err, errCorrupt) {
			t.Errorf("decodeRecord(%x): %v, want errCorrupt", bad, err)
		}
	}
	for _, bad := range []string{"x\x00short", "l\x00no-separators", "x\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00ns-only"} {
		if _, _, err := parseExpiryKey([]byte(bad)); bad[0] == 'x' && !errors.Is(err, errCorrupt) {
			t.Errorf("parseExpiryKey(%q): %v, want errCorrupt", bad, err)
		}
		if _, err := parseLockKey([]byte(bad)); !errors.Is(err, errCorrupt) {
			t.Errorf("parseLockKey(%q): %v, want errCorrupt", bad, err)
		}
	}
	// normalize makes a lock exactly storable.
	l := locklock.Lock{ID: ids[0], AcquiredAt: t0.Add(123456).In(time.FixedZone("X", 3600)), ExpiresAt: time.Now(), ObservedAt: t0}
	n := normalize(l)
	if got, err := decodeRecord(n.ID, encodeRecord(n)); err != nil || !same(got, n) {
		t.Errorf("normalized lock does not round-trip: %+v vs %+v (%v)", got, n, err)
	}
	if n.AcquiredAt != t0 || !n.ObservedAt.IsZero() {
		t.Errorf("normalize = %+v", n)
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
