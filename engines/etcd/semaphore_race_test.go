package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/locklock/locklock/engines/etcd"
	"github.com/locklock/locklock/internal/etcdtest"
	"github.com/locklock/locklock/internal/leakcheck"
	"github.com/locklock/locklock/locklock"
)

// semMonitor reads the semaphore again and again through an engine of its
// own (a fourth server) until stopped, and reports any reading whose live
// weights exceed the limit: each reading is one range read, the
// semaphore's state at one etcd revision.
func semMonitor(t *testing.T, e *etcd.Engine, id locklock.ID, limit int) (stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	var (
		wg       sync.WaitGroup
		readings int
	)
	wg.Go(func() {
		for ctx.Err() == nil {
			sem, err := e.GetSemaphore(ctx, id, time.Now())
			switch {
			case errors.Is(err, locklock.ErrSemaphoreNotFound), ctx.Err() != nil:
			case err != nil:
				t.Errorf("monitor: %v", err)
				return
			default:
				sum := 0
				for _, sl := range sem.Slots {
					sum += sl.Weight
					if sl.Limit != limit {
						t.Errorf("monitor: a slot with limit %d, want %d", sl.Limit, limit)
					}
				}
				if sum != sem.InUse || sum > limit {
					t.Errorf("monitor: %d slots weighing %d (in use %d) under limit %d", len(sem.Slots), sum, sem.InUse, limit)
				}
			}
			readings++
		}
	})
	return func() int { cancel(); wg.Wait(); return readings }
}

// TestSemaphoreRaceAcrossServers: 120 requests without wait on three
// servers (limit 7, weights 1–3) at once, then the same racers acquiring
// and releasing for two seconds. The live weights never exceed the limit —
// checked by a fourth server reading the semaphore throughout, by the
// racers' own count of what they hold, and at the end —, the one-shot
// round fills the semaphore as far as the refused weights allow, and
// every refusal is semaphore_full.
func TestSemaphoreRaceAcrossServers(t *testing.T) {
	const (
		limit   = 7
		racers  = 120
		churn   = 2 * time.Second
		servers = 3
	)
	endpoint := etcdtest.Endpoints(t)[0]
	svcs, engines := semServers(t, endpoint, servers+1)
	id := semID("race")
	stop := semMonitor(t, engines[servers], id, limit)
	weight := func(i int) int { return 1 + i%3 }

	// Round one: everyone at once, once.
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		mu      sync.Mutex
		granted []locklock.Slot
		refused = map[int]int{} // weight → how many
	)
	for i := range racers {
		wg.Go(func() {
			<-start
			sl, created, err := svcs[i%servers].AcquireSlot(t.Context(), locklock.SlotRequest{
				ID: id, Limit: limit, Weight: weight(i), TTL: time.Minute, Secret: fmt.Sprintf("racer-%d", i)})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil && created:
				granted = append(granted, sl)
			case errors.Is(err, locklock.ErrSemaphoreFull):
				refused[weight(i)]++
			default:
				t.Errorf("racer %d: created=%v err=%v", i, created, err)
			}
		})
	}
	close(start)
	wg.Wait()
	sum := 0
	for _, sl := range granted {
		sum += sl.Weight
	}
	t.Logf("round one: %d slots weighing %d granted, refused by weight %v", len(granted), sum, refused)
	if sum > limit {
		t.Fatalf("granted %d under limit %d", sum, limit)
	}
	// Nothing was released: a weight was refused only when it did not fit
	// beside what was then granted, which is at most what is granted now.
	for w := range refused {
		if sum+w <= limit {
			t.Errorf("weight %d refused although the grants sum to %d of %d", w, sum, limit)
		}
	}
	if sum < limit-3 {
		t.Errorf("grants sum to %d, want at least %d", sum, limit-3)
	}
	sem, err := svcs[0].GetSemaphore(t.Context(), locklock.SemaphoreRequest{ID: id})
	if err != nil || sem.InUse != sum || len(sem.Slots) != len(granted) {
		t.Fatalf("after round one: %+v %v, want %d slots weighing %d", sem, err, len(granted), sum)
	}
	for i := 1; i < len(sem.Slots); i++ {
		if sem.Slots[i].Token <= sem.Slots[i-1].Token {
			t.Fatalf("tokens out of order: %d after %d", sem.Slots[i].Token, sem.Slots[i-1].Token)
		}
	}
	for i, sl := range granted {
		if _, err := svcs[i%servers].ReleaseSlot(t.Context(), id, sl.ID, holderSecret(t, sl, racers)); err != nil {
			t.Fatal(err)
		}
	}

	// Round two: churn. held is what the racers hold by their own count:
	// raised after a grant, lowered before the release is sent, so never
	// above what etcd holds.
	var (
		held   atomic.Int64
		grants atomic.Int64
		fulls  atomic.Int64
		until  = time.Now().Add(churn)
	)
	for i := range racers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			svc := svcs[i%servers]
			for time.Now().Before(until) && !t.Failed() {
				w := 1 + rng.IntN(3)
				sl, _, err := svc.AcquireSlot(t.Context(), locklock.SlotRequest{ID: id, Limit: limit, Weight: w, TTL: time.Minute})
				if errors.Is(err, locklock.ErrSemaphoreFull) {
					fulls.Add(1)
					time.Sleep(time.Duration(rng.IntN(3)) * time.Millisecond)
					continue
				}
				if err != nil {
					t.Errorf("churn, racer %d: %v", i, err)
					return
				}
				grants.Add(1)
				if h := held.Add(int64(w)); h > limit {
					t.Errorf("racers hold %d under limit %d", h, limit)
				}
				time.Sleep(time.Duration(rng.IntN(4)) * time.Millisecond)
				held.Add(-int64(w))
				// Released through another server than the one it was
				// taken through.
				if _, err := svcs[(i+1)%servers].ReleaseSlot(t.Context(), id, sl.ID, ""); err != nil {
					t.Errorf("churn, racer %d, release: %v", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	readings := stop()
	t.Logf("churn: %d grants, %d refusals; the monitor read the semaphore %d times", grants.Load(), fulls.Load(), readings)
	if grants.Load() < 3*limit || readings < 10 {
		t.Errorf("%d grants and %d readings: the churn did not churn", grants.Load(), readings)
	}
	if _, err := svcs[1].GetSemaphore(t.Context(), locklock.SemaphoreRequest{ID: id}); !errors.Is(err, locklock.ErrSemaphoreNotFound) {
		t.Errorf("after every slot was released: %v", err)
	}
}

// holderSecret finds the racer secret that protects sl (the racers' secrets
// are racer-0 … racer-n-1).
func holderSecret(t *testing.T, sl locklock.Slot, n int) string {
	t.Helper()
	for i := range n {
		if s := fmt.Sprintf("racer-%d", i); sl.Guard.Admits(s) {
			return s
		}
	}
	t.Fatalf("no racer's secret protects slot %s", sl.ID)
	return ""
}

// TestSlotLeasesRevoked: slot keys go on the shared leases, and the lease
// accounting counts them like lock keys: slots acquired through one server
// and released, or refreshed and released, through the other leave no
// lease behind; a slot still held keeps its lease.
func TestSlotLeasesRevoked(t *testing.T) {
	t.Parallel() // on an etcd of its own, like the lease tests
	servers := newTwoServers(t, false)
	sa, sb := locklock.NewService(servers.a), locklock.NewService(servers.b)
	id := semID("leases")
	kept := mustSlot(t, sa, locklock.SlotRequest{ID: id, Limit: 10, Secret: "k", TTL: time.Hour})
	for i := range 6 {
		a, b := sa, sb
		if i%2 == 1 {
			a, b = sb, sa
		}
		sl := mustSlot(t, a, locklock.SlotRequest{ID: id, Limit: 10, Secret: "s", TTL: time.Duration(20+i) * time.Minute})
		releaser := b
		if i/2%2 == 1 {
			if _, err := b.PatchSlot(t.Context(), sl.ID, locklock.PatchRequest{ID: id, Secret: "s", TTL: time.Duration(40+i) * time.Minute}); err != nil {
				t.Fatal(err)
			}
			releaser = a
		}
		if _, err := releaser.ReleaseSlot(t.Context(), id, sl.ID, "s"); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		leases := servers.census.leases(t)
		if len(leases) == 1 && leases[0].keys == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd still holds %+v, want one lease with the kept slot", leases)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := sb.GetSlot(t.Context(), id, kept.ID); err != nil {
		t.Fatalf("the kept slot: %v", err)
	}
	if _, err := sb.ReleaseSlot(t.Context(), id, kept.ID, "k"); err != nil {
		t.Fatal(err)
	}
	servers.census.waitNoLeases(t, 15*time.Second)
}

// TestSlotSecretsAtRest: slot secrets live in etcd only as salted hashes,
// through acquires, retries, refreshes and releases.
func TestSlotSecretsAtRest(t *testing.T) {
	endpoint := etcdtest.Endpoints(t)[0]
	client := etcdtest.Client(t, endpoint)
	svcs, engines := semServers(t, endpoint, 1)
	svc := svcs[0]
	first := revision(t, client) + 1
	id := semID("at-rest")
	secrets := []string{"slot-secret-one-" + fmt.Sprint(time.Now().UnixNano()), "slot-secret-two-" + fmt.Sprint(time.Now().UnixNano())}
	for _, secret := range secrets {
		sl := mustSlot(t, svc, locklock.SlotRequest{ID: id, Limit: 2, Secret: secret})
		if _, created, err := svc.AcquireSlot(t.Context(), locklock.SlotRequest{ID: id, Limit: 2, Secret: secret}); err != nil || created {
			t.Fatalf("retry: created=%v %v", created, err)
		}
		if _, err := svc.PatchSlot(t.Context(), sl.ID, locklock.PatchRequest{ID: id, Secret: secret, TTL: time.Hour}); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.ReleaseSlot(t.Context(), id, sl.ID, secret+"-wrong"); !errors.Is(err, locklock.ErrSecretMismatch) {
			t.Fatal(err)
		}
	}
	sem, err := svc.GetSemaphore(t.Context(), locklock.SemaphoreRequest{ID: id})
	if err != nil || len(sem.Slots) != 2 {
		t.Fatalf("%+v %v", sem, err)
	}
	for _, sl := range sem.Slots {
		for _, secret := range secrets {
			if sl.Guard.Admits(secret) {
				if _, err := svc.ReleaseSlot(t.Context(), id, sl.ID, secret); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	forms := map[string][]byte{}
	for i, secret := range secrets {
		for name, b := range leakcheck.Forms(secret) {
			forms[fmt.Sprintf("%s of secret %d", name, i)] = b
		}
	}
	leaks, guards := keyspaceLeaks(t, client, first, engines[0].Prefix(), forms)
	if len(leaks) > 0 {
		t.Errorf("secrets in etcd:\n%q", leaks)
	}
	// The scan must have seen the protected slots' records, or it proves
	// nothing.
	if guards < 2 {
		t.Errorf("saw %d protected records, want at least the 2 slots", guards)
	}
}
