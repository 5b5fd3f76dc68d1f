package badger

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
)

// The engine's events (events.go). The conformance suite checks them
// through the Service; these tests check when the engine reports them:
// only after the commit, once, in order.

// sinkLog collects the events an engine reports, as the Service's hub would.
type sinkLog struct {
	mu  sync.Mutex
	evs []*locklock.Event
}

// watchEngine gives e a sink that collects its events.
func watchEngine(t *testing.T, e *Engine) *sinkLog {
	t.Helper()
	s := &sinkLog{}
	if pos := e.SetEventSink(s.sink); !pos.IsZero() {
		t.Fatalf("SetEventSink = %v, want the zero position: the Service numbers Badger's events", pos)
	}
	return s
}

func (s *sinkLog) sink(evs ...*locklock.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.evs = append(s.evs, evs...)
}

// take returns the events reported since the last take.
func (s *sinkLog) take() []*locklock.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	evs := s.evs
	s.evs = nil
	return evs
}

// event is an expected event.
type event struct {
	typ  locklock.EventType
	at   time.Time
	lock locklock.Lock
}

func describeEvents(evs []*locklock.Event) string {
	var b strings.Builder
	for _, ev := range evs {
		fmt.Fprintf(&b, "[%s %s#%d at %s] ", ev.Type, ev.Lock.Name, ev.Lock.Token, ev.At.Format(time.TimeOnly))
	}
	return b.String()
}

// wantEvents checks got against want: types, instants and locks.
func wantEvents(t *testing.T, what string, got []*locklock.Event, want ...event) {
	t.Helper()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		ok = got[i].Type == want[i].typ && got[i].At.Equal(want[i].at) && same(got[i].Lock, want[i].lock)
	}
	if !ok {
		var w []*locklock.Event
		for _, ev := range want {
			w = append(w, &locklock.Event{Type: ev.typ, At: ev.at, Lock: ev.lock})
		}
		t.Errorf("%s: events %s\nwant %s", what, describeEvents(got), describeEvents(w))
		for _, ev := range got {
			t.Logf("got %s %+v", ev.Type, ev.Lock)
		}
	}
}

func acquired(at time.Time, l locklock.Lock) event  { return event{locklock.EventAcquired, at, l} }
func refreshed(at time.Time, l locklock.Lock) event { return event{locklock.EventRefreshed, at, l} }
func released(at time.Time, l locklock.Lock) event  { return event{locklock.EventReleased, at, l} }
func expired(l locklock.Lock) event                 { return event{locklock.EventExpired, l.ExpiresAt, l} }

// TestEventsOfEachStep: what each kind of step reports, and that an
// expiry is reported once, by whichever step first settles the lock, and
// not again when an ended record is deleted after its lock-delay.
func TestEventsOfEachStep(t *testing.T) {
	ctx := t.Context()
	e := open(t, t.TempDir())
	log := watchEngine(t, e)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	step := func(what string, err error, want ...event) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		wantEvents(t, what, log.take(), want...)
	}

	a := mustAcquire(t, e, newLock("a", t0, time.Minute, "pw"), t0)
	step("acquire", nil, acquired(t0, a))
	h := "h"
	r, err := e.Refresh(ctx, a.ID, at(time.Second), locklock.Change{ExpiresAt: at(2 * time.Minute), Holder: &h}, allowAll)
	step("refresh", err, refreshed(at(time.Second), r))
	_, err = e.Release(ctx, a.ID, at(2*time.Second), allowAll)
	step("release", err, released(at(2*time.Second), r))

	// Steps that change nothing report nothing.
	b := mustAcquire(t, e, newLock("b", t0, time.Hour, ""), t0)
	log.take()
	refuse := errors.New("refused")
	_, err1 := e.TryAcquire(ctx, newLock("b", t0, time.Hour, ""), t0)
	_, err2 := e.Release(ctx, b.ID, t0, func(locklock.Lock) error { return refuse })
	_, err3 := e.Refresh(ctx, testID("absent"), t0, expireAt(at(time.Hour)), allowAll)
	_, err4 := e.Get(ctx, b.ID, t0)
	if !errors.Is(err1, locklock.ErrHeld) || err2 != refuse || !errors.Is(err3, locklock.ErrNotFound) || err4 != nil {
		t.Fatalf("refused steps: %v, %v, %v; get %v", err1, err2, err3, err4)
	}
	step("refused steps and a read", nil)
	_, err = e.Release(ctx, b.ID, t0, allowAll)
	step("release", err, released(t0, b))

	// Each kind of step that finds a lock expired reports it, once.
	later := at(2 * time.Hour)
	settlers := map[string]func(id locklock.ID){
		"get": func(id locklock.ID) { _, err = e.Get(ctx, id, later) },
		"release": func(id locklock.ID) {
			_, err = e.Release(ctx, id, later, allowAll)
		},
		"refresh": func(id locklock.ID) {
			_, err = e.Refresh(ctx, id, later, expireAt(later.Add(time.Hour)), allowAll)
		},
		"list": func(id locklock.ID) {
			var got []locklock.Lock
			got, err = e.List(ctx, locklock.ListQuery{Namespace: id.Namespace, Kind: id.Kind, Prefix: id.Name, Limit: 10}, later)
			if err == nil && len(got) > 0 {
				err = fmt.Errorf("listed %+v", got)
			}
		},
		"sweep": func(id locklock.ID) {
			var n int
			if n, err = e.Sweep(ctx, later); err == nil && n != 1 {
				err = fmt.Errorf("swept %d", n)
			}
		},
	}
	for what, settle := range settlers {
		l := mustAcquire(t, e, newLock("by-"+what, t0, time.Minute, ""), t0)
		log.take()
		settle(l.ID)
		if errors.Is(err, locklock.ErrNotFound) {
			err = nil
		}
		step(what+" of an expired lock", err, expired(l))
		for again, settle := range settlers {
			settle(l.ID)
			if err != nil && !errors.Is(err, locklock.ErrNotFound) && !strings.HasPrefix(err.Error(), "swept 0") {
				t.Fatalf("%s after %s: %v", again, what, err)
			}
			step(again+" after "+what, nil)
		}
	}
	old := mustAcquire(t, e, newLock("replaced", t0, time.Minute, ""), t0)
	log.take()
	nu := mustAcquire(t, e, newLock("replaced", later, time.Hour, ""), later)
	step("acquire of an expired lock", nil, expired(old), acquired(later, nu))
}

// TestEventsOfLockDelay: a lock with a lock-delay is reported expired by
// the step that marks it Ended (a barred acquire, a sweep), once, with its
// lock-delay; neither the steps that find it Ended nor the deletion of the
// record after the delay report anything; a reclaim of a lock not yet
// ended reports its expiry, then the new grant.
func TestEventsOfLockDelay(t *testing.T) {
	ctx := t.Context()
	e := open(t, t.TempDir())
	log := watchEngine(t, e)
	at := func(d time.Duration) time.Time { return t0.Add(d) }

	d := mustAcquire(t, e, delayedLock("d"), t0)
	log.take()
	_, err := e.TryAcquire(ctx, newLock("d", at(11*time.Second), time.Hour, "other"), at(11*time.Second))
	if !errors.Is(err, locklock.ErrDelayed) {
		t.Fatalf("barred acquire: %v", err)
	}
	got := log.take()
	wantEvents(t, "barred acquire", got, expired(d))
	if len(got) == 1 && !got[0].Lock.DelayedUntil().Equal(at(30*time.Second)) {
		t.Errorf("expired carries delayed until %v, want +30s", got[0].Lock.DelayedUntil())
	}
	_, err1 := e.TryAcquire(ctx, newLock("d", at(12*time.Second), time.Hour, "other"), at(12*time.Second))
	_, err2 := e.Get(ctx, d.ID, at(12*time.Second))
	_, err3 := e.Refresh(ctx, d.ID, at(12*time.Second), expireAt(at(time.Hour)), allowAll)
	n1, err4 := e.Sweep(ctx, at(12*time.Second))
	if !errors.Is(err1, locklock.ErrDelayed) || !errors.Is(err2, locklock.ErrDelayed) || !errors.Is(err3, locklock.ErrDelayed) || n1 != 0 || err4 != nil {
		t.Fatalf("steps finding the ended record: %v, %v, %v, sweep %d %v", err1, err2, err3, n1, err4)
	}
	wantEvents(t, "steps finding the ended record", log.take())
	if n, err := e.Sweep(ctx, at(30*time.Second)); n != 1 || err != nil {
		t.Fatalf("Sweep at the end of the lock-delay = %d, %v", n, err)
	}
	wantEvents(t, "deleting the ended record", log.take())

	// Ended by the sweeper; replaced after its delay by a new grant.
	s := mustAcquire(t, e, delayedLock("s"), t0)
	log.take()
	if n, err := e.Sweep(ctx, at(11*time.Second)); n != 1 || err != nil {
		t.Fatalf("Sweep after expiry = %d, %v", n, err)
	}
	wantEvents(t, "sweep ending a lock", log.take(), expired(s))
	nu := mustAcquire(t, e, newLock("s", at(31*time.Second), time.Hour, ""), at(31*time.Second))
	wantEvents(t, "acquire replacing an ended record", log.take(), acquired(at(31*time.Second), nu))

	// Reclaimed by its holder before anything ended it.
	r := mustAcquire(t, e, delayedLock("r"), t0)
	log.take()
	back := newLock("r", at(11*time.Second), time.Hour, "pw")
	back.Reclaims = r.Token
	again := mustAcquire(t, e, back, at(11*time.Second))
	wantEvents(t, "reclaim", log.take(), expired(r), acquired(at(11*time.Second), again))
}

// TestEventsBeforeAnswer: a step's events are reported before its caller
// is answered, so that a caller that then opens a stream, which starts
// from the lock's state, does not get them after that state. The sink here
// is slow, to give an answer that did not wait for it time to overtake it.
func TestEventsBeforeAnswer(t *testing.T) {
	e := open(t, t.TempDir())
	log := &sinkLog{}
	e.SetEventSink(func(evs ...*locklock.Event) {
		time.Sleep(20 * time.Millisecond)
		log.sink(evs...)
	})
	l := mustAcquire(t, e, newLock("x", t0, time.Hour, ""), t0)
	wantEvents(t, "as the acquire is answered", log.take(), acquired(t0, l))
	if _, err := e.Release(t.Context(), l.ID, t0, allowAll); err != nil {
		t.Fatal(err)
	}
	wantEvents(t, "as the release is answered", log.take(), released(t0, l))
}

// TestEventsNotReplayedAfterCrash: what was reported is on disk after a
// kill -9, and a restarted engine reports nothing of the past.
func TestEventsNotReplayedAfterCrash(t *testing.T) {
	dir := t.TempDir()
	e, err := Open(dir, quiet)
	if err != nil {
		t.Fatal(err)
	}
	log := watchEngine(t, e)
	kept := mustAcquire(t, e, newLock("kept", t0, time.Hour, ""), t0)
	gone := mustAcquire(t, e, newLock("gone", t0, time.Hour, ""), t0)
	if _, err := e.Release(t.Context(), gone.ID, t0, allowAll); err != nil {
		t.Fatal(err)
	}
	wantEvents(t, "before the crash", log.take(), acquired(t0, kept), acquired(t0, gone), released(t0, gone))
	crash(t, e)

	e = open(t, dir)
	log = watchEngine(t, e)
	if got, err := e.Get(t.Context(), kept.ID, t0); err != nil || !same(got, kept) {
		t.Errorf("reported acquisition after the crash: %+v, %v", got, err)
	}
	if _, err := e.Get(t.Context(), gone.ID, t0); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("reported release after the crash: %v", err)
	}
	wantEvents(t, "after the restart", log.take())
}
