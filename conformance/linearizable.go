package conformance

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/locklock/locklock/internal/lockmodel"
	"github.com/locklock/locklock/locklock"
)

// The linearizability check records a concurrent history of acquires,
// releases and refreshes (with expiry) through a Service and asks porcupine
// whether some sequential order of the operations, each taking effect at one
// instant inside its call, explains every outcome under the lock model of
// internal/lockmodel (shared with the cluster fault suite), which holds time,
// fencing tokens and unknown outcomes.

const (
	linClients = 32
	linNames   = 4
	linRounds  = 60 // each client runs one operation per round

	// realTimeSlack covers how late an engine that keeps its own time may
	// end a lock: etcd's leases are whole seconds and shared by the locks
	// of one second (up to 1 s late), and etcd checks for expired leases
	// every 500 ms.
	realTimeSlack = 3 * time.Second
	// realTimeGrace is how long expiry sub-tests wait past a lock's
	// expires_at on such an engine before they expect it gone.
	realTimeGrace = 2 * time.Second
)

// linClient is one client of the history: its own random choices, secret,
// and belief about which locks it holds.
type linClient struct {
	id     int
	rng    *rand.Rand
	secret string
	holds  map[string]bool
	// unknownOK records ErrUnavailable as an unknown outcome instead of
	// failing the test (when faults are injected on purpose).
	unknownOK bool
	// retired: an operation of this client had an unknown outcome, and it
	// issues no more. porcupine may place an unknown operation anywhere
	// after its call, so each one still open multiplies the orders it
	// searches: a client that carried on would add one per round of an
	// outage (134 in a history of a loaded machine, and the check timed
	// out); retiring caps them at one per client, as a real client that
	// lost track of a lock might well stop too.
	retired bool
}

// next picks an operation. Clients mostly act like real ones (release or
// refresh what they hold, acquire what they do not) with some strays mixed
// in, so that every outcome shows up often.
func (c *linClient) next() lockmodel.Input {
	ttls := []time.Duration{time.Second, 2 * time.Second, 3 * time.Second}
	in := lockmodel.Input{Client: c.id, Name: fmt.Sprint("lin-", c.rng.IntN(linNames)), TTL: ttls[c.rng.IntN(len(ttls))]}
	p := c.rng.IntN(10)
	switch held := c.holds[in.Name]; {
	case held && p < 6, !held && p == 0:
		in.Kind = lockmodel.Release
	case held && p < 9, !held && p == 1:
		in.Kind = lockmodel.Refresh
	default:
		in.Kind, in.Protected = lockmodel.Acquire, c.rng.IntN(4) != 0
	}
	return in
}

// do runs in through svc and reports the outcome.
func (c *linClient) do(ctx context.Context, svc *locklock.Service, id locklock.ID, in lockmodel.Input) (lockmodel.Output, error) {
	var (
		l   locklock.Lock
		err error
		out lockmodel.Output
	)
	switch in.Kind {
	case lockmodel.Acquire:
		req := locklock.AcquireRequest{ID: id, TTL: in.TTL}
		if in.Protected {
			req.Secret = c.secret
		}
		var created bool
		l, created, err = svc.Acquire(ctx, req)
		out = lockmodel.Output{Outcome: lockmodel.Reacquired, Token: l.Token, ExpiresAt: l.ExpiresAt}
		if created {
			out.Outcome = lockmodel.Created
		}
	case lockmodel.Release:
		l, err = svc.Release(ctx, id, c.secret)
		out = lockmodel.Output{Outcome: lockmodel.Released, Token: l.Token}
	case lockmodel.Refresh:
		l, err = svc.Refresh(ctx, id, c.secret, in.TTL)
		out = lockmodel.Output{Outcome: lockmodel.Refreshed, Token: l.Token, ExpiresAt: l.ExpiresAt}
	}
	switch {
	case err == nil:
	case errors.Is(err, locklock.ErrHeld):
		out = lockmodel.Output{Outcome: lockmodel.Held}
	case errors.Is(err, locklock.ErrNotFound):
		out = lockmodel.Output{Outcome: lockmodel.NotFound}
	case errors.Is(err, locklock.ErrSecretMismatch):
		out = lockmodel.Output{Outcome: lockmodel.Mismatch}
	case c.unknownOK && errors.Is(err, locklock.ErrUnavailable):
		out = lockmodel.Output{Outcome: lockmodel.Unknown}
	default:
		return out, err
	}
	switch out.Outcome {
	case lockmodel.Created, lockmodel.Reacquired:
		c.holds[in.Name] = true
	case lockmodel.Released, lockmodel.NotFound, lockmodel.Mismatch, lockmodel.Unknown:
		c.holds[in.Name] = false
	}
	return out, nil
}

// testLinearizable checks the engine under test through one Service.
func testLinearizable(t *testing.T, h Harness) {
	e := newEnv(t, h)
	now, advance, slack := e.linTime()
	checkLinearizable(t, []*locklock.Service{e.svc}, now, advance, slack, false, e.id)
}

// CheckLinearizable records a history through several Services on one
// shared store — as several servers would use it — and checks it like the
// Linearizable sub-test does. Client i uses services[i % len(services)]. The
// services keep their own (real) clocks, and the engine must judge expiry by
// the store's time, as etcd does.
//
// nemesis, when not nil, is called at the start of every round (0 to
// rounds-1) to inject faults; ErrUnavailable answers are then recorded as
// unknown outcomes, which may or may not have taken effect.
//
// slack is how long past expires_at the store may still hold a lock (zero:
// the default for engines that keep their own time, two seconds); a test
// that changes etcd's leader passes more, since a new leader restarts every
// lease's countdown.
func CheckLinearizable(t *testing.T, services []*locklock.Service, nemesis func(round int), slack time.Duration) {
	t.Helper()
	advance, slack := sharedLinTime(nemesis, slack)
	checkLinearizable(t, services, time.Now, advance, slack, nemesis != nil, sharedLinID)
}

// linTime is how a history through the sub-test's own Service keeps time:
// the manual clock moved on each round, or real time for engines that keep
// their own (with slack for how late they may end a lock).
func (e *env) linTime() (now func() time.Time, advance func(), slack time.Duration) {
	if e.clock != nil {
		return e.clock.Now, func() { e.clock.Advance(linTick) }, 0
	}
	if e.h.RealTime {
		slack = realTimeSlack
	}
	return time.Now, func() { time.Sleep(linTick) }, slack
}

// sharedLinTime is how a history through several servers keeps time: real
// time, nemesis called at the start of every round, slack by default
// realTimeSlack.
func sharedLinTime(nemesis func(round int), slack time.Duration) (advance func(), _ time.Duration) {
	round := 0
	advance = func() {
		if nemesis != nil {
			nemesis(round)
		}
		round++
		time.Sleep(linTick)
	}
	if slack == 0 {
		slack = realTimeSlack
	}
	return advance, slack
}

// sharedLinID names the locks and semaphores of a history through several
// servers.
func sharedLinID(name string) locklock.ID {
	return locklock.ID{Namespace: locklock.DefaultNamespace, Kind: locklock.KindKey, Name: name}
}

// LinearizableRounds is how many rounds CheckLinearizable records.
const LinearizableRounds = linRounds

// linTick is how far time moves during each round.
const linTick = 250 * time.Millisecond

// checkLinearizable records the history in rounds: in each round all
// clients issue one operation at once, and time moves on while they are in
// flight, so some see a lock expire and some do not. Rounds keep any
// operation's window from spanning the whole history when the scheduler
// starves a goroutine, which keeps porcupine's search small and its time
// predictable.
func checkLinearizable(t *testing.T, services []*locklock.Service, now func() time.Time, advance func(), slack time.Duration, unknownOK bool, id func(string) locklock.ID) {
	t.Helper()
	var (
		mu      sync.Mutex
		history []porcupine.Operation
		seq     atomic.Int64 // porcupine's real-time order of calls and returns
		clients []*linClient
	)
	for c := range linClients {
		clients = append(clients, &linClient{id: c, rng: rand.New(rand.NewPCG(uint64(c), 42)), secret: fmt.Sprint("client-", c), holds: map[string]bool{}, unknownOK: unknownOK})
	}
	for range linRounds {
		var wg sync.WaitGroup
		for _, c := range clients {
			if c.retired {
				continue
			}
			svc := services[c.id%len(services)]
			wg.Go(func() {
				in := c.next()
				in.Slack = slack
				call := seq.Add(1)
				in.CallAt = now()
				out, err := c.do(t.Context(), svc, id(in.Name), in)
				in.ReturnAt = now()
				ret := seq.Add(1)
				if err != nil {
					t.Errorf("client %d: unexpected error %v", c.id, err)
					return
				}
				if out.Outcome == lockmodel.Unknown {
					// It may take effect at any later time, or never.
					in.ReturnAt, ret = lockmodel.FarFuture, math.MaxInt64
					c.retired = true // read after wg.Wait
				}
				mu.Lock()
				history = append(history, porcupine.Operation{ClientId: c.id, Input: in, Call: call, Output: out, Return: ret})
				mu.Unlock()
			})
		}
		advance()
		wg.Wait()
	}
	if t.Failed() {
		return
	}
	counts := map[lockmodel.Outcome]int{}
	for _, op := range history {
		counts[op.Output.(lockmodel.Output).Outcome]++
	}
	retired := 0
	for _, c := range clients {
		if c.retired {
			retired++
		}
	}
	t.Logf("history: %d operations, outcomes %v; %d of %d clients retired after an unknown outcome", len(history), describeCounts(counts), retired, len(clients))
	if counts[lockmodel.Created] < 10 || counts[lockmodel.Held] < 10 {
		t.Errorf("history too tame to mean much: %v", describeCounts(counts))
	}
	judge(t, lockmodel.Model(), history, "lock", lockmodel.DumpOperations)
}

func describeCounts(c map[lockmodel.Outcome]int) string {
	s := ""
	for o := range lockmodel.Outcomes {
		s += fmt.Sprintf("%s=%d ", lockmodel.Outcome(o), c[lockmodel.Outcome(o)])
	}
	return s
}
