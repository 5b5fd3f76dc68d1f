package badger

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/locklock/locklock/locklock"
)

// Lock records. The ID is not repeated in the value: it is the key.
//
// Version 1, written before holders, metadata and lock-delays existed (and
// still read, so that a data directory survives the upgrade):
//
//	1 | acquiredAt millis (int64 BE) | expiresAt millis (int64 BE) | token (uint64 BE) | guard bytes (the rest; empty when unprotected)
//
// Version 2, written now; the first 25 bytes are as in version 1, and every
// variable part carries its length, so that fields can follow the guard:
//
//	2 | acquiredAt | expiresAt | token | flags (1 byte: 1 ended, 2 revoked)
//	  | lock-delay millis (uvarint)
//	  | guard length (uvarint) | guard
//	  | holder length (uvarint) | holder
//	  | metadata members (uvarint) | per member, by name in byte order:
//	      name length (uvarint) | name | value length (uvarint) | value
//
// Members are written sorted so that one lock always encodes to the same
// bytes (Go's map order is random). The guard is the salted hash of the
// secret (locklock.Guard): the secret itself is never stored. A reader
// refuses unknown versions and flags, trailing bytes and unsorted or
// repeated names as corrupt rather than guess.
const (
	recordV1     = 1
	recordV2     = 2
	recordHeader = 1 + 8 + 8 + 8

	flagEnded   = 1 << 0
	flagRevoked = 1 << 1
	knownFlags  = flagEnded | flagRevoked
)

// normalize gives a lock the form the engine stores exactly: UTC times at
// millisecond precision, a lock-delay in whole milliseconds, no empty
// metadata map, no ObservedAt, Revision or Reclaims. What TryAcquire and
// Refresh return is then equal to what Get later decodes.
func normalize(l locklock.Lock) locklock.Lock {
	l.AcquiredAt = millis(l.AcquiredAt)
	l.ExpiresAt = millis(l.ExpiresAt)
	l.LockDelay = max(l.LockDelay.Truncate(time.Millisecond), 0)
	if len(l.Metadata) == 0 {
		l.Metadata = nil
	}
	l.ObservedAt = time.Time{}
	l.Revision = 0
	l.Reclaims = 0
	return l
}

func millis(t time.Time) time.Time { return time.UnixMilli(t.UnixMilli()).UTC() }

// encodeRecord writes l (normalized) in the current version.
func encodeRecord(l locklock.Lock) []byte {
	size := recordHeader + 1 + 4*binary.MaxVarintLen64 + len(l.Guard) + len(l.Holder) + metadataSize(l.Metadata)
	b := make([]byte, 0, size)
	b = append(b, recordV2)
	b = binary.BigEndian.AppendUint64(b, uint64(l.AcquiredAt.UnixMilli()))
	b = binary.BigEndian.AppendUint64(b, uint64(l.ExpiresAt.UnixMilli()))
	b = binary.BigEndian.AppendUint64(b, l.Token)
	var flags byte
	if l.Ended {
		flags |= flagEnded
	}
	if l.Revoked {
		flags |= flagRevoked
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, uint64(max(l.LockDelay.Milliseconds(), 0)))
	b = appendBytes(b, string(l.Guard))
	b = appendBytes(b, l.Holder)
	return appendMetadata(b, l.Metadata)
}

// metadataSize bounds the bytes appendMetadata appends for m.
func metadataSize(m map[string]string) int {
	size := binary.MaxVarintLen64
	for name, value := range m {
		size += 2*binary.MaxVarintLen64 + len(name) + len(value)
	}
	return size
}

// appendMetadata appends m's member count and members, by name in byte
// order (see the record layout above).
func appendMetadata(b []byte, m map[string]string) []byte {
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	slices.Sort(names)
	b = binary.AppendUvarint(b, uint64(len(names)))
	for _, name := range names {
		b = appendBytes(b, name)
		b = appendBytes(b, m[name])
	}
	return b
}

func appendBytes(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decodeRecord reads a record of either version. Every string it returns is
// a copy: v belongs to Badger and is valid only during the read.
func decodeRecord(id locklock.ID, v []byte) (locklock.Lock, error) {
	if len(v) < recordHeader || (v[0] != recordV1 && v[0] != recordV2) {
		return locklock.Lock{}, corruptRecord(id, v, "bad length or version")
	}
	l := locklock.Lock{
		ID:         id,
		AcquiredAt: time.UnixMilli(int64(binary.BigEndian.Uint64(v[1:]))).UTC(),
		ExpiresAt:  time.UnixMilli(int64(binary.BigEndian.Uint64(v[9:]))).UTC(),
		Token:      binary.BigEndian.Uint64(v[17:]),
	}
	if v[0] == recordV1 {
		l.Guard = locklock.Guard(v[recordHeader:]) // string conversion copies
		return l, nil
	}
	r := reader{b: v[recordHeader:]}
	flags := r.byte()
	if flags&^knownFlags != 0 {
		return locklock.Lock{}, corruptRecord(id, v, fmt.Sprintf("unknown flags %#x", flags))
	}
	l.Ended, l.Revoked = flags&flagEnded != 0, flags&flagRevoked != 0
	delay := r.uvarint()
	if delay > uint64(time.Duration(1<<63-1).Milliseconds()) {
		return locklock.Lock{}, corruptRecord(id, v, "lock-delay out of range")
	}
	l.LockDelay = time.Duration(delay) * time.Millisecond
	l.Guard = locklock.Guard(r.bytes())
	l.Holder = string(r.bytes())
	var why string
	if l.Metadata, why = r.metadata(); why != "" {
		return locklock.Lock{}, corruptRecord(id, v, why)
	}
	if r.bad || len(r.b) != 0 {
		return locklock.Lock{}, corruptRecord(id, v, "truncated or trailing bytes")
	}
	return l, nil
}

func corruptRecord(id locklock.ID, v []byte, why string) error {
	return fmt.Errorf("%w: lock record for %s (%d bytes, version %d): %s", errCorrupt, id, len(v), firstByte(v), why)
}

// reader takes a record apart; once a read runs past the end it sets bad
// and every later read returns nothing.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) byte() byte {
	if len(r.b) < 1 {
		r.bad = true
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) uvarint() uint64 {
	if r.bad {
		return 0
	}
	x, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.bad = true
		return 0
	}
	r.b = r.b[n:]
	return x
}

// metadata reads what appendMetadata wrote (nil for no members), or says
// why it is corrupt. A read past the end only sets bad.
func (r *reader) metadata() (map[string]string, string) {
	n := r.uvarint()
	if n > uint64(len(r.b)) { // every member takes at least 2 bytes
		return nil, "metadata count out of range"
	}
	if n == 0 {
		return nil, ""
	}
	m := make(map[string]string, n)
	prev := ""
	for i := range n {
		name, value := string(r.bytes()), string(r.bytes())
		if r.bad {
			break
		}
		if i > 0 && name <= prev {
			return nil, "metadata names not in order"
		}
		m[name], prev = value, name
	}
	return m, ""
}

func (r *reader) bytes() []byte {
	n := r.uvarint()
	if r.bad || n > uint64(len(r.b)) {
		r.bad = true
		return nil
	}
	s := r.b[:n]
	r.b = r.b[n:]
	return s
}

func firstByte(v []byte) int {
	if len(v) == 0 {
		return -1
	}
	return int(v[0])
}
