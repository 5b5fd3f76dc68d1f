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
	cases := []lockJSON{
		lockOf(locklock.Lock{
			ID:         locklock.ID{Namespace: "public", Kind: locklock.KindUUID, Name: "180da65c-cf80-4997-8574-0c0801817d6f"},
			AcquiredAt: at, ExpiresAt: at.Add(30 * 24 * time.Hour), ObservedAt: at, Token: 1<<53 - 1,
		}),
		{Namespace: "acme", Kind: locklock.KindKey, Name: "a.b_c-d:e~f", AcquiredAt: "x", ExpiresAt: "y", ExpiresIn: -1, FencingToken: 1<<64 - 1, Protected: true},
		{Namespace: "ns", Kind: locklock.KindKey, Name: "", FencingToken: 0},
	}
	for _, l := range cases {
		want, err := json.Marshal(l)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendLock(nil, l); string(got) != string(want) {
			t.Errorf("appendLock\n got %s\nwant %s", got, want)
		}
	}
	for _, name := range []string{`a"b`, `a\b`, "a\nb", "ä", "a\x7fb"} {
		if got := appendLock(nil, lockJSON{Name: name}); got != nil {
			t.Errorf("appendLock with name %q = %s, want nil (encoding/json's turn)", name, got)
		}
	}
}
