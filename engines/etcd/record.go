package etcd

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/locklock/locklock/locklock"
)

// record is what is stored under a lock's key, and under its delay key
// (see "Lock-delay" in etcd.go). Records written before holders, metadata
// and lock-delays existed have only the first four fields, and read as
// locks without them.
//
// In a lock record the token and expiry are not stored: the token is the
// key's create revision and the lease decides expiry. A delay record keeps
// only what judging the lock-delay needs — the lost lock's times, guard,
// lock-delay and token — not its holder or metadata, so that a PATCH of
// those rewrites one key, not two.
type record struct {
	AcquiredAt int64  `json:"acquired_at_ms"`
	ExpiresAt  int64  `json:"expires_at_ms"`
	Guard      []byte `json:"guard,omitempty"` // salt and HMAC of the secret, never the secret
	Lease      int64  `json:"lease"`           // the lease it was put on, for whoever reads the store (the engine reads the key's own)

	Holder   string            `json:"holder,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
	// LockDelay is in milliseconds, the precision of the other times,
	// although the Service only grants whole seconds.
	LockDelay int64 `json:"lock_delay_ms,omitempty"`
	// DelayLease, in a lock record with a lock-delay, is the lease its
	// delay record was put on in the same transaction. The lock's mod
	// revision proves the delay record is still that one (nothing writes
	// a delay key without its lock key while the lock is held), so a
	// rewrite knows whether it moves the delay key to another lease —
	// which the lease accounting must know (see putOutcome).
	DelayLease int64 `json:"delay_lease,omitempty"`
	// Token, in a delay record, is the lost lock's fencing token. A delay
	// record written by the acquire that created the lock has none: that
	// transaction's revision is the token, and it is the delay key's mod
	// revision (see decodeDelay).
	Token uint64 `json:"token,omitempty"`
	// Revoked, in a delay record, says an operator ended the lock (API.md
	// §11), so that its own secret does not pass the delay either.
	Revoked bool `json:"revoked,omitempty"`
	// UpdatedAt, in a lock record a refresh or PATCH wrote, is the instant
	// the step was judged at: the time of its `refreshed` event, which
	// every server reads from the watch (see events.go). An acquire's is
	// AcquiredAt.
	UpdatedAt int64 `json:"updated_at_ms,omitempty"`
}

// lockRecord is the record of lock l on lease, with its delay record on
// delayLease (zero without a lock-delay).
func lockRecord(l locklock.Lock, lease, delayLease clientv3.LeaseID) record {
	return record{
		AcquiredAt: l.AcquiredAt.UnixMilli(),
		ExpiresAt:  l.ExpiresAt.UnixMilli(),
		Guard:      []byte(l.Guard),
		Lease:      int64(lease),
		Holder:     l.Holder,
		Metadata:   l.Metadata,
		LockDelay:  l.LockDelay.Milliseconds(),
		DelayLease: int64(delayLease),
	}
}

// delayRecord is the delay record of lock l on lease. l.Token is zero when
// the record is written by the transaction that creates the lock.
func delayRecord(l locklock.Lock, lease clientv3.LeaseID) record {
	return record{
		AcquiredAt: l.AcquiredAt.UnixMilli(),
		ExpiresAt:  l.ExpiresAt.UnixMilli(),
		Guard:      []byte(l.Guard),
		Lease:      int64(lease),
		LockDelay:  l.LockDelay.Milliseconds(),
		Token:      l.Token,
		Revoked:    l.Revoked,
	}
}

// encode is r as encoding/json writes it (record_test.go checks that),
// without its reflection: this runs for every acquire and refresh. Metadata
// names come out sorted, as encoding/json sorts map keys, so that equal
// records are equal bytes.
func (r *record) encode() []byte {
	n := 100 + base64.StdEncoding.EncodedLen(len(r.Guard)) + len(r.Holder)
	for name, value := range r.Metadata {
		n += len(name) + len(value) + 6
	}
	b := make([]byte, 0, n)
	b = append(b, `{"acquired_at_ms":`...)
	b = strconv.AppendInt(b, r.AcquiredAt, 10)
	b = append(b, `,"expires_at_ms":`...)
	b = strconv.AppendInt(b, r.ExpiresAt, 10)
	if len(r.Guard) > 0 {
		b = append(b, `,"guard":"`...)
		b = base64.StdEncoding.AppendEncode(b, r.Guard)
		b = append(b, '"')
	}
	b = append(b, `,"lease":`...)
	b = strconv.AppendInt(b, r.Lease, 10)
	if r.Holder != "" {
		b = append(b, `,"holder":`...)
		b = appendJSONString(b, r.Holder)
	}
	if len(r.Metadata) > 0 {
		b = append(b, `,"metadata":{`...)
		names := make([]string, 0, len(r.Metadata))
		for name := range r.Metadata {
			names = append(names, name)
		}
		slices.Sort(names)
		for i, name := range names {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, name)
			b = append(b, ':')
			b = appendJSONString(b, r.Metadata[name])
		}
		b = append(b, '}')
	}
	if r.LockDelay != 0 {
		b = append(b, `,"lock_delay_ms":`...)
		b = strconv.AppendInt(b, r.LockDelay, 10)
	}
	if r.DelayLease != 0 {
		b = append(b, `,"delay_lease":`...)
		b = strconv.AppendInt(b, r.DelayLease, 10)
	}
	if r.Token != 0 {
		b = append(b, `,"token":`...)
		b = strconv.AppendUint(b, r.Token, 10)
	}
	if r.Revoked {
		b = append(b, `,"revoked":true`...)
	}
	if r.UpdatedAt != 0 {
		b = append(b, `,"updated_at_ms":`...)
		b = strconv.AppendInt(b, r.UpdatedAt, 10)
	}
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string exactly as encoding/json
// writes it: HTML-safe (<, > and & escaped), invalid UTF-8 replaced by
// U+FFFD, U+2028 and U+2029 escaped. Holders and metadata are validated
// plain text, but the engine does not rely on that.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
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
	b, _, err := e.readTokenBase(ctx, octx)
	return b, err
}

// readTokenBase reads (or first writes) the token base from etcd, and
// returns it with the header of etcd's answer: the cluster and the
// revision it was read at.
func (e *Engine) readTokenBase(ctx, octx context.Context) (uint64, *pb.ResponseHeader, error) {
	key := e.prefix + "token-base"
	candidate := strconv.FormatUint(uint64(time.Now().UnixMilli())<<10, 10)
	resp, err := e.client.Txn(octx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, candidate)).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return 0, nil, storeErr(ctx, "read the token base", err)
	}
	value := candidate
	if !resp.Succeeded {
		value = string(resp.Responses[0].GetResponseRange().Kvs[0].Value)
	}
	b, err := strconv.ParseUint(value, 10, 64)
	if err != nil || b == 0 {
		return 0, nil, fmt.Errorf("etcd engine: corrupt token base under %s", key)
	}
	e.base.Store(b)
	return b, resp.Header, nil
}

func parseRecord(id locklock.ID, what string, value []byte) (record, error) {
	r, ok := decodeRecord(value)
	if !ok {
		if err := json.Unmarshal(value, &r); err != nil {
			return record{}, fmt.Errorf("etcd engine: corrupt %s record for %s: %w", what, id, err)
		}
	}
	if len(r.Metadata) == 0 {
		r.Metadata = nil // a lock without metadata has nil, as given
	}
	return r, nil
}

// lock is the lock r describes, without its token.
func (r *record) lock(id locklock.ID, readRev int64) locklock.Lock {
	return locklock.Lock{
		ID:         id,
		AcquiredAt: time.UnixMilli(r.AcquiredAt).UTC(),
		ExpiresAt:  time.UnixMilli(r.ExpiresAt).UTC(),
		Guard:      locklock.Guard(r.Guard),
		Revision:   readRev,
		Holder:     r.Holder,
		Metadata:   r.Metadata,
		LockDelay:  time.Duration(r.LockDelay) * time.Millisecond,
		Revoked:    r.Revoked,
	}
}

// decode rebuilds the lock stored under id's lock key from its value and
// create revision, and the revision it was read at; it also returns the
// lease of its delay record.
func (e *Engine) decode(id locklock.ID, value []byte, createRev, readRev int64) (locklock.Lock, clientv3.LeaseID, error) {
	r, err := parseRecord(id, "lock", value)
	if err != nil {
		return locklock.Lock{}, 0, err
	}
	l := r.lock(id, readRev)
	l.Token = e.base.Load() + uint64(createRev)
	return l, clientv3.LeaseID(r.DelayLease), nil
}

// decodeDelay rebuilds the lost lock from the delay record under id's delay
// key, marked Ended. A record without a token was written by the
// transaction that created the lock, whose revision — the lock key's create
// revision — is the key's mod revision.
func (e *Engine) decodeDelay(id locklock.ID, value []byte, modRev, readRev int64) (locklock.Lock, error) {
	r, err := parseRecord(id, "delay", value)
	if err != nil {
		return locklock.Lock{}, err
	}
	l := r.lock(id, readRev)
	l.Token = r.Token
	if l.Token == 0 {
		l.Token = e.base.Load() + uint64(modRev)
	}
	l.Ended = true
	return l, nil
}
