package badger

import (
	"bytes"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/locklock/locklock/internal/leakcheck"
	"github.com/locklock/locklock/locklock"
)

func TestSlotRecordRoundTrip(t *testing.T) {
	id := testID("r")
	for _, s := range []locklock.Slot{
		{Limit: 1, Weight: 1},
		{Limit: locklock.MaxSemaphoreLimit, Weight: locklock.MaxSemaphoreLimit, Token: 1<<64 - 1, Guard: locklock.NewGuard("pw"),
			Holder: "host:1", Metadata: map[string]string{"b": "2", "a": "", "c": "3"}},
		{Limit: 3, Weight: 2, AcquiredAt: time.UnixMilli(-1), ExpiresAt: time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)},
	} {
		s.Semaphore, s.ID = id, locklock.NewSlotID()
		s = normalizeSlot(s)
		got, err := decodeSlot(id, s.ID, encodeSlot(s))
		if err != nil || !sameSlot(got, s) {
			t.Errorf("round trip of %+v = %+v, %v", s, got, err)
		}
		if !bytes.Equal(encodeSlot(s), encodeSlot(s)) { // map order is random
			t.Error("one slot encodes to different bytes")
		}
	}
	good := encodeSlot(normalizeSlot(locklock.Slot{Semaphore: id, ID: "x", Limit: 2, Weight: 1, Holder: "h"}))
	overweight := encodeSlot(normalizeSlot(locklock.Slot{Semaphore: id, ID: "x", Limit: 2, Weight: 3}))
	for name, v := range map[string][]byte{
		"empty":          nil,
		"short header":   good[:slotRecordHeader-1],
		"version 2":      append([]byte{2}, good[1:]...),
		"truncated":      good[:len(good)-1],
		"trailing bytes": append(slices.Clone(good), 0),
		"weight > limit": overweight,
	} {
		if _, err := decodeSlot(id, "x", v); !errors.Is(err, errCorrupt) {
			t.Errorf("%s: %v, want errCorrupt", name, err)
		}
	}
	for _, n := range []int{1, 10000, 1 << 30} {
		if got, err := decodeHead(id, encodeHead(n)); err != nil || got != n {
			t.Errorf("head %d round trip: %d, %v", n, got, err)
		}
	}
	if _, err := decodeHead(id, []byte{headV1}); !errors.Is(err, errCorrupt) {
		t.Errorf("empty head count: %v, want errCorrupt", err)
	}
}

func TestSlotKeys(t *testing.T) {
	id := locklock.ID{Namespace: "acme", Kind: locklock.KindUUID, Name: "180da65c-cf80-4997-8574-0c0801817d6f"}
	slot := locklock.NewSlotID()
	k := slotKey(id, slot)
	if !bytes.HasPrefix(k, semSlotsPrefix(id)) || !bytes.HasPrefix(k, slotListPrefix(id.Namespace, id.Kind)) {
		t.Errorf("slot key %q lacks its prefixes", k)
	}
	if gotID, gotSlot, err := parseSlotRef(k[len(slotPrefix):]); err != nil || gotID != id || gotSlot != slot {
		t.Errorf("parseSlotRef = %v, %q, %v", gotID, gotSlot, err)
	}
	for _, at := range []time.Time{t0, time.UnixMilli(-1).UTC()} {
		gotAt, gotID, gotSlot, err := parseSlotExpiryKey(slotExpiryKey(at, id, slot))
		if err != nil || !gotAt.Equal(at) || gotID != id || gotSlot != slot {
			t.Errorf("parseSlotExpiryKey = %v, %v, %q, %v", gotAt, gotID, gotSlot, err)
		}
	}
	if _, _, _, err := parseSlotExpiryKey(expiryKey(t0, id)); !errors.Is(err, errCorrupt) {
		t.Errorf("a lock's expiry key read as a slot's: %v", err)
	}
	// A name's slots sort before those of every later name, however long.
	names := []string{"a", "a-1", "a.b", "ab", "b"}
	var keys [][]byte
	for _, name := range names {
		keys = append(keys, slotKey(testID(name), "zzzzzzzzzzzzzzzzzzzzzz"), slotKey(testID(name), "AAAAAAAAAAAAAAAAAAAAAA"))
	}
	for i := 0; i+2 < len(keys); i += 2 {
		if bytes.Compare(keys[i], keys[i+2]) >= 0 || bytes.Compare(keys[i+1], keys[i+2]) >= 0 {
			t.Errorf("slots of %q do not sort before those of %q", names[i/2], names[i/2+1])
		}
	}
	// Tables apart: no slot or head key is a lock key.
	if _, err := parseLockKey(k); err == nil {
		t.Error("a slot key parses as a lock key")
	}
	if _, err := parseLockKey(headKey(id)); err == nil {
		t.Error("a head key parses as a lock key")
	}
}

// TestSlotSecretsAtRest: slot secrets, like lock secrets, live on disk
// only as salted hashes — after acquires, a retry, refreshes and releases
// with right and wrong secrets through the Service.
func TestSlotSecretsAtRest(t *testing.T) {
	dir := t.TempDir()
	e, err := Open(dir, quiet)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			_ = e.Close()
		}
	}()
	svc := locklock.NewService(e)
	ctx := t.Context()
	canary := "s3cret-canary-slot-" + locklock.NewSlotID()
	forms := map[string][]byte{}
	secret := func(what string) string {
		s := canary + "-" + what
		maps.Copy(forms, leakcheck.Forms(s))
		return s
	}
	id := locklock.ID{Namespace: "public", Kind: locklock.KindKey, Name: "at-rest-sem"}
	var slots []string
	for _, what := range []string{"a", "b", "c"} {
		s, _, err := svc.AcquireSlot(ctx, locklock.SlotRequest{ID: id, Limit: 5, Secret: secret(what), TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		slots = append(slots, s.ID)
	}
	if _, created, err := svc.AcquireSlot(ctx, locklock.SlotRequest{ID: id, Limit: 5, Secret: secret("a"), TTL: time.Hour}); err != nil || created {
		t.Fatalf("retry: created %v, %v", created, err)
	}
	if _, err := svc.PatchSlot(ctx, slots[0], locklock.PatchRequest{ID: id, Secret: secret("a"), TTL: 2 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.PatchSlot(ctx, slots[1], locklock.PatchRequest{ID: id, Secret: secret("wrong"), TTL: 2 * time.Hour}); !errors.Is(err, locklock.ErrSecretMismatch) {
		t.Fatalf("patch with a wrong secret: %v", err)
	}
	if _, err := svc.ReleaseSlot(ctx, id, slots[1], secret("wrong-too")); !errors.Is(err, locklock.ErrSecretMismatch) {
		t.Fatalf("release with a wrong secret: %v", err)
	}
	if _, err := svc.ReleaseSlot(ctx, id, slots[2], secret("c")); err != nil {
		t.Fatal(err)
	}
	if leaks, seen := fileLeaks(t, dir, forms, []byte(id.Name)); len(leaks) > 0 || !seen {
		t.Errorf("while open: leaks %q; semaphore name seen: %v", leaks, seen)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	if leaks, _ := fileLeaks(t, dir, forms, nil); len(leaks) > 0 {
		t.Errorf("after close: %q", leaks)
	}
	if leaks, _ := valueLeaks(t, dir, forms); len(leaks) > 0 {
		t.Errorf("stored keys and values: %q", leaks)
	}
}
