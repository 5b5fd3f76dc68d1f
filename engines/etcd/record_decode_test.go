package etcd

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
)

// recordSamples are records as the engine writes them: lock and delay
// records, plain and with every field.
func recordSamples() []record {
	at := time.UnixMilli(1_700_000_000_123)
	var out []record
	for _, l := range []locklock.Lock{
		{AcquiredAt: at, ExpiresAt: at.Add(30 * time.Second)},
		{AcquiredAt: at, ExpiresAt: at.Add(time.Hour), Guard: locklock.NewGuard("secret"), Holder: "host-a:7",
			Metadata: map[string]string{"addr": "10.0.0.7:8080", "zone": "ünïcode ✓"}, LockDelay: 15 * time.Second},
		{AcquiredAt: time.UnixMilli(-5), ExpiresAt: time.UnixMilli(0), Token: 1 << 60, Revoked: true, LockDelay: time.Millisecond},
		{AcquiredAt: at, ExpiresAt: at.Add(time.Hour), Holder: tricky[0], Metadata: trickyMetadata()},
	} {
		r := lockRecord(l, 7587880000000000001, 42)
		r.UpdatedAt = at.Add(time.Minute).UnixMilli()
		out = append(out, lockRecord(l, 0, 0), delayRecord(l, -1), r)
	}
	return out
}

// TestDecodeRecordFastPath: decodeRecord reads what encode writes — all of
// it, unless a string needs escapes — as encoding/json does.
func TestDecodeRecordFastPath(t *testing.T) {
	for _, r := range recordSamples() {
		b := r.encode()
		got, ok := decodeRecord(b)
		plain := r.Holder != tricky[0]
		if ok != plain {
			t.Errorf("decodeRecord(%s): fast path %v, want %v", b, ok, plain)
		}
		checkDecode(t, b)
		if ok {
			want, _ := parseRecord(locklock.ID{}, "lock", b)
			if got.Metadata != nil && len(got.Metadata) == 0 {
				got.Metadata = nil
			}
			if !reflect.DeepEqual(normalized(got), normalized(want)) {
				t.Errorf("decodeRecord(%s) = %+v, want %+v", b, got, want)
			}
		}
	}
}

// checkDecode fails when decodeRecord accepts b and reads it otherwise
// than encoding/json, or accepts what encoding/json refuses.
func checkDecode(t *testing.T, b []byte) {
	t.Helper()
	got, ok := decodeRecord(b)
	if !ok {
		return
	}
	var want record
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatalf("decodeRecord accepts %q, which encoding/json refuses: %v", b, err)
	}
	if !reflect.DeepEqual(normalized(got), normalized(want)) {
		t.Fatalf("decodeRecord(%q) = %+v, encoding/json %+v", b, got, want)
	}
}

// normalized treats an empty guard like none (both are no guard).
func normalized(r record) record {
	if len(r.Guard) == 0 {
		r.Guard = nil
	}
	return r
}

// FuzzDecodeRecord: whatever decodeRecord accepts, encoding/json reads the
// same way.
func FuzzDecodeRecord(f *testing.F) {
	for _, r := range recordSamples() {
		f.Add(r.encode())
	}
	for _, s := range []string{`{}`, `{"token":-1}`, `{"lease":01}`, `{"lease":1e3}`, `{"metadata":{"a":"1"},"metadata":{"b":"2"}}`,
		`{"holder":"\u00e9"}`, `{"Holder":"x"}`, `{"guard":"!!"}`, `{"revoked":null}`, `{"token":18446744073709551615}`, `{"lease":1} `} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkDecode(t, b) })
}
