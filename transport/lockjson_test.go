package transport

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
)

// TestAppendLockMatchesEncodingJSON: the hand-written encoder of the hot
// path writes exactly what encoding/json writes, and steps aside for
// strings that would need escaping.
func TestAppendLockMatchesEncodingJSON(t *testing.T) {
	at := time.Date(2026, 11, 26, 15, 4, 5, 120e6, time.UTC)
	cases := []locklock.Lock{
		{
			ID:         locklock.ID{Namespace: "public", Kind: locklock.KindUUID, Name: "180da65c-cf80-4997-8574-0c0801817d6f"},
			AcquiredAt: at, ExpiresAt: at.Add(30 * 24 * time.Hour), ObservedAt: at, Token: 1<<53 - 1,
		},
		{ // protected, times in another zone, observed after it expired
			ID:         locklock.ID{Namespace: "acme", Kind: locklock.KindKey, Name: "a.b_c-d:e~f"},
			AcquiredAt: at.In(time.FixedZone("x", 3600)), ExpiresAt: at.Add(time.Second).In(time.FixedZone("y", -7200)),
			ObservedAt: at.Add(time.Minute), Token: 1<<64 - 1, Guard: locklock.NewGuard("s"),
		},
		{ID: locklock.ID{Namespace: "ns", Kind: locklock.KindKey}}, // zero times, empty name
		{ // sub-millisecond parts are cut, not rounded; seconds left round down
			ID:         locklock.ID{Namespace: "ns", Kind: locklock.KindKey, Name: "n"},
			AcquiredAt: at.Add(999_999 * time.Nanosecond), ExpiresAt: at.Add(1999 * time.Millisecond), ObservedAt: at, Token: 1,
		},
	}
	for _, l := range cases {
		want, err := json.Marshal(lockOf(l))
		if err != nil {
			t.Fatal(err)
		}
		if got := appendLock(nil, l); string(got) != string(want) {
			t.Errorf("appendLock\n got %s\nwant %s", got, want)
		}
	}
	for _, name := range []string{`a"b`, `a\b`, "a\nb", "ä", "a\x7fb"} {
		if got := appendLock(nil, locklock.Lock{ID: locklock.ID{Name: name}}); got != nil {
			t.Errorf("appendLock with name %q = %s, want nil (encoding/json's turn)", name, got)
		}
	}
}
