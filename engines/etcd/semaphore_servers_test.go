package etcd_test

import (
	"testing"
	"time"

	"github.com/locklock/locklock/conformance"
	"github.com/locklock/locklock/locklock"
)

// TestThreeServersSemaphoresLinearizable: porcupine, with the semaphore
// model, over a history of slot acquires, releases, refreshes and reads
// recorded through all three servers on one etcd.
func TestThreeServersSemaphoresLinearizable(t *testing.T) {
	svcs, _ := threeServers(t)
	conformance.CheckSemaphoresLinearizable(t, svcs, nil, 0)
}

// TestSlotWaiterWakesAcrossServers: a waiter for room in a full semaphore
// on one server wakes when a slot is released, revoked, or expires through
// another — long before its own poll would have looked again — because it
// watches the semaphore's range from the revision it was judged full at.
func TestSlotWaiterWakesAcrossServers(t *testing.T) {
	const poll = time.Minute // so that only the etcd watch can wake a waiter in time
	svcs, engines := threeServers(t, locklock.WithWaitPoll(poll))
	a, b := svcs[0], svcs[1]
	for _, end := range []string{"release", "revoke", "expiry"} {
		t.Run(end, func(t *testing.T) {
			id := locklock.ID{Namespace: "public", Kind: locklock.KindKey, Name: "wake-on-" + end}
			ttl := time.Hour
			if end == "expiry" {
				ttl = 2 * time.Second
			}
			held, _, err := a.AcquireSlot(t.Context(), locklock.SlotRequest{ID: id, Limit: 1, Secret: "a", TTL: ttl})
			if err != nil {
				t.Fatal(err)
			}
			watching := engines[1].watches.Load()
			before := b.Waiters()
			got := make(chan error, 1)
			go func() {
				_, _, err := b.AcquireSlot(t.Context(), locklock.SlotRequest{ID: id, Limit: 1, Secret: "b", Wait: 30 * time.Second, TTL: time.Hour})
				got <- err
			}()
			for b.Waiters() <= before {
				time.Sleep(time.Millisecond)
			}
			engines[1].waitWatching(t, watching) // it has seen the semaphore full
			start := time.Now()
			switch end {
			case "release":
				_, err = a.ReleaseSlot(t.Context(), id, held.ID, "a")
			case "revoke":
				_, err = a.RevokeSlot(t.Context(), id, held.ID)
			}
			if err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-got:
				if err != nil {
					t.Fatalf("waiter on B: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Fatalf("waiter on B still waiting 15 s after the %s on A (its poll is %v)", end, poll)
			}
			if d := time.Since(start); end != "expiry" && d > 5*time.Second {
				t.Errorf("waiter on B woke %v after the %s on A", d, end)
			}
		})
	}
}
