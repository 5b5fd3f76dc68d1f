package locklock_test

import (
	"testing"

	"github.com/locklock/locklock/engines/memory"
	"github.com/locklock/locklock/locklock"
)

// TestServiceCountsGatedEvents: with no stream open the memory engine
// builds no events (its EventGate says nobody can ask for them), yet a
// stream opened later starts after them all, so no position handed out
// before could resume across them.
func TestServiceCountsGatedEvents(t *testing.T) {
	svc := locklock.NewService(memory.New())
	id := locklock.ID{Namespace: "public", Kind: locklock.KindKey, Name: "x"}
	for range 3 {
		if _, _, err := svc.Acquire(t.Context(), locklock.AcquireRequest{ID: id}); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.Release(t.Context(), id, ""); err != nil {
			t.Fatal(err)
		}
	}
	w, err := svc.Watch(t.Context(), locklock.WatchRequest{Filter: locklock.Filter{Namespace: "public"}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if w.At.Seq != 6 {
		t.Errorf("a stream opened after 6 events starts at %v, want seq 6", w.At)
	}
	if _, _, err := svc.Acquire(t.Context(), locklock.AcquireRequest{ID: id}); err != nil {
		t.Fatal(err)
	}
	evs, err := w.Next(t.Context())
	if err != nil || len(evs) != 1 || evs[0].Pos.Seq != 7 {
		t.Fatalf("the first event after them: %v, %v; want seq 7", evs, err)
	}
}
