package etcd

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/locklock/locklock/locklock"
)

// record is what is stored under a lock's key. The token and expiry are not
// stored: the token is the key's create revision and the lease decides
// expiry.
type record struct {
	AcquiredAt int64  `json:"acquired_at_ms"`
	ExpiresAt  int64  `json:"expires_at_ms"`
	Guard      []byte `json:"guard,omitempty"` // salt and HMAC of the secret, never the secret
	Lease      int64  `json:"lease"`           // the lease it was put on, for whoever reads the store (the engine reads the key's own)
}

// encode is the record of l on lease, as encoding/json would write it
// (record_test.go checks that), without its reflection: this runs for every
// acquire and refresh.
func encode(l locklock.Lock, lease clientv3.LeaseID) []byte {
	b := make([]byte, 0, 80+base64.StdEncoding.EncodedLen(len(l.Guard)))
	b = append(b, `{"acquired_at_ms":`...)
	b = strconv.AppendInt(b, l.AcquiredAt.UnixMilli(), 10)
	b = append(b, `,"expires_at_ms":`...)
	b = strconv.AppendInt(b, l.ExpiresAt.UnixMilli(), 10)
	if l.Guard != "" {
		b = append(b, `,"guard":"`...)
		b = base64.StdEncoding.AppendEncode(b, []byte(l.Guard))
		b = append(b, '"')
	}
	b = append(b, `,"lease":`...)
	b = strconv.AppendInt(b, int64(lease), 10)
	return append(b, '}')
}

// tokenBase returns the number added to a key's create revision to make its
// fencing token. It is chosen once per etcd cluster and prefix — the wall
// clock in milliseconds × 1024 when first needed, like the other engines'
// starting points — and stored under the prefix, so that every server uses
// the same one, and tokens continue above those of an earlier engine (a
// switch from Badger) or an earlier etcd cluster that was replaced. (Restoring
// etcd from a backup rolls revisions back; start the restored cluster under a
// new --etcd-prefix.)
func (e *Engine) tokenBase(ctx, octx context.Context) (uint64, error) {
	if b := e.base.Load(); b != 0 {
		return b, nil
	}
	key := e.prefix + "token-base"
	candidate := strconv.FormatUint(uint64(time.Now().UnixMilli())<<10, 10)
	resp, err := e.client.Txn(octx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, candidate)).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return 0, storeErr(ctx, "read the token base", err)
	}
	value := candidate
	if !resp.Succeeded {
		value = string(resp.Responses[0].GetResponseRange().Kvs[0].Value)
	}
	b, err := strconv.ParseUint(value, 10, 64)
	if err != nil || b == 0 {
		return 0, fmt.Errorf("etcd engine: corrupt token base under %s", key)
	}
	e.base.Store(b)
	return b, nil
}

// decode rebuilds a lock from its key-value and the revision it was read at.
func (e *Engine) decode(id locklock.ID, value []byte, createRev, readRev int64) (locklock.Lock, error) {
	var r record
	if err := json.Unmarshal(value, &r); err != nil {
		return locklock.Lock{}, fmt.Errorf("etcd engine: corrupt record for %s: %w", id, err)
	}
	return locklock.Lock{
		ID:         id,
		AcquiredAt: time.UnixMilli(r.AcquiredAt).UTC(),
		ExpiresAt:  time.UnixMilli(r.ExpiresAt).UTC(),
		Token:      e.base.Load() + uint64(createRev),
		Guard:      locklock.Guard(r.Guard),
		Revision:   readRev,
	}, nil
}
