package etcd

import (
	"encoding/json"
	"maps"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/locklock/locklock/locklock"
)

// TestEncodeIsJSON: the hand-written record encoder writes exactly what
// encoding/json writes for the record (and decode reads it back), so that
// records stay readable by earlier versions and by anyone who reads the
// store.
func TestEncodeIsJSON(t *testing.T) {
	at := time.UnixMilli(1_700_000_000_123)
	var records []record
	for _, l := range []locklock.Lock{
		{AcquiredAt: at, ExpiresAt: at.Add(30 * time.Second)},
		{AcquiredAt: at, ExpiresAt: at.Add(time.Hour), Guard: locklock.NewGuard("secret")},
		{AcquiredAt: time.UnixMilli(-5), ExpiresAt: time.UnixMilli(0), Guard: "\x00\xff+/"},
		{AcquiredAt: at, ExpiresAt: at.Add(time.Hour), Holder: "host-a:7", Metadata: map[string]string{"addr": "10.0.0.7:8080"}, LockDelay: 15 * time.Second},
		{AcquiredAt: at, ExpiresAt: at.Add(time.Hour), Holder: tricky[0], Metadata: trickyMetadata(), LockDelay: 1500 * time.Millisecond, Token: 1 << 60, Revoked: true},
		{AcquiredAt: at, ExpiresAt: at.Add(time.Hour), Metadata: map[string]string{}},
	} {
		for _, lease := range []clientv3.LeaseID{0, 7587880000000000001, -1} {
			refreshed := lockRecord(l, lease, lease/3)
			refreshed.UpdatedAt = at.Add(time.Minute).UnixMilli()
			records = append(records, lockRecord(l, lease, lease/3), delayRecord(l, lease), refreshed)
		}
	}
	for _, r := range records {
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.encode(); string(got) != string(want) {
			t.Errorf("encode(%+v)\n = %s\nwant %s", r, got, want)
		}
	}
}

// tricky are strings whose JSON encoding takes care: quotes, backslashes,
// HTML, control characters (the Service refuses them; the encoder must
// not depend on that), invalid UTF-8, U+2028/9 and multi-byte text.
var tricky = []string{
	`q"uo\te <b>&amp;</b>`,
	"ctl \x00\x01\b\f\n\r\t\x1f\x7f end",
	"bad \xff\xfe utf8 \xe2\x82",
	"sep \u2028 \u2029 ünïcode ✓ 🔒",
	"",
}

func trickyMetadata() map[string]string {
	md := make(map[string]string)
	for i, s := range tricky {
		md[strings.Repeat("k", 5-i)+s] = s
	}
	md["Z"], md["a.b_c-D"] = "", "v"
	return md
}

// validMetadata is trickyMetadata without invalid UTF-8, which JSON cannot
// carry (it comes back as U+FFFD).
func validMetadata() map[string]string {
	md := trickyMetadata()
	maps.DeleteFunc(md, func(name, value string) bool { return !utf8.ValidString(name) || !utf8.ValidString(value) })
	return md
}

// TestJSONStrings: appendJSONString writes what encoding/json writes.
func TestJSONStrings(t *testing.T) {
	for _, s := range tricky {
		want, _ := json.Marshal(s)
		if got := appendJSONString(nil, s); string(got) != string(want) {
			t.Errorf("appendJSONString(%q) = %s, want %s", s, got, want)
		}
	}
	for c := range 256 { // every single byte
		s := string([]byte{byte(c)})
		want, _ := json.Marshal(s)
		if got := appendJSONString(nil, s); string(got) != string(want) {
			t.Errorf("appendJSONString(%q) = %s, want %s", s, got, want)
		}
	}
}

// TestMetadataEncodingIsDeterministic: the same metadata always encodes to
// the same bytes, names sorted, whatever order Go's map iteration takes.
func TestMetadataEncodingIsDeterministic(t *testing.T) {
	md := make(map[string]string)
	for _, name := range []string{"zeta", "alpha", "Mid", "m1", "m0", "_x", "-y", ".z"} {
		md[name] = name + "-value"
	}
	l := locklock.Lock{AcquiredAt: time.UnixMilli(1), ExpiresAt: time.UnixMilli(2), Metadata: md}
	lr := lockRecord(l, 5, 0)
	first := string(lr.encode())
	for range 50 {
		if again := string(lr.encode()); again != first {
			t.Fatalf("encodings differ:\n%s\n%s", first, again)
		}
	}
	want := `"metadata":{"-y":"-y-value",".z":".z-value","Mid":"Mid-value","_x":"_x-value","alpha":"alpha-value","m0":"m0-value","m1":"m1-value","zeta":"zeta-value"}`
	if !strings.Contains(first, want) {
		t.Errorf("encoded %s, want it to contain %s", first, want)
	}
}

// TestOldRecordDecodes: a record written before holders, metadata and
// lock-delays (the exact bytes the earlier encoder wrote) reads as a lock
// without them; and earlier versions, which know only the first four
// fields, still read a new record.
func TestOldRecordDecodes(t *testing.T) {
	e := &Engine{}
	e.base.Store(1000)
	id := locklock.ID{Namespace: "public", Kind: locklock.KindKey, Name: "old"}
	old := []byte(`{"acquired_at_ms":1700000000123,"expires_at_ms":1700000030123,"guard":"AP8rLw==","lease":7587880000000000001}`)
	l, delayLease, err := e.decode(id, old, 42, 50)
	if err != nil {
		t.Fatal(err)
	}
	want := locklock.Lock{ID: id, AcquiredAt: time.UnixMilli(1700000000123).UTC(), ExpiresAt: time.UnixMilli(1700000030123).UTC(),
		Token: 1042, Guard: "\x00\xff+/", Revision: 50}
	if !sameLock(l, want) || delayLease != 0 || l.Metadata != nil {
		t.Errorf("old record decoded as %+v (delay lease %d), want %+v", l, delayLease, want)
	}

	type oldRecord struct {
		AcquiredAt int64  `json:"acquired_at_ms"`
		ExpiresAt  int64  `json:"expires_at_ms"`
		Guard      []byte `json:"guard,omitempty"`
		Lease      int64  `json:"lease"`
	}
	full := locklock.Lock{AcquiredAt: want.AcquiredAt, ExpiresAt: want.ExpiresAt, Guard: want.Guard,
		Holder: "h", Metadata: map[string]string{"a": "b"}, LockDelay: 5 * time.Second}
	lr := lockRecord(full, 7587880000000000001, 9)
	var back oldRecord
	if err := json.Unmarshal(lr.encode(), &back); err != nil {
		t.Fatal(err)
	}
	if back.AcquiredAt != 1700000000123 || back.ExpiresAt != 1700000030123 || string(back.Guard) != "\x00\xff+/" || back.Lease != 7587880000000000001 {
		t.Errorf("an earlier version reads a new record as %+v", back)
	}
}

// TestRecordRoundTrip: every field a lock record or delay record stores
// comes back; empty and nil metadata both come back as nil (none).
func TestRecordRoundTrip(t *testing.T) {
	e := &Engine{}
	e.base.Store(1 << 40)
	id := locklock.ID{Namespace: "ns", Kind: locklock.KindUUID, Name: "180da65c-cf80-4997-8574-0c0801817d6f"}
	at := time.UnixMilli(1_700_000_000_123).UTC()
	for _, l := range []locklock.Lock{
		{ID: id, AcquiredAt: at, ExpiresAt: at.Add(time.Hour), Guard: locklock.NewGuard("s"),
			Holder: tricky[3], Metadata: validMetadata(), LockDelay: 60 * time.Second},
		{ID: id, AcquiredAt: at, ExpiresAt: at.Add(time.Second), Holder: "h"},
		{ID: id, AcquiredAt: at, ExpiresAt: at.Add(time.Second), Metadata: map[string]string{}},
		{ID: id, AcquiredAt: at, ExpiresAt: at.Add(time.Second), Metadata: nil},
	} {
		lr := lockRecord(l, 11, 22)
		back, delayLease, err := e.decode(id, lr.encode(), 5, 9)
		want := l
		want.Token, want.Revision = 1<<40+5, 9
		if len(want.Metadata) == 0 {
			want.Metadata = nil
		}
		if err != nil || !sameLock(back, want) || delayLease != 22 || (back.Metadata == nil) != (want.Metadata == nil) {
			t.Errorf("lock record of %+v read back as %+v (delay lease %d), %v", l, back, delayLease, err)
		}

		// A delay record from the acquire: the token is its mod revision.
		dr := delayRecord(l, 33)
		d, err := e.decodeDelay(id, dr.encode(), 77, 80)
		wantD := locklock.Lock{ID: id, AcquiredAt: l.AcquiredAt, ExpiresAt: l.ExpiresAt, Guard: l.Guard,
			LockDelay: l.LockDelay, Token: 1<<40 + 77, Ended: true, Revision: 80}
		if err != nil || !sameLock(d, wantD) {
			t.Errorf("delay record of %+v read back as %+v, %v; want %+v", l, d, err, wantD)
		}
		// One rewritten by a refresh, or a revocation, carries its token.
		l.Token, l.Revoked = 1<<40+5, true
		dr = delayRecord(l, 33)
		d, err = e.decodeDelay(id, dr.encode(), 99, 100)
		wantD.Token, wantD.Revoked, wantD.Revision = 1<<40+5, true, 100
		if err != nil || !sameLock(d, wantD) {
			t.Errorf("delay record with its token of %+v read back as %+v, %v; want %+v", l, d, err, wantD)
		}
	}
}

// sameLock compares every field a record stores, and Revision.
func sameLock(a, b locklock.Lock) bool {
	return a.ID == b.ID && a.AcquiredAt.Equal(b.AcquiredAt) && a.ExpiresAt.Equal(b.ExpiresAt) &&
		a.Token == b.Token && a.Guard == b.Guard && a.Revision == b.Revision &&
		a.Holder == b.Holder && maps.Equal(a.Metadata, b.Metadata) && a.LockDelay == b.LockDelay &&
		a.Ended == b.Ended && a.Revoked == b.Revoked
}
