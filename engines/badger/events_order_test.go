package badger

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
)

// Events under the pipelined committer (commit.go): a batch runs while the
// one before it commits, on a snapshot without it, and runs again if that
// made it conflict.

// TestExpiredOnceGetAndSweep: a Get and a Sweep that both find a lock
// expired report it once — whether their steps share a batch, or the Get's
// runs, on a snapshot without the Sweep, while the Sweep's batch commits
// (it conflicts and runs again).
func TestExpiredOnceGetAndSweep(t *testing.T) {
	at := t0.Add(2 * time.Second)
	setup := func(t *testing.T, opts ...Option) (*gatedEngine, *sinkLog, locklock.Lock) {
		g := openGated(t, opts...)
		log := watchEngine(t, g.Engine)
		var x result
		g.batch(t, g.acquireOp(&x, newLock("x", t0, time.Second, ""), t0))
		if x.err != nil {
			t.Fatal(x.err)
		}
		log.take()
		return g, log, x.lock
	}
	// wantSwept: the Sweep counts x if it settled it first.
	check := func(t *testing.T, log *sinkLog, x locklock.Lock, got result, swept, wantSwept int, sweepErr error) {
		t.Helper()
		if !errors.Is(got.err, locklock.ErrNotFound) || sweepErr != nil || swept != wantSwept {
			t.Errorf("Get = %+v, %v (want ErrNotFound); Sweep = %d, %v (want %d)", got.lock, got.err, swept, sweepErr, wantSwept)
		}
		wantEvents(t, "Get and Sweep of one expired lock", log.take(), expired(x))
	}

	t.Run("one batch", func(t *testing.T) {
		g, log, x := setup(t)
		var got result
		var swept int
		var sweepErr error
		d := g.batch(t,
			func() { got.lock, got.err = g.Get(t.Context(), x.ID, at) },
			func() { swept, sweepErr = g.Sweep(t.Context(), at) },
		)
		wantBatches(t, d, 1, 2, 0)
		check(t, log, x, got, swept, 0, sweepErr)
	})

	t.Run("pipelined", func(t *testing.T) {
		cc := newCommitControl()
		g, log, x := setup(t, withCommitWith(cc.commitWith))
		before := g.CommitStats()
		var wg sync.WaitGroup
		var swept int
		var sweepErr error
		cc.mode.Store(commitHeld)
		wg.Go(func() { swept, sweepErr = g.Sweep(t.Context(), at) })
		waitQueued(t, g.commit, 1)
		g.gate <- struct{}{} // the Sweep's batch runs, and its commit is held
		<-cc.entered
		var got result
		wg.Go(func() { got.lock, got.err = g.Get(t.Context(), x.ID, at) })
		waitQueued(t, g.commit, 1) // Get read x expired, unsettled
		close(cc.release)
		// The Get's step runs in the transaction opened before the Sweep's
		// commit, settles x again, and conflicts.
		g.gate <- struct{}{}
		wg.Wait()
		d := g.CommitStats().Sub(before)
		if d.Reruns != 1 {
			t.Errorf("%d reruns, want 1: the Get's batch did not meet the Sweep's in flight", d.Reruns)
		}
		check(t, log, x, got, swept, 1, sweepErr)
	})
}

// TestEventsOrderUnderLoad: many goroutines on a few locks, with a sweeper
// and readers settling expired locks, through the pipelined committer: the
// events of each lock come in the order of its changes — a grant
// (acquired, with a token above every earlier one), its refreshes, then
// its end (released or expired) before the next grant — and every
// successful change is reported exactly once.
func TestEventsOrderUnderLoad(t *testing.T) {
	ctx := t.Context()
	e := open(t, t.TempDir())
	log := watchEngine(t, e)
	// A virtual clock: each reading one millisecond later. Goroutines'
	// steps reach the engine out of clock order, as the Service's do.
	var ms atomic.Int64
	now := func() time.Time { return t0.Add(time.Duration(ms.Add(1)) * time.Millisecond) }
	names := []string{"a", "b", "c"}
	var grants, releases, refreshes atomic.Int64
	tokens := sync.Map{} // token granted: true
	unexpected := func(err error) bool {
		return err != nil && !errors.Is(err, locklock.ErrHeld) && !errors.Is(err, locklock.ErrNotFound) &&
			!errors.Is(err, locklock.ErrDelayed) && !errors.Is(err, errNotMine)
	}
	var workers, background sync.WaitGroup
	for w := range 16 {
		workers.Go(func() {
			for i := range 100 {
				at := now()
				l := newLock(names[(w+i)%len(names)], at, 30*time.Millisecond, "")
				if l.Name == "c" {
					l.LockDelay = 10 * time.Millisecond // ended records too
				}
				got, err := e.TryAcquire(ctx, l, at)
				if unexpected(err) {
					t.Errorf("acquire: %v", err)
					return
				}
				if err != nil {
					continue
				}
				grants.Add(1)
				tokens.Store(got.Token, true)
				mine := func(cur locklock.Lock) error {
					if cur.Token != got.Token {
						return errNotMine
					}
					return nil
				}
				switch i % 3 {
				case 0:
					_, err = e.Release(ctx, got.ID, now(), mine)
					if err == nil {
						releases.Add(1)
					}
				case 1:
					at := now()
					_, err = e.Refresh(ctx, got.ID, at, expireAt(at.Add(20*time.Millisecond)), mine)
					if err == nil {
						refreshes.Add(1)
					}
				} // else: left to expire
				if unexpected(err) {
					t.Errorf("release or refresh: %v", err)
					return
				}
			}
		})
	}
	stop := make(chan struct{})
	background.Go(func() { // the sweeper
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := e.Sweep(ctx, now()); err != nil {
				t.Errorf("sweep: %v", err)
				return
			}
			time.Sleep(time.Millisecond)
		}
	})
	background.Go(func() { // readers, which settle what they find expired
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := e.Get(ctx, testID(names[i%len(names)]), now()); unexpected(err) {
				t.Errorf("get: %v", err)
				return
			}
			time.Sleep(300 * time.Microsecond)
		}
	})
	workers.Wait()
	close(stop)
	background.Wait()
	// The end of every grant still held, or ended and delaying.
	if _, err := e.Sweep(ctx, now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}

	evs := log.take()
	held := map[string]uint64{} // the grant in force, 0: none
	last := map[string]uint64{}
	count := map[locklock.EventType]int64{}
	seen := map[uint64]bool{}
	for i, ev := range evs {
		name, tok := ev.Lock.Name, ev.Lock.Token
		fail := func(why string) {
			t.Fatalf("event %d, %s %s#%d: %s (held #%d, last #%d)\n%s", i, ev.Type, name, tok, why, held[name], last[name], describeEvents(evs[max(0, i-10):i+1]))
		}
		count[ev.Type]++
		switch ev.Type {
		case locklock.EventAcquired:
			if held[name] != 0 {
				fail("acquired while another grant is in force")
			}
			if tok <= last[name] {
				fail("token not above the lock's earlier ones")
			}
			if _, ok := tokens.Load(tok); !ok || seen[tok] {
				fail("a grant no caller got, or reported twice")
			}
			seen[tok] = true
			held[name], last[name] = tok, tok
		case locklock.EventRefreshed:
			if held[name] != tok {
				fail("refreshed, not the grant in force")
			}
		case locklock.EventReleased, locklock.EventExpired:
			if held[name] != tok {
				fail("ended, not the grant in force")
			}
			if ev.Type == locklock.EventExpired && (ev.Lock.Ended || !ev.At.Equal(ev.Lock.ExpiresAt)) {
				fail("expired carries an ended lock, or not its expiry")
			}
			held[name] = 0
		default:
			fail("unexpected type")
		}
	}
	for name, tok := range held {
		if tok != 0 {
			t.Errorf("%s#%d: its end never reported", name, tok)
		}
	}
	if count[locklock.EventAcquired] != grants.Load() || count[locklock.EventReleased] != releases.Load() ||
		count[locklock.EventRefreshed] != refreshes.Load() {
		t.Errorf("events %v for %d grants, %d releases, %d refreshes", count, grants.Load(), releases.Load(), refreshes.Load())
	}
	st := e.CommitStats()
	t.Logf("events %v; %d batches of %.1f steps, %d reruns", count, st.Batches, st.StepsPerBatch(), st.Reruns)
}

var errNotMine = errors.New("not this caller's grant")
