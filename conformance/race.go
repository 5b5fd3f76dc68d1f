package conformance

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
)

// testOneWinner races 64 goroutines for one free lock, round after round:
// exactly one may win each round, and each round's token beats the last.
func testOneWinner(t *testing.T, h Harness) {
	e := newEnv(t, h)
	CheckOneWinner(t, []*locklock.Service{e.svc}, e.id("contended"), 30)
}

// CheckOneWinner races 64 acquires of id, spread over services (as over
// several servers), round after round: exactly one may win each round, and
// each round's token beats the last. The winner then releases through
// another service than it won on.
func CheckOneWinner(t *testing.T, services []*locklock.Service, id locklock.ID, rounds int) {
	t.Helper()
	const racers = 64
	var last uint64
	for round := range rounds {
		var (
			wg      sync.WaitGroup
			start   = make(chan struct{})
			mu      sync.Mutex
			winners []int
			token   uint64
		)
		for r := range racers {
			wg.Go(func() {
				<-start
				svc := services[r%len(services)]
				l, created, err := svc.Acquire(t.Context(), locklock.AcquireRequest{ID: id, Secret: fmt.Sprint("racer-", r), TTL: time.Minute})
				switch {
				case err == nil && created:
					mu.Lock()
					winners = append(winners, r)
					token = l.Token
					mu.Unlock()
				case errors.Is(err, locklock.ErrHeld):
				default:
					t.Errorf("racer %d: created=%v err=%v", r, created, err)
				}
			})
		}
		close(start)
		wg.Wait()
		if len(winners) != 1 {
			t.Fatalf("round %d: %d winners %v, want exactly 1", round, len(winners), winners)
		}
		if token <= last {
			t.Fatalf("round %d: token %d, want > %d", round, token, last)
		}
		last = token
		releaser := services[(winners[0]+1)%len(services)]
		if _, err := releaser.Release(t.Context(), id, fmt.Sprint("racer-", winners[0])); err != nil {
			t.Fatalf("round %d: winner's release: %v", round, err)
		}
	}
}

// testContextCancelled: an engine given a done context applies nothing.
func testContextCancelled(t *testing.T, h Harness) {
	e := newEnv(t, h)
	held := e.acquire(locklock.AcquireRequest{ID: e.id("held"), Secret: "s"})
	ctx, cancel := context.WithCancel(e.ctx())
	cancel()
	now := time.Now()
	if e.clock != nil {
		now = e.clock.Now()
	}
	fresh := locklock.Lock{ID: e.id("fresh"), AcquiredAt: now, ExpiresAt: now.Add(time.Hour)}
	allow := func(locklock.Lock) error { return nil }
	steps := map[string]func() error{
		"TryAcquire": func() error { _, err := e.engine.TryAcquire(ctx, fresh, now); return err },
		"Get":        func() error { _, err := e.engine.Get(ctx, held.ID, now); return err },
		"Release":    func() error { _, err := e.engine.Release(ctx, held.ID, now, allow); return err },
		"Refresh": func() error {
			_, err := e.engine.Refresh(ctx, held.ID, now, locklock.Change{ExpiresAt: now.Add(48 * time.Hour)}, allow)
			return err
		},
		"List": func() error {
			_, err := e.engine.List(ctx, locklock.ListQuery{Namespace: locklock.DefaultNamespace, Kind: locklock.KindKey, Limit: 10}, now)
			return err
		},
	}
	for name, step := range steps {
		if err := step(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: %v, want context.Canceled", name, err)
		}
	}
	if _, err := e.svc.Get(e.ctx(), fresh.ID); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("a cancelled TryAcquire left a lock: %v", err)
	}
	got, err := e.svc.Get(e.ctx(), held.ID)
	if err != nil || !sameGrant(got, held) {
		t.Errorf("cancelled release/refresh changed the held lock: %+v, %v", got, err)
	}
}
