package etcd

import (
	"encoding/json"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/locklock/locklock/locklock"
)

// TestEncodeIsJSON: the hand-written record encoder writes exactly what
// encoding/json writes for the record (and decode reads it back), so that
// records stay readable by earlier versions and by anyone who reads the
// store.
func TestEncodeIsJSON(t *testing.T) {
	at := time.UnixMilli(1_700_000_000_123)
	for _, l := range []locklock.Lock{
		{AcquiredAt: at, ExpiresAt: at.Add(30 * time.Second)},
		{AcquiredAt: at, ExpiresAt: at.Add(time.Hour), Guard: locklock.NewGuard("secret")},
		{AcquiredAt: time.UnixMilli(-5), ExpiresAt: time.UnixMilli(0), Guard: "\x00\xff+/"},
	} {
		for _, lease := range []clientv3.LeaseID{0, 7587880000000000001, -1} {
			want, err := json.Marshal(record{
				AcquiredAt: l.AcquiredAt.UnixMilli(),
				ExpiresAt:  l.ExpiresAt.UnixMilli(),
				Guard:      []byte(l.Guard),
				Lease:      int64(lease),
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := encode(l, lease); string(got) != string(want) {
				t.Errorf("encode(%+v, %d) = %s, want %s", l, lease, got, want)
			}
			back, err := (&Engine{}).decode(l.ID, encode(l, lease), 1, 1)
			if err != nil || back.Guard != l.Guard || !back.AcquiredAt.Equal(l.AcquiredAt) || !back.ExpiresAt.Equal(l.ExpiresAt) {
				t.Errorf("decode(encode(%+v)) = %+v, %v", l, back, err)
			}
		}
	}
}
