package badger

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	bdg "github.com/dgraph-io/badger/v4"

	"github.com/locklock/locklock/locklock"
)

// v1Record is a lock record as the engine wrote it before holders,
// metadata and lock-delays (version 1): acquired at t0, expiring a minute
// later, token 42; guard is appended to it.
func v1Record(t *testing.T, guard string) []byte {
	t.Helper()
	b, err := hex.DecodeString("01" + "000001a218629b03" + "000001a218638563" + "000000000000002a")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, guard...)
}

// TestRecordV1Decodes: records written by the engine before version 2 still
// read, with none of the new fields.
func TestRecordV1Decodes(t *testing.T) {
	id := testID("old")
	for _, guard := range []string{"", string(locklock.NewGuard("pw"))} {
		got, err := decodeRecord(id, v1Record(t, guard))
		want := locklock.Lock{ID: id, AcquiredAt: t0, ExpiresAt: t0.Add(time.Minute), Token: 42, Guard: locklock.Guard(guard)}
		if err != nil || !same(got, want) {
			t.Errorf("decode of a version-1 record (guard of %d bytes) = %+v, %v; want %+v", len(guard), got, err, want)
		}
	}
}

// fixedGuard stands for a guard (a salt and a hash) in records that must
// encode the same every time; NewGuard's salt is random.
const fixedGuard = locklock.Guard("\xa5\xa5\xa5\xa5\xa5\xa5\xa5\xa5\xa5\xa5\xa5\xa5\xa5\xa5\xa5\xa5" +
	"\x5a\x5a\x5a\x5a\x5a\x5a\x5a\x5a\x5a\x5a\x5a\x5a\x5a\x5a\x5a\x5a\x5a\x5a\x5a\x5a\x5a\x5a\x5a\x5a\x5a\x5a\x5a\x5a\x5a\x5a\x5a\x5a")

// labelled is a lock with every field the record stores set.
func labelled(md map[string]string) locklock.Lock {
	return locklock.Lock{
		ID: testID("full"), AcquiredAt: t0, ExpiresAt: t0.Add(time.Minute), Token: 1<<64 - 1,
		Guard: fixedGuard, Holder: "host-a:7 ✓", Metadata: md,
		LockDelay: 60 * time.Second, Ended: true, Revoked: true,
	}
}

func fullMetadata() map[string]string {
	md := map[string]string{"": "empty name, stored as given", "ünï": strings.Repeat("v", 256)}
	for i := range locklock.MaxMetadataMembers - len(md) {
		md[fmt.Sprintf("k%02d", i)] = fmt.Sprint(i)
	}
	return md
}

// TestRecordRoundTrip: every stored field comes back; empty metadata comes
// back nil (as the engine returns it); one lock always encodes to the same
// bytes, whatever the map's order.
func TestRecordRoundTrip(t *testing.T) {
	cases := map[string]locklock.Lock{
		"every field":       labelled(fullMetadata()),
		"one member":        labelled(map[string]string{"leader": "10.0.0.9:8080"}),
		"nil metadata":      labelled(nil),
		"nothing new":       newLock("plain", t0, time.Minute, ""),
		"ended only":        {ID: testID("e"), ExpiresAt: t0, LockDelay: time.Second, Ended: true},
		"revoked only":      {ID: testID("r"), ExpiresAt: t0, LockDelay: time.Second, Revoked: true},
		"before 1970":       {ID: testID("b"), AcquiredAt: time.UnixMilli(-5).UTC(), ExpiresAt: time.UnixMilli(-1).UTC()},
		"member empty text": labelled(map[string]string{"a": ""}),
	}
	for name, l := range cases {
		got, err := decodeRecord(l.ID, encodeRecord(l))
		if err != nil || !same(got, l) {
			t.Errorf("%s: decode(encode(%+v)) = %+v, %v", name, l, got, err)
		}
	}

	empty := labelled(map[string]string{})
	got, err := decodeRecord(empty.ID, encodeRecord(empty))
	if err != nil || got.Metadata != nil {
		t.Errorf("empty metadata came back as %#v, %v; want nil", got.Metadata, err)
	}
	if n := normalize(empty); n.Metadata != nil || !same(got, n) {
		t.Errorf("normalize kept empty metadata (%#v), or differs from the decoded lock", n.Metadata)
	}

	// Maps built in opposite orders (Go also randomizes iteration).
	a, b := map[string]string{}, map[string]string{}
	for i := range 16 {
		a[fmt.Sprintf("n%02d", i)] = "v"
		b[fmt.Sprintf("n%02d", 15-i)] = "v"
	}
	want := encodeRecord(labelled(a))
	for range 20 {
		if got := encodeRecord(labelled(b)); !bytes.Equal(got, want) {
			t.Fatalf("one lock encoded to different bytes:\n%x\n%x", got, want)
		}
	}
	if i, j := bytes.Index(want, []byte("n00")), bytes.Index(want, []byte("n15")); i < 0 || i > j {
		t.Errorf("metadata names are not written in order (n00 at %d, n15 at %d)", i, j)
	}
}

// TestRecordCorrupt: damaged version-2 records are reported, never misread.
func TestRecordCorrupt(t *testing.T) {
	id := testID("bad")
	valid := encodeRecord(labelled(fullMetadata()))
	for n := range len(valid) {
		if _, err := decodeRecord(id, valid[:n]); !errors.Is(err, errCorrupt) {
			t.Fatalf("record cut to %d of %d bytes: %v, want errCorrupt", n, len(valid), err)
		}
	}
	flagAt := recordHeader
	unknownFlag := bytes.Clone(valid)
	unknownFlag[flagAt] |= 1 << 7

	// Two members, then swap their order or repeat the first by hand.
	two := encodeRecord(labelled(map[string]string{"a": "1", "b": "2"}))
	noMetadata := encodeRecord(labelled(nil)) // ends with the member count, 0
	unsorted := bytes.Replace(bytes.Replace(two, []byte("\x01a\x011"), []byte("\x01x\x011"), 1), []byte("\x01b\x012"), []byte("\x01a\x012"), 1)
	repeated := bytes.Replace(two, []byte("\x01b\x012"), []byte("\x01a\x012"), 1)
	if _, err := decodeRecord(id, two); err != nil {
		t.Fatalf("the two-member record itself: %v", err)
	}
	for name, bad := range map[string][]byte{
		"trailing byte":       append(bytes.Clone(valid), 0),
		"unknown flag":        unknownFlag,
		"names out of order":  unsorted,
		"name repeated":       repeated,
		"huge member count":   append(noMetadata[:len(noMetadata)-1:len(noMetadata)-1], 0xff, 0xff, 0xff, 0x7f),
		"unknown version (3)": append([]byte{3}, valid[1:]...),
	} {
		if _, err := decodeRecord(id, bad); !errors.Is(err, errCorrupt) {
			t.Errorf("%s: %v, want errCorrupt", name, err)
		}
	}
}

// TestOldDirectoryUpgrades: a record of version 1 with its index entry, as
// an older engine left it on disk, is served, refreshed (then rewritten in
// version 2, labels and all) and, expired, swept.
func TestOldDirectoryUpgrades(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	e := open(t, dir)
	held, expired := testID("old-held"), testID("old-expired")
	guard := string(locklock.NewGuard("pw"))
	err := e.update(ctx, func(txn *bdg.Txn, _ *eventLog) error {
		for _, kv := range [][2][]byte{
			{lockKey(held), v1Record(t, guard)}, {expiryKey(t0.Add(time.Minute), held), nil},
			{lockKey(expired), v1Record(t, "")}, {expiryKey(t0.Add(time.Minute), expired), nil},
		} {
			if err := txn.Set(kv[0], kv[1]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	checkIndex(t, e)
	want := locklock.Lock{ID: held, AcquiredAt: t0, ExpiresAt: t0.Add(time.Minute), Token: 42, Guard: locklock.Guard(guard)}
	if got, err := e.Get(ctx, held, t0); err != nil || !same(got, want) {
		t.Fatalf("Get of a version-1 record = %+v, %v; want %+v", got, err, want)
	}
	holder := "upgraded"
	ch := locklock.Change{ExpiresAt: t0.Add(time.Hour), Holder: &holder, Metadata: map[string]string{"v": "2"}, SetMetadata: true}
	want = ch.Apply(want)
	if got, err := e.Refresh(ctx, held, t0, ch, allowAll); err != nil || !same(got, want) {
		t.Fatalf("Refresh of a version-1 record = %+v, %v; want %+v", got, err, want)
	}
	if n, err := e.Sweep(ctx, t0.Add(2*time.Minute)); err != nil || n != 1 {
		t.Errorf("Sweep = %d, %v; want the expired version-1 record", n, err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = open(t, dir)
	if got, err := e.Get(ctx, held, t0); err != nil || !same(got, want) {
		t.Errorf("after reopen Get = %+v, %v; want %+v", got, err, want)
	}
	if _, err := e.Get(ctx, expired, t0); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("the swept record: %v, want ErrNotFound", err)
	}
	checkIndex(t, e)
}
