package badger

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
)

func TestKeyEncoding(t *testing.T) {
	ids := []locklock.ID{
		testID("a"),
		{Namespace: "acme", Kind: locklock.KindUUID, Name: "180da65c-cf80-4997-8574-0c0801817d6f"},
		{Namespace: "x", Kind: locklock.KindKey, Name: "A.b_c-d:e~f"},
	}
	times := []time.Time{
		t0,
		time.UnixMilli(0).UTC(),
		time.UnixMilli(-1).UTC(),
		time.Date(1900, 1, 1, 0, 0, 0, 1_000_000, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999_000_000, time.UTC),
	}
	for _, id := range ids {
		k := lockKey(id)
		if got, err := parseLockKey(k); err != nil || got != id {
			t.Errorf("parseLockKey(lockKey(%v)) = %v, %v", id, got, err)
		}
		if !bytes.HasPrefix(k, listPrefix(id.Namespace, id.Kind)) {
			t.Errorf("lockKey(%v) = %q lacks its list prefix", id, k)
		}
		for _, at := range times {
			ek := expiryKey(at, id)
			gotAt, gotID, err := parseExpiryKey(ek)
			if err != nil || gotID != id || gotAt != at {
				t.Errorf("parseExpiryKey(expiryKey(%v, %v)) = %v, %v, %v", at, id, gotAt, gotID, err)
			}
			dk := delayKey(at, id)
			gotAt, gotID, err = parseTimeKey(delayPrefix, dk)
			if err != nil || gotID != id || gotAt != at {
				t.Errorf("parseTimeKey(delayKey(%v, %v)) = %v, %v, %v", at, id, gotAt, gotID, err)
			}
			if _, _, err := parseExpiryKey(dk); !errors.Is(err, errCorrupt) {
				t.Errorf("a delay key read as an expiry key: %v", err)
			}
			for _, guard := range []locklock.Guard{"", locklock.NewGuard("pw")} {
				l := locklock.Lock{ID: id, AcquiredAt: at, ExpiresAt: at.Add(time.Hour), Token: 1<<64 - 1, Guard: guard}
				if got, err := decodeRecord(id, encodeRecord(l)); err != nil || !same(got, l) {
					t.Errorf("decodeRecord(encodeRecord(%+v)) = %+v, %v", l, got, err)
				}
			}
		}
	}
	// The index sorts by time, including before 1970.
	sorted := slices.SortedFunc(slices.Values(times), time.Time.Compare)
	for i := 1; i < len(sorted); i++ {
		a, b := expiryKey(sorted[i-1], ids[2]), expiryKey(sorted[i], ids[0])
		if bytes.Compare(a, b) >= 0 {
			t.Errorf("expiry key of %v does not sort before that of %v", sorted[i-1], sorted[i])
		}
	}
	// Lock keys sort by name within a namespace and kind.
	if bytes.Compare(lockKey(testID("a")), lockKey(testID("a-1"))) >= 0 ||
		bytes.Compare(lockKey(testID("a-1")), lockKey(testID("ab"))) >= 0 {
		t.Error("lock keys do not sort by name")
	}
	// Corrupt input is reported, not misread.
	for _, bad := range [][]byte{nil, {recordV1}, append([]byte{3}, make([]byte, recordHeader)...)} {
		if _, err := decodeRecord(ids[0], bad); !errors.Is(err, errCorrupt) {
			t.Errorf("decodeRecord(%x): %v, want errCorrupt", bad, err)
		}
	}
	for _, bad := range []string{"x\x00short", "l\x00no-separators", "x\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00ns-only"} {
		if _, _, err := parseExpiryKey([]byte(bad)); bad[0] == 'x' && !errors.Is(err, errCorrupt) {
			t.Errorf("parseExpiryKey(%q): %v, want errCorrupt", bad, err)
		}
		if _, err := parseLockKey([]byte(bad)); !errors.Is(err, errCorrupt) {
			t.Errorf("parseLockKey(%q): %v, want errCorrupt", bad, err)
		}
	}
	// normalize makes a lock exactly storable.
	l := locklock.Lock{ID: ids[0], AcquiredAt: t0.Add(123456).In(time.FixedZone("X", 3600)), ExpiresAt: time.Now(), ObservedAt: t0}
	n := normalize(l)
	if got, err := decodeRecord(n.ID, encodeRecord(n)); err != nil || !same(got, n) {
		t.Errorf("normalized lock does not round-trip: %+v vs %+v (%v)", got, n, err)
	}
	if n.AcquiredAt != t0 || !n.ObservedAt.IsZero() {
		t.Errorf("normalize = %+v", n)
	}
}
