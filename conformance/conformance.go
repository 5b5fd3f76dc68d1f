// Package conformance is the one test suite every Locklock engine runs:
//
//	func TestConformance(t *testing.T) {
//		conformance.Run(t, conformance.Harness{NewEngine: ...})
//	}
//
// Engines that store semaphores (locklock.SemaphoreEngine) run
// conformance.RunSemaphores too, with the same Harness, and once they report
// their slots' events conformance.RunSemaphoreEvents.
//
// Like dex's storage conformance tests, each sub-test gets a fresh engine;
// like go-cloud's drivertest, the Harness says what the engine can do so that
// the suite adapts (for example, engines that keep their own time are tested
// with short TTLs and real sleeps instead of a manual clock).
//
// The suite drives engines through a locklock.Service, because the Service is
// how every transport uses an engine: it checks the engine's atomic steps and
// the Service's rules together.
package conformance

import (
	"context"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
)

// Harness describes an engine under test.
type Harness struct {
	// NewEngine returns a fresh, empty engine. The suite closes it (Close
	// must tolerate being called twice).
	NewEngine func(t *testing.T) locklock.Engine

	// Reopen, when set, closes e and opens the same storage again, as a
	// restart of the process would. Durable engines set it.
	Reopen func(t *testing.T, e locklock.Engine) locklock.Engine

	// RealTime says the engine decides expiry by its own storage's time
	// (etcd leases) rather than the now it is given; expiry sub-tests then
	// use short TTLs and real sleeps, and Sweep need not remove anything.
	RealTime bool

	// Parallel runs the sub-tests in parallel, each on its own engine:
	// for engines whose sub-tests spend most of their time waiting on
	// real time (etcd's leases), where one after the other takes minutes.
	// NewEngine must then be safe for concurrent use.
	Parallel bool
}

// Run runs every sub-test against engines from h.
func Run(t *testing.T, h Harness) {
	t.Helper()
	for _, tc := range suite() {
		t.Run(tc.name, func(t *testing.T) {
			if h.Parallel {
				t.Parallel()
			}
			tc.run(t, h)
		})
	}
}

type testCase struct {
	name string
	run  func(t *testing.T, h Harness)
}

func suite() []testCase {
	return []testCase{
		{"AcquireFree", testAcquireFree},
		{"AcquireHeld", testAcquireHeld},
		{"ReleaseFrees", testReleaseFrees},
		{"ExpiredIsFreeWithoutSweep", testExpiredIsFree},
		{"NoRevivalAfterExpiry", testNoRevival},
		{"SecretRules", testSecretRules},
		{"IdempotentReacquire", testIdempotentReacquire},
		{"RefreshKeepsToken", testRefreshKeepsToken},
		{"Get", testGet},
		{"List", testList},
		{"NamespaceIsolation", testNamespaceIsolation},
		{"SweepCounts", testSweepCounts},
		{"CountHeld", testCountHeld},
		{"TokensStrictlyIncrease", testTokensIncrease},
		{"OneWinnerAmong64", testOneWinner},
		{"ContextCancelled", testContextCancelled},
		{"WaitFIFO", testWaitFIFO},
		{"WaitForExpiry", testWaitForExpiry},
		{"WaitTimesOut", testWaitTimesOut},
		{"WaitAsLongAsTTL", testWaitAsLongAsTTL},
		{"HolderRetryWithWait", testHolderRetryWithWait},
		{"WaiterGoneNeverHolds", testWaiterGone},
		{"StopWaiting", testStopWaiting},
		{"LabelsStored", testLabelsStored},
		{"Patch", testPatch},
		{"LabelValidation", testLabelValidation},
		{"LockDelayAfterExpiry", testLockDelayAfterExpiry},
		{"NoDelayAfterRelease", testNoDelayAfterRelease},
		{"WaitOutLockDelay", testWaitOutLockDelay},
		{"LockDelaySurvivesReopen", testLockDelaySurvivesReopen},
		{"RevokeWithoutDelay", testRevokeWithoutDelay},
		{"RevokeStartsLockDelay", testRevokeStartsLockDelay},
		{"EventsOneLock", testEventsOneLock},
		{"EventsState", testEventsState},
		{"EventsExpired", testEventsExpired},
		{"EventsRevoked", testEventsRevoked},
		{"EventsNamespace", testEventsNamespace},
		{"EventsResume", testEventsResume},
		{"EventsSlowReader", testEventsSlowReader},
		{"WatcherCaps", testWatcherCaps},
		{"EventsOrderUnderRace", testEventsOrderUnderRace},
		{"Close", testClose},
		{"Reopen", testReopen},
		{"Linearizable", testLinearizable},
	}
}

// env is one sub-test's world: a fresh engine, a clock and a Service on top.
type env struct {
	t      *testing.T
	h      Harness
	engine locklock.Engine
	clock  *locklock.ManualClock // nil for RealTime engines
	svc    *locklock.Service
}

var epoch = time.Date(2026, 11, 26, 15, 4, 5, 0, time.UTC)

func newEnv(t *testing.T, h Harness) *env {
	t.Helper()
	e := &env{t: t, h: h, engine: h.NewEngine(t)}
	t.Cleanup(func() { _ = e.engine.Close() })
	e.svc = e.newService()
	return e
}

// newService returns another Service on the same engine and clock, as a
// second server process would have.
func (e *env) newService(opts ...locklock.Option) *locklock.Service {
	if !e.h.RealTime {
		if e.clock == nil {
			e.clock = locklock.NewManualClock(epoch)
		}
		opts = append([]locklock.Option{locklock.WithClock(e.clock)}, opts...)
	}
	return locklock.NewService(e.engine, opts...)
}

// shortTTL is a TTL the sub-test lets run out.
func (e *env) shortTTL() time.Duration {
	if e.h.RealTime {
		return 2 * time.Second
	}
	return 10 * time.Second
}

// pass lets d go by: the manual clock moves, or a RealTime engine sleeps.
func (e *env) pass(d time.Duration) {
	if e.clock != nil {
		e.clock.Advance(d)
		return
	}
	time.Sleep(d)
}

func (e *env) ctx() context.Context { return e.t.Context() }

// now is the time the Service would read.
func (e *env) now() time.Time {
	if e.clock != nil {
		return e.clock.Now()
	}
	return time.Now()
}

func (e *env) id(name string) locklock.ID {
	return locklock.ID{Namespace: locklock.DefaultNamespace, Kind: locklock.KindKey, Name: name}
}

// acquire must create the lock.
func (e *env) acquire(req locklock.AcquireRequest) locklock.Lock {
	e.t.Helper()
	l, created, err := e.svc.Acquire(e.ctx(), req)
	if err != nil || !created {
		e.t.Fatalf("acquire %s: created=%v err=%v, want a new lock", req.ID, created, err)
	}
	return l
}
