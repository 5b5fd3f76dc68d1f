package etcd_test

import (
	"errors"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
)

// TestSlotChangesAfterAnotherServer: a server releases and refreshes the
// slots it acquired without reading them first (it remembers what it
// wrote); what it remembers is only a guess, so a slot changed or ended
// through another server meanwhile is judged as it is now.
func TestSlotChangesAfterAnotherServer(t *testing.T) {
	svcs, _ := threeServers(t)
	a, b := svcs[0], svcs[1]
	ctx := t.Context()
	id := locklock.ID{Namespace: "public", Kind: locklock.KindKey, Name: "held-slots"}
	acquire := func(secret string) locklock.Slot {
		t.Helper()
		sl, _, err := a.AcquireSlot(ctx, locklock.SlotRequest{ID: id, Limit: 5, Secret: secret, TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		return sl
	}

	// Relabelled through B: A's release still works, and returns the slot
	// as B left it.
	first := acquire("s1")
	holder := "moved-by-b"
	if _, err := b.PatchSlot(ctx, first.ID, locklock.PatchRequest{ID: id, Secret: "s1", Holder: &holder}); err != nil {
		t.Fatal(err)
	}
	got, err := a.ReleaseSlot(ctx, id, first.ID, "s1")
	if err != nil || got.Holder != holder {
		t.Fatalf("release through A after B's patch: %+v, %v; want the slot with holder %q", got, err, holder)
	}

	// A wrong secret is refused, the right one then releases.
	second := acquire("s2")
	if _, err := a.ReleaseSlot(ctx, id, second.ID, "wrong"); !errors.Is(err, locklock.ErrSecretMismatch) {
		t.Fatalf("wrong secret: %v, want ErrSecretMismatch", err)
	}
	if _, err := a.PatchSlot(ctx, second.ID, locklock.PatchRequest{ID: id, Secret: "s2", TTL: 2 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.ReleaseSlot(ctx, id, second.ID, "s2"); err != nil {
		t.Fatalf("release after a refresh through A: %v", err)
	}

	// Released through B: A finds it gone, and so does a refresh.
	third := acquire("s3")
	if _, err := b.ReleaseSlot(ctx, id, third.ID, "s3"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.ReleaseSlot(ctx, id, third.ID, "s3"); !errors.Is(err, locklock.ErrSlotNotFound) {
		t.Fatalf("release through A of a slot B released: %v, want ErrSlotNotFound", err)
	}
	fourth := acquire("s4")
	if _, err := b.ReleaseSlot(ctx, id, fourth.ID, "s4"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.PatchSlot(ctx, fourth.ID, locklock.PatchRequest{ID: id, Secret: "s4"}); !errors.Is(err, locklock.ErrSlotNotFound) {
		t.Fatalf("refresh through A of a slot B released: %v, want ErrSlotNotFound", err)
	}
	if sem, err := a.GetSemaphore(ctx, locklock.SemaphoreRequest{ID: id}); !errors.Is(err, locklock.ErrSemaphoreNotFound) {
		t.Errorf("semaphore after every release: %+v, %v; want none", sem, err)
	}
}
