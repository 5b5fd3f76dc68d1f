package conformance

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
)

const raceLimit = 7

// checkInvariant reads the semaphore and reports whether its live weights
// sum to its in-use count and stay within the limit.
func checkInvariant(ctx context.Context, svc *locklock.Service, id locklock.ID) error {
	sem, err := svc.GetSemaphore(ctx, locklock.SemaphoreRequest{ID: id})
	switch {
	case errors.Is(err, locklock.ErrSemaphoreNotFound):
		return nil
	case err != nil:
		return err
	}
	sum := 0
	for _, sl := range sem.Slots {
		sum += sl.Weight
		if sl.Limit != sem.Limit {
			return fmt.Errorf("slot %+v under limit %d in a semaphore of limit %d", sl, sl.Limit, sem.Limit)
		}
	}
	if sum != sem.InUse || sem.InUse > sem.Limit || sem.Limit != raceLimit {
		return fmt.Errorf("semaphore read with limit %d, in use %d, slots weighing %d", sem.Limit, sem.InUse, sum)
	}
	return nil
}

// sample checks the invariant over and over until stop is closed.
func sample(t *testing.T, svc *locklock.Service, id locklock.ID, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := checkInvariant(t.Context(), svc, id); err != nil {
				t.Errorf("invariant broken: %v", err)
				return
			}
		}
	})
	return &wg
}

// testSemaphoreRace races 128 acquires of mixed weights (1–3, no wait) for
// one semaphore of limit 7, through two Services (as two servers), round
// after round. The sum of the granted weights never exceeds the limit —
// checked by concurrent reads and afterwards — and every refusal was
// deserved: once the round is over the slots in use leave less room than
// each refused weight (so at least limit minus the largest weight is
// granted).
func testSemaphoreRace(t *testing.T, h Harness) {
	e := newEnv(t, h)
	services := []*locklock.Service{e.svc, e.newService()}
	id := e.id("contended")
	const racers = 128
	var last uint64
	for round := range 4 {
		var (
			wg      sync.WaitGroup
			start   = make(chan struct{})
			mu      sync.Mutex
			granted []locklock.Slot
			owners  []int // the racer of each granted slot
			refused []int
		)
		stop := make(chan struct{})
		sampler := sample(t, e.svc, id, stop)
		for r := range racers {
			wg.Go(func() {
				<-start
				w := 1 + r%3
				sl, created, err := services[r%2].AcquireSlot(t.Context(), locklock.SlotRequest{
					ID: id, Limit: raceLimit, Weight: w, Secret: fmt.Sprint("racer-", round, "-", r), TTL: time.Hour,
				})
				var full *locklock.FullError
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil && created && sl.Weight == w:
					granted, owners = append(granted, sl), append(owners, r)
				case errors.As(err, &full):
					if full.Limit != raceLimit || full.InUse > raceLimit || full.InUse+w <= raceLimit || full.Weight != w {
						t.Errorf("racer %d (weight %d): a refusal that does not add up: %+v", r, w, full)
					}
					refused = append(refused, w)
				default:
					t.Errorf("racer %d: %+v created=%v err=%v", r, sl, created, err)
				}
			})
		}
		close(start)
		wg.Wait()
		close(stop)
		sampler.Wait()
		if t.Failed() {
			return
		}

		sum := 0
		seen := map[uint64]bool{}
		for _, sl := range granted {
			sum += sl.Weight
			if sl.Token <= last || seen[sl.Token] {
				t.Errorf("round %d: token %d repeated or not above the last round's %d", round, sl.Token, last)
			}
			seen[sl.Token] = true
		}
		if sum > raceLimit {
			t.Fatalf("round %d: granted weights sum to %d, over the limit %d", round, sum, raceLimit)
		}
		for _, w := range refused {
			if sum+w <= raceLimit {
				t.Errorf("round %d: weight %d refused, yet only %d of %d ended up in use", round, w, sum, raceLimit)
			}
		}
		if sum < raceLimit-3 {
			t.Errorf("round %d: only %d granted of limit %d", round, sum, raceLimit)
		}
		sem := e.semaphore(id)
		if sem.InUse != sum || len(sem.Slots) != len(granted) {
			t.Fatalf("round %d: semaphore in use %d with %d slots; the racers were granted %d in %d", round, sem.InUse, len(sem.Slots), sum, len(granted))
		}
		for i, sl := range granted {
			last = max(last, sl.Token)
			if _, err := services[(i+1)%2].ReleaseSlot(t.Context(), id, sl.ID, fmt.Sprint("racer-", round, "-", owners[i])); err != nil {
				t.Fatalf("round %d: release: %v", round, err)
			}
		}
	}
}

// testSemaphoreChurn: workers take and release slots of mixed weights in a
// loop — some waiting, most not — while the invariant is checked
// continuously: by reads of the semaphore, and by the workers themselves,
// who count what they hold (added after a grant, taken off before the
// release, so their count never exceeds what the engine holds).
func testSemaphoreChurn(t *testing.T, h Harness) {
	e := newEnv(t, h)
	id := e.id("churn")
	const workers, loops = 16, 40
	// A real-time bound, so that a lost wake-up fails instead of hanging
	// on the manual clock.
	ctx, cancel := context.WithTimeout(e.ctx(), 60*time.Second)
	defer cancel()
	var (
		held             atomic.Int64
		grants, refusals atomic.Int64
		wg               sync.WaitGroup
	)
	stop := make(chan struct{})
	sampler := sample(t, e.svc, id, stop)
	for wk := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(wk), 7))
			for i := range loops {
				w := 1 + rng.IntN(3)
				req := locklock.SlotRequest{ID: id, Limit: raceLimit, Weight: w, Secret: fmt.Sprint("w", wk), TTL: time.Hour}
				if rng.IntN(4) == 0 {
					req.Wait = 30 * time.Second
				}
				sl, created, err := e.svc.AcquireSlot(ctx, req)
				switch {
				case errors.Is(err, locklock.ErrSemaphoreFull):
					refusals.Add(1)
					continue
				case err != nil || !created:
					t.Errorf("worker %d loop %d: created=%v err=%v", wk, i, created, err)
					return
				}
				grants.Add(1)
				if n := held.Add(int64(w)); n > raceLimit {
					t.Errorf("worker %d: %d units held at once, over the limit %d", wk, n, raceLimit)
				}
				if rng.IntN(2) == 0 {
					time.Sleep(time.Duration(rng.IntN(200)) * time.Microsecond)
				}
				held.Add(-int64(w))
				if _, err := e.svc.ReleaseSlot(ctx, id, sl.ID, fmt.Sprint("w", wk)); err != nil {
					t.Errorf("worker %d: release: %v", wk, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	sampler.Wait()
	t.Logf("%d grants, %d refusals", grants.Load(), refusals.Load())
	if grants.Load() < workers || refusals.Load() == 0 {
		t.Errorf("churn too tame to mean much: %d grants, %d refusals", grants.Load(), refusals.Load())
	}
	if _, err := e.svc.GetSemaphore(e.ctx(), locklock.SemaphoreRequest{ID: id}); !errors.Is(err, locklock.ErrSemaphoreNotFound) {
		t.Errorf("after every worker released: %v, want no semaphore", err)
	}
	if n := e.svc.Waiters(); n != 0 {
		t.Errorf("%d waiters left", n)
	}
}
