package conformance

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/locklock/locklock/internal/semmodel"
	"github.com/locklock/locklock/locklock"
)

// The semaphores' linearizability check records a concurrent history of
// acquires (of varied weights, now and then with another limit), releases,
// refreshes and reads of a few semaphores through Services, with time
// moving so that slots expire, and asks porcupine whether some sequential
// order of the operations, each taking effect at one instant inside its
// call, explains every answer under the model of internal/semmodel: limit,
// weights, expiry, retry by secret, rising tokens.

const (
	semLinClients = 24
	semLinNames   = 4
	semLinRounds  = 50 // each client runs one operation per round
)

// semLinLimit is the usual limit of semaphore n: small, since the model's
// work grows with the number of live slots.
func semLinLimit(n int) int { return 2 + n%3 }

func semLinName(n int) string { return fmt.Sprint("sem-", n) }

// semLinUsual is the usual limit of the semaphore named name.
func semLinUsual(name string) int {
	n, _ := strconv.Atoi(strings.TrimPrefix(name, "sem-"))
	return semLinLimit(n)
}

// semLinClient is one client of the history: its own random choices,
// secret, and the slots it believes it holds.
type semLinClient struct {
	id     int
	rng    *rand.Rand
	secret string
	holds  map[string]string // slot id → semaphore name
	// odd are the held slots taken with another limit than the
	// semaphore's usual one: released soon, never refreshed, so that
	// the semaphore returns to its usual limit.
	odd map[string]bool
	// unknownOK and retired as for linClient.
	unknownOK bool
	retired   bool
}

// slotPool remembers recent slots of every semaphore, so that clients now
// and then release or refresh one that is not theirs (or is gone).
type slotPool struct {
	mu  sync.Mutex
	ids map[string][]string
}

func (p *slotPool) add(name, id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ids := append(p.ids[name], id)
	p.ids[name] = ids[max(0, len(ids)-8):]
}

func (p *slotPool) pick(rng *rand.Rand, name string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	ids := p.ids[name]
	if len(ids) == 0 {
		return ""
	}
	return ids[rng.IntN(len(ids))]
}

// next picks an operation. Clients mostly act like real ones (release or
// refresh what they hold, acquire otherwise) with strays mixed in, so that
// every outcome shows up.
func (c *semLinClient) next(pool *slotPool) semmodel.Input {
	held := slices.Sorted(maps.Keys(c.holds)) // map order is random; the choices should not be
	n := c.rng.IntN(semLinNames)
	if len(held) > 0 && c.rng.IntN(10) < 7 {
		// Mostly tend to what it holds, as a real client does.
		n, _ = strconv.Atoi(strings.TrimPrefix(c.holds[held[c.rng.IntN(len(held))]], "sem-"))
	}
	ttls := []time.Duration{time.Second, 2 * time.Second, 3 * time.Second}
	in := semmodel.Input{Client: c.id, Name: semLinName(n), TTL: ttls[c.rng.IntN(len(ttls))]}
	var mine []string
	for _, id := range held {
		if c.holds[id] == in.Name {
			mine = append(mine, id)
		}
	}
	p := c.rng.IntN(20)
	switch {
	case p < 2:
		in.Kind = semmodel.Read
		return in
	case len(mine) > 0 && p < 10:
		in.Kind, in.Slot = semmodel.Release, mine[c.rng.IntN(len(mine))]
		return in
	case len(mine) > 0 && p < 15:
		in.Kind, in.Slot = semmodel.Refresh, mine[c.rng.IntN(len(mine))]
		if c.odd[in.Slot] {
			in.Kind = semmodel.Release
		}
		return in
	case len(mine) == 0 && p < 4:
		if in.Slot = pool.pick(c.rng, in.Name); in.Slot != "" {
			in.Kind = semmodel.Release
			if p == 3 {
				in.Kind = semmodel.Refresh
			}
			return in
		}
	}
	limit := semLinLimit(n)
	in.Kind, in.Limit, in.Protected = semmodel.Acquire, limit, c.rng.IntN(4) != 0
	if c.rng.IntN(20) == 0 {
		// limit_mismatch, or a semaphore of another limit for a while.
		in.Limit, in.TTL = limit+1, time.Second
	}
	switch q := c.rng.IntN(10); {
	case q < 6:
		in.Weight = 1
	case q < 9:
		in.Weight = 2
	default:
		in.Weight = in.Limit
	}
	return in
}

// slotOut is a slot as the model sees an answer.
func slotOut(sl locklock.Slot) semmodel.Slot {
	client := -1
	if s, ok := strings.CutPrefix(sl.Holder, "client-"); ok {
		if n, err := strconv.Atoi(s); err == nil {
			client = n
		}
	}
	return semmodel.Slot{ID: sl.ID, Client: client, Token: sl.Token, Weight: sl.Weight, ExpiresAt: sl.ExpiresAt}
}

// do runs in through svc and reports the outcome.
func (c *semLinClient) do(ctx context.Context, svc *locklock.Service, id locklock.ID, in semmodel.Input) (semmodel.Output, error) {
	var (
		out semmodel.Output
		err error
	)
	switch in.Kind {
	case semmodel.Acquire:
		req := locklock.SlotRequest{ID: id, Limit: in.Limit, Weight: in.Weight, TTL: in.TTL, Holder: fmt.Sprint("client-", c.id)}
		if in.Protected {
			req.Secret = c.secret
		}
		var (
			sl      locklock.Slot
			created bool
		)
		sl, created, err = svc.AcquireSlot(ctx, req)
		out = semmodel.Output{Outcome: semmodel.Reacquired, Slot: slotOut(sl)}
		if created {
			out.Outcome = semmodel.Created
		}
	case semmodel.Release:
		var sl locklock.Slot
		sl, err = svc.ReleaseSlot(ctx, id, in.Slot, c.secret)
		out = semmodel.Output{Outcome: semmodel.Released, Slot: slotOut(sl)}
	case semmodel.Refresh:
		var sl locklock.Slot
		sl, err = svc.PatchSlot(ctx, in.Slot, locklock.PatchRequest{ID: id, Secret: c.secret, TTL: in.TTL})
		out = semmodel.Output{Outcome: semmodel.Refreshed, Slot: slotOut(sl)}
	case semmodel.Read:
		var sem locklock.Semaphore
		sem, err = svc.GetSemaphore(ctx, locklock.SemaphoreRequest{ID: id})
		out = semmodel.Output{Outcome: semmodel.Found, Limit: sem.Limit, InUse: sem.InUse}
		for _, sl := range sem.Slots {
			out.Slots = append(out.Slots, slotOut(sl))
		}
	}
	var (
		full     *locklock.FullError
		mismatch *locklock.LimitMismatchError
	)
	switch {
	case err == nil:
	case errors.As(err, &full):
		out = semmodel.Output{Outcome: semmodel.Full, Limit: full.Limit, InUse: full.InUse, FreesAt: full.FreesAt}
	case errors.As(err, &mismatch):
		out = semmodel.Output{Outcome: semmodel.LimitMismatch, Limit: mismatch.Limit}
	case errors.Is(err, locklock.ErrSlotNotFound), errors.Is(err, locklock.ErrSemaphoreNotFound):
		out = semmodel.Output{Outcome: semmodel.NotFound}
	case errors.Is(err, locklock.ErrSecretMismatch):
		out = semmodel.Output{Outcome: semmodel.Mismatch}
	case c.unknownOK && errors.Is(err, locklock.ErrUnavailable):
		out = semmodel.Output{Outcome: semmodel.Unknown}
	default:
		return out, err
	}
	switch out.Outcome {
	case semmodel.Created, semmodel.Reacquired:
		c.holds[out.Slot.ID] = in.Name
		if out.Outcome == semmodel.Created && in.Limit != semLinUsual(in.Name) {
			c.odd[out.Slot.ID] = true
		}
	case semmodel.Released, semmodel.NotFound, semmodel.Mismatch:
		delete(c.holds, in.Slot)
		delete(c.odd, in.Slot)
	}
	return out, nil
}

// testSemaphoresLinearizable checks the engine under test through one
// Service.
func testSemaphoresLinearizable(t *testing.T, h Harness) {
	e := newEnv(t, h)
	now, advance, slack := e.linTime()
	checkSemaphoresLinearizable(t, []*locklock.Service{e.svc}, now, advance, slack, false, e.id)
}

// CheckSemaphoresLinearizable records a history of semaphore operations
// through several Services on one shared store — as several servers would
// use it — and checks it like the semaphores' Linearizable sub-test does,
// as CheckLinearizable does for locks (same clients' spread over services,
// real clocks, nemesis and slack).
func CheckSemaphoresLinearizable(t *testing.T, services []*locklock.Service, nemesis func(round int), slack time.Duration) {
	t.Helper()
	advance, slack := sharedLinTime(nemesis, slack)
	checkSemaphoresLinearizable(t, services, time.Now, advance, slack, nemesis != nil, sharedLinID)
}

// SemaphoresLinearizableRounds is how many rounds
// CheckSemaphoresLinearizable records.
const SemaphoresLinearizableRounds = semLinRounds

// checkSemaphoresLinearizable records the history in rounds, as
// checkLinearizable does, and checks it.
func checkSemaphoresLinearizable(t *testing.T, services []*locklock.Service, now func() time.Time, advance func(), slack time.Duration, unknownOK bool, id func(string) locklock.ID) {
	t.Helper()
	var (
		mu      sync.Mutex
		history []porcupine.Operation
		seq     atomic.Int64 // porcupine's real-time order of calls and returns
		clients []*semLinClient
		pool    = &slotPool{ids: map[string][]string{}}
	)
	for c := range semLinClients {
		clients = append(clients, &semLinClient{id: c, rng: rand.New(rand.NewPCG(uint64(c), 43)), secret: fmt.Sprint("client-", c), holds: map[string]string{}, odd: map[string]bool{}, unknownOK: unknownOK})
	}
	for range semLinRounds {
		var wg sync.WaitGroup
		for _, c := range clients {
			if c.retired {
				continue
			}
			svc := services[c.id%len(services)]
			wg.Go(func() {
				in := c.next(pool)
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
				switch out.Outcome {
				case semmodel.Unknown:
					// It may take effect at any later time, or never.
					in.ReturnAt, ret = semmodel.FarFuture, math.MaxInt64
					c.retired = true // read after wg.Wait
				case semmodel.Created:
					pool.add(in.Name, out.Slot.ID)
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
	counts := map[semmodel.Outcome]int{}
	for _, op := range history {
		counts[op.Output.(semmodel.Output).Outcome]++
	}
	retired := 0
	for _, c := range clients {
		if c.retired {
			retired++
		}
	}
	t.Logf("history: %d operations, outcomes %v; %d of %d clients retired after an unknown outcome", len(history), describeSemCounts(counts), retired, len(clients))
	if counts[semmodel.Created] < 10 || counts[semmodel.Full] < 10 {
		t.Errorf("history too tame to mean much: %v", describeSemCounts(counts))
	}
	judge(t, semmodel.Model(), history, "semaphore", semmodel.DumpOperations)
}

func describeSemCounts(c map[semmodel.Outcome]int) string {
	s := ""
	for o := range semmodel.Outcomes {
		s += fmt.Sprintf("%s=%d ", semmodel.Outcome(o), c[semmodel.Outcome(o)])
	}
	return s
}
