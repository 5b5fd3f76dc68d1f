package conformance

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/locklock/locklock/locklock"
)

// The linearizability check records a concurrent history of acquires,
// releases and refreshes (with expiry) through a Service and asks porcupine
// whether some sequential order of the operations, each taking effect at one
// instant inside its call, explains every outcome under the lock model below.
//
// Time is part of the model: each operation records the clock before its
// call and after its return, and the model lets it take effect at any clock
// reading in between — which is exactly what the Service does (it reads the
// clock once, during the call). Tokens must rise with every grant.

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

type opKind uint8

const (
	opAcquire opKind = iota
	opRelease
	opRefresh
)

type linInput struct {
	op        opKind
	client    int
	name      string
	protected bool          // acquire with the client's secret
	ttl       time.Duration // acquire and refresh
	callAt    time.Time     // clock before the call
	returnAt  time.Time     // clock after the return
	// slack is how long after expires_at a lock may still be held: zero
	// where the engine judges expiry by the given clock, a little for
	// engines whose storage ends locks on its own cycle (etcd leases).
	slack time.Duration
}

type outcome uint8

const (
	outCreated outcome = iota
	outReacquired
	outHeld
	outReleased
	outRefreshed
	outNotFound
	outMismatch
	// outUnknown: the call failed in a way that leaves its effect unknown
	// (a timeout while etcd lost its leader). It may have taken effect, at
	// any time after its call, or not at all.
	outUnknown
)

var outcomeNames = [...]string{"created", "reacquired", "held", "released", "refreshed", "not_found", "mismatch", "unknown"}

type linOutput struct {
	outcome   outcome
	token     uint64
	expiresAt time.Time
}

// farFuture stands for "no bound" on when a lock expires or when an
// operation with an unknown outcome took effect.
var farFuture = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

// lockState is the model's state for one lock name. It must stay comparable
// with == (porcupine's default equality). The expiry is a range, because a
// lock granted or refreshed by an operation with an unknown outcome expires
// at a time only bounded from below; known outcomes make it exact.
type lockState struct {
	holder       int // -1: nobody
	protected    bool
	token        uint64 // 0: granted by an unknown outcome, not yet seen
	expLo, expHi time.Time
	maxToken     uint64
}

func free(s lockState) lockState { return lockState{holder: -1, maxToken: s.maxToken} }

// mayBeLive: some instant in [call, return] may see the lock held.
func (s lockState) mayBeLive(in linInput) bool {
	return s.holder >= 0 && in.callAt.Before(s.expHi.Add(in.slack))
}

// mayBeFree: some instant in [call, return] may see the lock free.
func (s lockState) mayBeFree(in linInput) bool {
	return s.holder < 0 || !in.returnAt.Before(s.expLo)
}

// grantedWithin: expiresAt - ttl is a clock reading inside the call.
func grantedWithin(in linInput, expiresAt time.Time) bool {
	at := expiresAt.Add(-in.ttl)
	return !at.Before(in.callAt.Truncate(time.Millisecond)) && !at.After(in.returnAt)
}

func (s lockState) mayRelease(in linInput) bool {
	return !s.protected || s.holder == in.client
}

// sameToken: the state's token is out's, or was unknown.
func (s lockState) sameToken(token uint64) bool { return s.token == 0 || s.token == token }

// step is the lock's sequential specification: the states the lock can be
// in after in produced out from s (none: impossible).
func step(s lockState, in linInput, out linOutput) []any {
	none := []any{}
	one := func(ok bool, next lockState) []any {
		if !ok {
			return none
		}
		return []any{next}
	}
	if in.op == opRelease || in.op == opRefresh {
		// Answers release and refresh share: nothing to act on, or not
		// the holder's secret.
		switch out.outcome {
		case outNotFound:
			return one(s.mayBeFree(in), free(s))
		case outMismatch:
			return one(s.mayBeLive(in) && !s.mayRelease(in), s)
		}
	}
	switch in.op {
	case opAcquire:
		switch out.outcome {
		case outCreated:
			return one(s.mayBeFree(in) && out.token > s.maxToken && grantedWithin(in, out.expiresAt),
				lockState{holder: in.client, protected: in.protected, token: out.token, expLo: out.expiresAt, expHi: out.expiresAt, maxToken: out.token})
		case outReacquired:
			ok := s.mayBeLive(in) && s.holder == in.client && s.protected && in.protected && s.sameToken(out.token) &&
				!out.expiresAt.Before(s.expLo) && !out.expiresAt.After(s.expHi)
			next := s
			next.token, next.expLo, next.expHi, next.maxToken = out.token, out.expiresAt, out.expiresAt, max(s.maxToken, out.token)
			return one(ok, next)
		case outHeld:
			return one(s.mayBeLive(in) && !(s.holder == in.client && s.protected && in.protected), s)
		case outUnknown:
			states := []any{s}
			if s.mayBeFree(in) {
				states = append(states, lockState{holder: in.client, protected: in.protected,
					expLo: in.callAt.Truncate(time.Millisecond).Add(in.ttl), expHi: farFuture, maxToken: s.maxToken})
			}
			return states
		}
	case opRelease:
		switch out.outcome {
		case outReleased:
			next := free(s)
			next.maxToken = max(s.maxToken, out.token)
			return one(s.mayBeLive(in) && s.mayRelease(in) && s.sameToken(out.token), next)
		case outUnknown:
			states := []any{s}
			if s.mayBeLive(in) && s.mayRelease(in) {
				states = append(states, free(s))
			}
			return states
		}
	case opRefresh:
		switch out.outcome {
		case outRefreshed:
			next := s
			next.token, next.expLo, next.expHi, next.maxToken = out.token, out.expiresAt, out.expiresAt, max(s.maxToken, out.token)
			return one(s.mayBeLive(in) && s.mayRelease(in) && s.sameToken(out.token) && grantedWithin(in, out.expiresAt), next)
		case outUnknown:
			states := []any{s}
			if s.mayBeLive(in) && s.mayRelease(in) {
				next := s
				next.expLo, next.expHi = in.callAt.Truncate(time.Millisecond).Add(in.ttl), farFuture
				states = append(states, next)
			}
			return states
		}
	}
	return none
}

func lockModel() porcupine.Model {
	m := porcupine.NondeterministicModel{
		Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
			byName := map[string][]porcupine.Operation{}
			var order []string
			for _, op := range history {
				n := op.Input.(linInput).name
				if _, ok := byName[n]; !ok {
					order = append(order, n)
				}
				byName[n] = append(byName[n], op)
			}
			var out [][]porcupine.Operation
			for _, n := range order {
				out = append(out, byName[n])
			}
			return out
		},
		Init: func() []any { return []any{lockState{holder: -1}} },
		Step: func(state, input, output any) []any {
			return step(state.(lockState), input.(linInput), output.(linOutput))
		},
		DescribeOperation: func(input, output any) string {
			in, out := input.(linInput), output.(linOutput)
			return fmt.Sprintf("c%d %v %s -> %s tok=%d", in.client, in.op, in.name, outcomeNames[out.outcome], out.token)
		},
		DescribeState: func(state any) string {
			s := state.(lockState)
			return fmt.Sprintf("holder=c%d tok=%d exp=[%s,%s] max=%d", s.holder, s.token, s.expLo.Format("15:04:05.000"), s.expHi.Format("15:04:05.000"), s.maxToken)
		},
	}
	return m.ToModel()
}

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
}

// next picks an operation. Clients mostly act like real ones (release or
// refresh what they hold, acquire what they do not) with some strays mixed
// in, so that every outcome shows up often.
func (c *linClient) next() linInput {
	ttls := []time.Duration{time.Second, 2 * time.Second, 3 * time.Second}
	in := linInput{client: c.id, name: fmt.Sprint("lin-", c.rng.IntN(linNames)), ttl: ttls[c.rng.IntN(len(ttls))]}
	p := c.rng.IntN(10)
	switch held := c.holds[in.name]; {
	case held && p < 6, !held && p == 0:
		in.op = opRelease
	case held && p < 9, !held && p == 1:
		in.op = opRefresh
	default:
		in.op, in.protected = opAcquire, c.rng.IntN(4) != 0
	}
	return in
}

// do runs in through svc and reports the outcome.
func (c *linClient) do(ctx context.Context, svc *locklock.Service, id locklock.ID, in linInput) (linOutput, error) {
	var (
		l   locklock.Lock
		err error
		out linOutput
	)
	switch in.op {
	case opAcquire:
		req := locklock.AcquireRequest{ID: id, TTL: in.ttl}
		if in.protected {
			req.Secret = c.secret
		}
		var created bool
		l, created, err = svc.Acquire(ctx, req)
		out = linOutput{outcome: outReacquired, token: l.Token, expiresAt: l.ExpiresAt}
		if created {
			out.outcome = outCreated
		}
	case opRelease:
		l, err = svc.Release(ctx, id, c.secret)
		out = linOutput{outcome: outReleased, token: l.Token}
	case opRefresh:
		l, err = svc.Refresh(ctx, id, c.secret, in.ttl)
		out = linOutput{outcome: outRefreshed, token: l.Token, expiresAt: l.ExpiresAt}
	}
	switch {
	case err == nil:
	case errors.Is(err, locklock.ErrHeld):
		out = linOutput{outcome: outHeld}
	case errors.Is(err, locklock.ErrNotFound):
		out = linOutput{outcome: outNotFound}
	case errors.Is(err, locklock.ErrSecretMismatch):
		out = linOutput{outcome: outMismatch}
	case c.unknownOK && errors.Is(err, locklock.ErrUnavailable):
		out = linOutput{outcome: outUnknown}
	default:
		return out, err
	}
	switch out.outcome {
	case outCreated, outReacquired:
		c.holds[in.name] = true
	case outReleased, outNotFound, outMismatch, outUnknown:
		c.holds[in.name] = false
	}
	return out, nil
}

// testLinearizable checks the engine under test through one Service.
func testLinearizable(t *testing.T, h Harness) {
	e := newEnv(t, h)
	now := time.Now
	if e.clock != nil {
		now = e.clock.Now
	}
	advance := func() {
		if e.clock != nil {
			e.clock.Advance(linTick)
		} else {
			time.Sleep(linTick)
		}
	}
	var slack time.Duration
	if h.RealTime {
		slack = realTimeSlack
	}
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
	id := func(name string) locklock.ID {
		return locklock.ID{Namespace: locklock.DefaultNamespace, Kind: locklock.KindKey, Name: name}
	}
	round := 0
	advance := func() {
		if nemesis != nil {
			nemesis(round)
		}
		round++
		time.Sleep(linTick)
	}
	if slack == 0 {
		slack = realTimeSlack
	}
	checkLinearizable(t, services, time.Now, advance, slack, nemesis != nil, id)
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
			svc := services[c.id%len(services)]
			wg.Go(func() {
				in := c.next()
				in.slack = slack
				call := seq.Add(1)
				in.callAt = now()
				out, err := c.do(t.Context(), svc, id(in.name), in)
				in.returnAt = now()
				ret := seq.Add(1)
				if err != nil {
					t.Errorf("client %d: unexpected error %v", c.id, err)
					return
				}
				if out.outcome == outUnknown {
					// It may take effect at any later time, or never.
					in.returnAt, ret = farFuture, math.MaxInt64
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
	counts := map[outcome]int{}
	for _, op := range history {
		counts[op.Output.(linOutput).outcome]++
	}
	t.Logf("history: %d operations, outcomes %v", len(history), describeCounts(counts))
	if counts[outCreated] < 10 || counts[outHeld] < 10 {
		t.Errorf("history too tame to mean much: %v", describeCounts(counts))
	}
	res, info := porcupine.CheckOperationsVerbose(lockModel(), history, time.Minute)
	switch res {
	case porcupine.Ok:
	case porcupine.Unknown:
		t.Fatal("porcupine timed out before deciding")
	default:
		t.Errorf("history is not linearizable under the lock model (set LOCKLOCK_LIN_DUMP=<file> to write the failing partitions)")
		for _, part := range info.PartialLinearizationsOperations() {
			longest := slices.MaxFunc(part, func(a, b []porcupine.Operation) int { return len(a) - len(b) })
			for _, op := range longest[max(0, len(longest)-3):] {
				t.Logf("  end of the longest linearizable prefix: %s", lockModel().DescribeOperation(op.Input, op.Output))
			}
		}
		if f := os.Getenv("LOCKLOCK_LIN_DUMP"); f != "" {
			if err := dumpHistory(f, history, info); err != nil {
				t.Logf("dump history: %v", err)
			}
		}
	}
}

func (k opKind) String() string { return [...]string{"acquire", "release", "refresh"}[k] }

func describeCounts(c map[outcome]int) string {
	s := ""
	for o, name := range outcomeNames {
		s += fmt.Sprintf("%s=%d ", name, c[outcome(o)])
	}
	return s
}

// dumpHistory writes each partition's operations in call order, marking
// those in the longest linearizable prefix with L, for debugging a failure.
func dumpHistory(path string, history []porcupine.Operation, info porcupine.LinearizationInfo) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, part := range info.PartialLinearizationsOperations() {
		longest := slices.MaxFunc(part, func(a, b []porcupine.Operation) int { return len(a) - len(b) })
		if len(longest) == 0 {
			continue
		}
		name := longest[0].Input.(linInput).name
		inPrefix := map[int64]bool{}
		for _, op := range longest {
			inPrefix[op.Call] = true
		}
		fmt.Fprintf(f, "== %s: linearizable prefix of %d operations\n", name, len(longest))
		var ops []porcupine.Operation
		for _, op := range history {
			if op.Input.(linInput).name == name {
				ops = append(ops, op)
			}
		}
		slices.SortFunc(ops, func(a, b porcupine.Operation) int { return int(a.Call - b.Call) })
		for _, op := range ops {
			in, out := op.Input.(linInput), op.Output.(linOutput)
			mark := " "
			if inPrefix[op.Call] {
				mark = "L"
			}
			fmt.Fprintf(f, "%s [%5d,%5d] c%-2d %-8v protected=%-5v ttl=%v clock=[%s,%s] -> %-10s token=%d expires=%s\n",
				mark, op.Call, op.Return, in.client, in.op, in.protected, in.ttl,
				in.callAt.Format("05.000"), in.returnAt.Format("05.000"), outcomeNames[out.outcome], out.token, out.expiresAt.Format("05.000"))
		}
	}
	return nil
}
