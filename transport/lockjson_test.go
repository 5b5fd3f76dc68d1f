package transport

import (
	"reflect"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
)

// TestAppendLockMatchesEncodingJSON: the hand-written encoder of the hot
// path writes exactly what encoding/json writes (as encode configures it:
// no HTML escaping), and steps aside for strings that would need escaping
// and for metadata.
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
		{ // a holder and a lock-delay (API.md §8)
			ID:         locklock.ID{Namespace: "ns", Kind: locklock.KindKey, Name: "n"},
			AcquiredAt: at, ExpiresAt: at.Add(time.Minute), ObservedAt: at, Token: 2,
			Holder: "host-7:4242 <b>&", LockDelay: 15 * time.Second,
		},
		{ // a holder that needs escaping, metadata
			ID:         locklock.ID{Namespace: "ns", Kind: locklock.KindKey, Name: "n"},
			AcquiredAt: at, ExpiresAt: at.Add(time.Minute), ObservedAt: at, Token: 3,
			Holder: "ü\"\\", Metadata: map[string]string{"z": "1", "a": "<x>", "m": "\u2028"}, LockDelay: time.Second,
		},
		{ // metadata alone
			ID:         locklock.ID{Namespace: "ns", Kind: locklock.KindKey, Name: "n"},
			AcquiredAt: at, ExpiresAt: at.Add(time.Minute), ObservedAt: at, Token: 4, Metadata: map[string]string{"k": ""},
		},
	}
	for _, l := range cases {
		want := encode(lockOf(l))
		want = want[:len(want)-1] // encode ends the value with a newline
		got := appendLock(nil, l)
		if got == nil && len(l.Metadata) == 0 && plainJSON(l.Holder) {
			t.Errorf("appendLock gave up on %+v, which it can write", l)
		}
		if got == nil {
			got = want // encoding/json's turn, as writeLock does
		}
		if string(got) != string(want) {
			t.Errorf("appendLock\n got %s\nwant %s", got, want)
		}
		var back lockJSON
		decodeStrict(t, got, &back)
		if back.Holder != l.Holder || !reflect.DeepEqual(back.Metadata, l.Metadata) || back.LockDelay != int64(l.LockDelay/time.Second) {
			t.Errorf("%s reads back as %+v", got, back)
		}
	}
	for _, name := range []string{`a"b`, `a\b`, "a\nb", "ä", "a\x7fb"} {
		if got := appendLock(nil, locklock.Lock{ID: locklock.ID{Name: name}}); got != nil {
			t.Errorf("appendLock with name %q = %s, want nil (encoding/json's turn)", name, got)
		}
		if got := appendLock(nil, locklock.Lock{ID: locklock.ID{Name: "n"}, Holder: name}); got != nil {
			t.Errorf("appendLock with holder %q = %s, want nil (encoding/json's turn)", name, got)
		}
	}
	if got := appendLock(nil, locklock.Lock{ID: locklock.ID{Name: "n"}, Metadata: map[string]string{"k": "v"}}); got != nil {
		t.Errorf("appendLock with metadata = %s, want nil (encoding/json sorts the members)", got)
	}
}
