package badger

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bdg "github.com/dgraph-io/badger/v4"

	"github.com/locklock/locklock/locklock"
)

// Slots' events (events.go, semaphore.go): what each step reports, and
// that it is reported as lock events are — only after the batch is
// durable, once, never for a failed or rerun attempt — and before a read
// that saw the change answers. conformance.RunSemaphoreEvents checks the
// streams through the Service.

// slotEvent is an expected event of a slot.
type slotEvent struct {
	typ  locklock.EventType
	at   time.Time
	slot locklock.Slot
}

func slotAcquired(at time.Time, s locklock.Slot) slotEvent {
	return slotEvent{locklock.EventAcquired, at, s}
}
func slotRefreshed(at time.Time, s locklock.Slot) slotEvent {
	return slotEvent{locklock.EventRefreshed, at, s}
}
func slotReleased(at time.Time, s locklock.Slot) slotEvent {
	return slotEvent{locklock.EventReleased, at, s}
}
func slotExpired(s locklock.Slot) slotEvent { return slotEvent{locklock.EventExpired, s.ExpiresAt, s} }

func describeSlotEvents(evs []*locklock.Event) string {
	var b strings.Builder
	for _, ev := range evs {
		if ev.Slot == nil {
			fmt.Fprintf(&b, "[%s of lock %s#%d] ", ev.Type, ev.Lock.Name, ev.Lock.Token)
			continue
		}
		fmt.Fprintf(&b, "[%s %s/%.6s#%d at %s] ", ev.Type, ev.Slot.Semaphore.Name, ev.Slot.ID, ev.Slot.Token, ev.At.Format(time.TimeOnly))
	}
	return b.String()
}

// wantSlotEvents checks got against want: types, instants and slots (as
// stored), and that a slot's event carries no lock.
func wantSlotEvents(t *testing.T, what string, got []*locklock.Event, want ...slotEvent) {
	t.Helper()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		ev := got[i]
		ok = ev.Slot != nil && reflect.DeepEqual(ev.Lock, locklock.Lock{}) && ev.Type == want[i].typ &&
			ev.At.Equal(want[i].at) && sameSlot(*ev.Slot, want[i].slot)
	}
	if !ok {
		var w []*locklock.Event
		for _, ev := range want {
			w = append(w, &locklock.Event{Type: ev.typ, At: ev.at, Slot: &ev.slot})
		}
		t.Errorf("%s: events %s\nwant %s", what, describeSlotEvents(got), describeSlotEvents(w))
	}
}

// TestSlotEventsOfEachStep: what each kind of step reports — a change of
// a slot, with the slot after it (acquired, refreshed) or as it was
// (released); nothing for steps that change nothing — and that a slot's
// expiry is reported once, at its ExpiresAt, by whichever step first
// deletes it, and by none after.
func TestSlotEventsOfEachStep(t *testing.T) {
	ctx := t.Context()
	e := open(t, t.TempDir())
	log := watchEngine(t, e)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	step := func(what string, err error, want ...slotEvent) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		wantSlotEvents(t, what, log.take(), want...)
	}
	id := testID("s")

	a := mustSlot(t, e, newSlot("s", 3, 2, t0, time.Minute, "pw"), t0)
	step("acquire", nil, slotAcquired(t0, a))
	h := "h"
	r, err := e.RefreshSlot(ctx, id, a.ID, at(time.Second), locklock.Change{ExpiresAt: at(2 * time.Minute), Holder: &h, SetMetadata: true, Metadata: map[string]string{"k": "v"}}, allowAnySlot)
	step("refresh", err, slotRefreshed(at(time.Second), r))
	if r.Holder != h || r.Metadata["k"] != "v" {
		t.Fatalf("refreshed slot %+v", r)
	}
	_, err = e.ReleaseSlot(ctx, id, a.ID, at(2*time.Second), allowAnySlot)
	step("release", err, slotReleased(at(2*time.Second), r))

	// Steps that change nothing report nothing.
	keep := mustSlot(t, e, newSlot("s", 3, 2, t0, time.Hour, "k"), t0)
	log.take()
	refuse := errors.New("refused")
	_, _, err1 := e.TryAcquireSlot(ctx, newSlot("s", 3, 2, t0, time.Hour, ""), t0, nil)
	_, _, err2 := e.TryAcquireSlot(ctx, newSlot("s", 4, 1, t0, time.Hour, ""), t0, nil)
	got, created, err3 := e.TryAcquireSlot(ctx, newSlot("s", 3, 1, t0, time.Hour, "k"), t0, sameSecret("k"))
	_, err4 := e.ReleaseSlot(ctx, id, keep.ID, t0, func(locklock.Slot) error { return refuse })
	_, err5 := e.RefreshSlot(ctx, id, locklock.NewSlotID(), t0, expireAt(at(time.Hour)), allowAnySlot)
	_, err6 := e.GetSemaphore(ctx, id, t0)
	_, err7 := e.GetSlot(ctx, id, keep.ID, t0)
	if !errors.Is(err1, locklock.ErrSemaphoreFull) || !errors.Is(err2, locklock.ErrLimitMismatch) ||
		err3 != nil || created || got.ID != keep.ID || err4 != refuse || !errors.Is(err5, locklock.ErrSlotNotFound) ||
		err6 != nil || err7 != nil {
		t.Fatalf("steps changing nothing: %v, %v, retry %v (created %v), %v, %v; reads %v, %v", err1, err2, err3, created, err4, err5, err6, err7)
	}
	step("steps changing nothing, and reads", nil)

	// Each kind of step that finds a slot expired deletes it and reports
	// it, once; keep, live, stays.
	later := at(2 * time.Minute)
	notFound := func(err error) error {
		if errors.Is(err, locklock.ErrSlotNotFound) {
			return nil
		}
		return err
	}
	settlers := map[string]func(x locklock.Slot) error{
		"refused acquire": func(locklock.Slot) error {
			_, _, err := e.TryAcquireSlot(ctx, newSlot("s", 5, 1, later, time.Hour, ""), later, nil)
			if errors.Is(err, locklock.ErrLimitMismatch) {
				return nil
			}
			return fmt.Errorf("%v, want ErrLimitMismatch", err)
		},
		"retry": func(locklock.Slot) error {
			got, created, err := e.TryAcquireSlot(ctx, newSlot("s", 3, 1, later, time.Hour, "k"), later, sameSecret("k"))
			if err == nil && (created || got.ID != keep.ID) {
				err = fmt.Errorf("retry gave %s (created %v), want %s", got.ID, created, keep.ID)
			}
			return err
		},
		"release": func(x locklock.Slot) error {
			_, err := e.ReleaseSlot(ctx, id, x.ID, later, allowAnySlot)
			return notFound(err)
		},
		"refresh": func(x locklock.Slot) error {
			_, err := e.RefreshSlot(ctx, id, x.ID, later, expireAt(later.Add(time.Hour)), allowAnySlot)
			return notFound(err)
		},
		"GetSlot": func(x locklock.Slot) error {
			_, err := e.GetSlot(ctx, id, x.ID, later)
			return notFound(err)
		},
		"GetSemaphore": func(locklock.Slot) error {
			sem, err := e.GetSemaphore(ctx, id, later)
			if err == nil && (len(sem.Slots) != 1 || sem.Slots[0].ID != keep.ID) {
				err = fmt.Errorf("slots %v, want only %s", slotIDs(sem.Slots), keep.ID)
			}
			return err
		},
		"ListSemaphores": func(locklock.Slot) error {
			got, err := e.ListSemaphores(ctx, locklock.ListQuery{Namespace: id.Namespace, Kind: id.Kind, Limit: 10}, later)
			if err == nil && (len(got) != 1 || got[0].Slots != 1) {
				err = fmt.Errorf("listed %+v, want s with one slot", got)
			}
			return err
		},
		"Sweep": func(locklock.Slot) error {
			_, err := e.Sweep(ctx, later)
			return err
		},
	}
	for what, settle := range settlers {
		x := mustSlot(t, e, newSlot("s", 3, 1, t0, time.Minute, ""), t0)
		log.take()
		step(what+" of an expired slot", settle(x), slotExpired(x))
		for again, settle := range settlers {
			step(again+" after "+what, settle(x))
		}
	}

	// An acquire deletes every expired slot of its semaphore: each one's
	// expiry, in token order (not the order of their ids), then the grant.
	var old []locklock.Slot
	for range 3 {
		old = append(old, mustSlot(t, e, newSlot("many", 4, 1, t0, time.Minute, ""), t0))
	}
	log.take()
	nu := mustSlot(t, e, newSlot("many", 4, 4, later, time.Hour, ""), later)
	step("acquire over expired slots", nil, slotExpired(old[0]), slotExpired(old[1]), slotExpired(old[2]), slotAcquired(later, nu))
}

// TestSlotEventsManyExpired: an operation that finds more expired slots
// than one step may delete (deleted in steps ahead of it, semaphore.go)
// reports every one of them expired, once.
func TestSlotEventsManyExpired(t *testing.T) {
	ctx := t.Context()
	const n = 2*maxSettle + 10
	id := testID("many")
	at := t0.Add(time.Minute)
	ops := map[string]func(e *Engine) error{
		"acquire": func(e *Engine) error {
			_, _, err := e.TryAcquireSlot(ctx, newSlot("many", 10000, 1, at, time.Hour, ""), at, nil)
			return err
		},
		"GetSemaphore": func(e *Engine) error {
			_, err := e.GetSemaphore(ctx, id, at)
			if errors.Is(err, locklock.ErrSemaphoreNotFound) {
				return nil
			}
			return fmt.Errorf("%v, want ErrSemaphoreNotFound", err)
		},
		"ListSemaphores": func(e *Engine) error {
			_, err := e.ListSemaphores(ctx, locklock.ListQuery{Namespace: id.Namespace, Kind: id.Kind, Limit: 10}, at)
			return err
		},
		"Sweep": func(e *Engine) error {
			got, err := e.Sweep(ctx, at)
			if err == nil && got != n {
				err = fmt.Errorf("swept %d, want %d", got, n)
			}
			return err
		},
	}
	for name, op := range ops {
		t.Run(name, func(t *testing.T) {
			e := open(t, t.TempDir(), WithSyncWrites(false))
			log := watchEngine(t, e)
			slots := make(map[string]locklock.Slot, n)
			var planted []locklock.Slot
			for i := range n {
				s := normalizeSlot(newSlot("many", 10000, 1, t0, time.Duration(1+i%7)*time.Second, ""))
				s.Token = uint64(i + 1)
				slots[s.ID] = s
				planted = append(planted, s)
			}
			plantSlots(t, e, planted) // reports nothing: no event recorded
			if err := op(e); err != nil {
				t.Fatal(err)
			}
			expired := 0
			for _, ev := range log.take() {
				if ev.Type == locklock.EventAcquired && name == "acquire" {
					continue
				}
				want, ok := slots[ev.Slot.ID]
				if ev.Type != locklock.EventExpired || !ok || !sameSlot(*ev.Slot, want) || !ev.At.Equal(want.ExpiresAt) {
					t.Fatalf("event %s of %+v at %v; want each planted slot expired once, at its expiry", ev.Type, ev.Slot, ev.At)
				}
				delete(slots, ev.Slot.ID)
				expired++
			}
			if expired != n {
				t.Errorf("%d expired events, want %d", expired, n)
			}
		})
	}
}

// TestSlotEventsOnlyAfterCommit: nothing is reported before a batch's
// commit, nor for a commit that fails.
func TestSlotEventsOnlyAfterCommit(t *testing.T) {
	cc := newCommitControl()
	g := openGated(t, withCommitWith(cc.commitWith))
	log := watchEngine(t, g.Engine)
	ctx := context.Background()

	cc.mode.Store(commitHeld)
	var x locklock.Slot
	var xerr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		x, _, xerr = g.TryAcquireSlot(ctx, newSlot("s", 2, 1, t0, time.Hour, ""), t0, nil)
	}()
	waitQueued(t, g.commit, 1)
	g.gate <- struct{}{}
	<-cc.entered
	time.Sleep(20 * time.Millisecond) // a reporter that did not wait would have by now
	wantSlotEvents(t, "a batch whose commit has not begun", log.take())
	close(cc.release)
	<-done
	if xerr != nil {
		t.Fatal(xerr)
	}
	wantSlotEvents(t, "after its commit", log.take(), slotAcquired(t0, x))

	// A commit that fails: nothing reported, nothing applied.
	cc.mode.Store(commitFails)
	var yerr, relErr error
	g.batch(t,
		func() { _, _, yerr = g.TryAcquireSlot(ctx, newSlot("s", 2, 1, t0, time.Hour, ""), t0, nil) },
		func() { _, relErr = g.ReleaseSlot(ctx, x.Semaphore, x.ID, t0, allowAnySlot) },
	)
	if !errors.Is(yerr, errInjectedCommit) || !errors.Is(relErr, errInjectedCommit) {
		t.Fatalf("steps of a failed commit: %v, %v", yerr, relErr)
	}
	wantSlotEvents(t, "a failed commit", log.take())
	g.open()
	if sem, err := g.GetSemaphore(ctx, x.Semaphore, t0); err != nil || len(sem.Slots) != 1 || !sameSlot(sem.Slots[0], x) {
		t.Errorf("after the failed commit: %+v, %v; want x alone", sem, err)
	}
}

// TestSlotEventsConflictRerunReportsOnce: a batch whose commit conflicts
// runs again; its slot steps report once, from the attempt that committed
// (the slot carries that attempt's token).
func TestSlotEventsConflictRerunReportsOnce(t *testing.T) {
	g := openGated(t)
	log := watchEngine(t, g.Engine)
	ctx := context.Background()
	x := mustSlotGated(t, g, newSlot("s", 3, 1, t0, time.Minute, ""), t0)
	log.take()
	later := t0.Add(time.Hour)
	var runs atomic.Int32
	var conflicting, aerr error
	var a locklock.Slot
	d := g.batch(t,
		func() { a, _, aerr = g.TryAcquireSlot(ctx, newSlot("s", 3, 1, later, time.Hour, ""), later, nil) },
		g.conflictOnceOp(&conflicting, &runs),
	)
	wantBatches(t, d, 1, 2, 1)
	if aerr != nil || conflicting != nil {
		t.Fatalf("after the rerun: %v, %v", aerr, conflicting)
	}
	wantSlotEvents(t, "a batch run again after a conflict", log.take(), slotExpired(x), slotAcquired(later, a))
}

// mustSlotGated acquires a slot through a gated engine, letting its batch
// through.
func mustSlotGated(t *testing.T, g *gatedEngine, cand locklock.Slot, now time.Time) locklock.Slot {
	t.Helper()
	var got locklock.Slot
	var err error
	g.batch(t, func() { got, _, err = g.TryAcquireSlot(context.Background(), cand, now, nil) })
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestSlotEventsFailedStepTakenOut: a slot acquire that deleted expired
// slots and then failed (its token reservation) is taken out of its batch
// and reports nothing; those slots' expiry is reported by the next step to
// delete them, once.
func TestSlotEventsFailedStepTakenOut(t *testing.T) {
	g := openGated(t)
	log := watchEngine(t, g.Engine)
	ctx := context.Background()
	x := mustSlotGated(t, g, newSlot("s", 3, 1, t0, time.Second, ""), t0)
	log.take()
	g.failNextTokenReservation(errors.New("disk full"))

	later := t0.Add(time.Hour)
	var a, b locklock.Slot
	var aerr, replaceErr, berr error
	d := g.batch(t,
		func() { a, _, aerr = g.TryAcquireSlot(ctx, newSlot("other", 3, 1, later, time.Hour, ""), later, nil) },
		func() { _, _, replaceErr = g.TryAcquireSlot(ctx, newSlot("s", 3, 1, later, time.Hour, ""), later, nil) },
		func() { b, _, berr = g.TryAcquireSlot(ctx, newSlot("other", 3, 1, later, time.Hour, ""), later, nil) },
	)
	wantBatches(t, d, 1, 2, 1)
	if aerr != nil || replaceErr == nil || berr != nil {
		t.Fatalf("steps: %v, %v (want a failure), %v", aerr, replaceErr, berr)
	}
	wantSlotEvents(t, "a batch with a step taken out", log.take(), slotAcquired(later, a), slotAcquired(later, b))
	var n int
	var err error
	g.batch(t, func() { n, err = g.Sweep(ctx, later) })
	if err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want x", n, err)
	}
	wantSlotEvents(t, "Sweep deleting the slot", log.take(), slotExpired(x))
}

// TestSlotExpiredOncePipelined: a GetSlot that read a slot expired queues
// its deleting step while a Sweep that deletes the same slot commits; the
// GetSlot's step runs on a snapshot without the Sweep, conflicts, runs
// again and finds the slot gone: one expired event.
func TestSlotExpiredOncePipelined(t *testing.T) {
	cc := newCommitControl()
	g := openGated(t, withCommitWith(cc.commitWith))
	log := watchEngine(t, g.Engine)
	ctx := context.Background()
	x := mustSlotGated(t, g, newSlot("s", 3, 1, t0, time.Second, ""), t0)
	log.take()
	at := t0.Add(2 * time.Second)
	before := g.CommitStats()
	var wg sync.WaitGroup
	var swept int
	var sweepErr, getErr error
	cc.mode.Store(commitHeld)
	wg.Go(func() { swept, sweepErr = g.Sweep(ctx, at) })
	waitQueued(t, g.commit, 1)
	g.gate <- struct{}{} // the Sweep's batch runs, and its commit is held
	<-cc.entered
	wg.Go(func() { _, getErr = g.GetSlot(ctx, x.Semaphore, x.ID, at) })
	waitQueued(t, g.commit, 1) // GetSlot read x expired, not deleted
	close(cc.release)
	g.gate <- struct{}{}
	wg.Wait()
	if d := g.CommitStats().Sub(before); d.Reruns != 1 {
		t.Errorf("%d reruns, want 1: the GetSlot's batch did not meet the Sweep's in flight", d.Reruns)
	}
	if swept != 1 || sweepErr != nil || !errors.Is(getErr, locklock.ErrSlotNotFound) {
		t.Errorf("Sweep = %d, %v; GetSlot: %v (want ErrSlotNotFound)", swept, sweepErr, getErr)
	}
	wantSlotEvents(t, "GetSlot and Sweep of one expired slot", log.take(), slotExpired(x))
}

// TestSemaphoreReadsWaitForReport: Badger makes a commit visible to readers
// before its callback reports the events; GetSemaphore (a one-semaphore
// stream's state) and GetSlot, having read the change, wait for the
// report, so that a stream starting from what they read never gets the
// change's event after it.
func TestSemaphoreReadsWaitForReport(t *testing.T) {
	var delay atomic.Bool
	hold := make(chan struct{})
	e := open(t, t.TempDir(), withCommitWith(func(txn *bdg.Txn, cb func(error)) {
		if !delay.Load() {
			txn.CommitWith(cb)
			return
		}
		txn.CommitWith(func(err error) { <-hold; cb(err) })
	}))
	log := watchEngine(t, e)
	ctx := context.Background()
	cand := newSlot("s", 2, 1, t0, time.Hour, "")
	delay.Store(true)
	type acq struct {
		slot locklock.Slot
		err  error
	}
	acquired := make(chan acq, 1)
	go func() {
		s, _, err := e.TryAcquireSlot(ctx, cand, t0, nil)
		acquired <- acq{s, err}
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		var found bool
		if err := e.view(func(txn *bdg.Txn) (err error) { _, found, err = getSlot(txn, cand.Semaphore, cand.ID); return err }); err != nil {
			t.Fatal(err)
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the acquire's commit never became visible")
		}
	}
	semDone := make(chan error, 1)
	slotDone := make(chan error, 1)
	go func() {
		sem, err := e.GetSemaphore(ctx, cand.Semaphore, t0)
		if err == nil && len(sem.Slots) != 1 {
			err = fmt.Errorf("slots %v", slotIDs(sem.Slots))
		}
		semDone <- err
	}()
	go func() {
		_, err := e.GetSlot(ctx, cand.Semaphore, cand.ID, t0)
		slotDone <- err
	}()
	select {
	case err := <-semDone:
		close(hold)
		t.Fatalf("GetSemaphore answered (%v) before the change it read was reported", err)
	case err := <-slotDone:
		close(hold)
		t.Fatalf("GetSlot answered (%v) before the change it read was reported", err)
	case <-time.After(100 * time.Millisecond):
	}
	wantSlotEvents(t, "a commit whose callback has not run", log.take())
	close(hold)
	a := <-acquired
	if err := errors.Join(a.err, <-semDone, <-slotDone); err != nil {
		t.Fatal(err)
	}
	wantSlotEvents(t, "once reported", log.take(), slotAcquired(t0, a.slot))
}

// TestSlotExpiredWithoutRequest: with the Service's sweeper running, a
// one-semaphore stream gets `expired` within a second of the slot's expiry
// (real time, real Badger directory), with no request touching the
// semaphore.
func TestSlotExpiredWithoutRequest(t *testing.T) {
	e := open(t, t.TempDir())
	svc := locklock.NewService(e)
	ctx, cancel := context.WithCancel(t.Context())
	swept := make(chan struct{})
	go func() { defer close(swept); svc.RunSweeper(ctx, 0) }()
	defer func() { cancel(); <-swept }()
	id := testID("expiring")
	w, err := svc.Watch(ctx, locklock.WatchRequest{Filter: locklock.Filter{ID: &id, Semaphore: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if w.SemaphoreState != nil {
		t.Fatalf("state of an unused semaphore: %+v", w.SemaphoreState)
	}
	s, _, err := svc.AcquireSlot(ctx, locklock.SlotRequest{ID: id, Limit: 2, TTL: time.Second, Holder: "h"})
	if err != nil {
		t.Fatal(err)
	}
	var evs []*locklock.Event
	deadline, stop := context.WithTimeout(ctx, 10*time.Second)
	defer stop()
	for len(evs) < 2 {
		got, err := w.Next(deadline)
		if err != nil {
			t.Fatalf("after %s: %v", describeSlotEvents(evs), err)
		}
		evs = append(evs, got...)
	}
	late := time.Since(s.ExpiresAt)
	if len(evs) != 2 || evs[0].Type != locklock.EventAcquired || evs[1].Type != locklock.EventExpired ||
		evs[1].Slot == nil || evs[1].Slot.ID != s.ID || evs[1].Slot.Holder != "h" || !evs[1].At.Equal(s.ExpiresAt) {
		t.Fatalf("events %s; want acquired, then expired of %s at %v", describeSlotEvents(evs), s.ID, s.ExpiresAt)
	}
	if late > time.Second {
		t.Errorf("expired came %v after the slot's expiry, want within 1s", late)
	}
	t.Logf("expired came %v after the slot's expiry", late)
}
