package badger

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/locklock/locklock/locklock"
)

// Slot records (keys.go: t\x00<id>\x00<slot>). The semaphore's ID and the
// slot's id are the key; the value is, in version 1:
//
//	1 | acquiredAt millis (int64 BE) | expiresAt millis (int64 BE) | token (uint64 BE)
//	  | limit (uvarint) | weight (uvarint)
//	  | guard length (uvarint) | guard
//	  | holder length (uvarint) | holder
//	  | metadata members, as in a lock record (record.go)
//
// The guard is the salted hash of the secret, never the secret. A reader
// refuses unknown versions, out-of-range numbers and trailing bytes as
// corrupt rather than guess.
//
// Semaphore heads (h\x00<id>) hold 1 | the number of slot records
// (uvarint, at least 1: a semaphore without records has no head).
const (
	slotRecordV1     = 1
	slotRecordHeader = 1 + 8 + 8 + 8
	headV1           = 1
)

// normalizeSlot gives a slot the form the engine stores exactly, as
// normalize does for a lock: UTC times at millisecond precision, no empty
// metadata map, no ObservedAt or Revision.
func normalizeSlot(s locklock.Slot) locklock.Slot {
	s.AcquiredAt = millis(s.AcquiredAt)
	s.ExpiresAt = millis(s.ExpiresAt)
	if len(s.Metadata) == 0 {
		s.Metadata = nil
	}
	s.ObservedAt = time.Time{}
	s.Revision = 0
	return s
}

// encodeSlot writes s (normalized).
func encodeSlot(s locklock.Slot) []byte {
	b := make([]byte, 0, slotRecordHeader+4*binary.MaxVarintLen64+len(s.Guard)+len(s.Holder)+metadataSize(s.Metadata))
	b = append(b, slotRecordV1)
	b = binary.BigEndian.AppendUint64(b, uint64(s.AcquiredAt.UnixMilli()))
	b = binary.BigEndian.AppendUint64(b, uint64(s.ExpiresAt.UnixMilli()))
	b = binary.BigEndian.AppendUint64(b, s.Token)
	b = binary.AppendUvarint(b, uint64(max(s.Limit, 0)))
	b = binary.AppendUvarint(b, uint64(max(s.Weight, 0)))
	b = appendBytes(b, string(s.Guard))
	b = appendBytes(b, s.Holder)
	return appendMetadata(b, s.Metadata)
}

// decodeSlot reads a slot record. Every string it returns is a copy: v
// belongs to Badger and is valid only during the read.
func decodeSlot(id locklock.ID, slot string, v []byte) (locklock.Slot, error) {
	if len(v) < slotRecordHeader || v[0] != slotRecordV1 {
		return locklock.Slot{}, corruptSlot(id, slot, v, "bad length or version")
	}
	s := locklock.Slot{
		Semaphore:  id,
		ID:         slot,
		AcquiredAt: time.UnixMilli(int64(binary.BigEndian.Uint64(v[1:]))).UTC(),
		ExpiresAt:  time.UnixMilli(int64(binary.BigEndian.Uint64(v[9:]))).UTC(),
		Token:      binary.BigEndian.Uint64(v[17:]),
	}
	r := reader{b: v[slotRecordHeader:]}
	limit, weight := r.uvarint(), r.uvarint()
	if limit > locklock.MaxSemaphoreLimit || weight > limit {
		return locklock.Slot{}, corruptSlot(id, slot, v, "limit or weight out of range")
	}
	s.Limit, s.Weight = int(limit), int(weight)
	s.Guard = locklock.Guard(r.bytes())
	s.Holder = string(r.bytes())
	var why string
	if s.Metadata, why = r.metadata(); why != "" {
		return locklock.Slot{}, corruptSlot(id, slot, v, why)
	}
	if r.bad || len(r.b) != 0 {
		return locklock.Slot{}, corruptSlot(id, slot, v, "truncated or trailing bytes")
	}
	return s, nil
}

func corruptSlot(id locklock.ID, slot string, v []byte, why string) error {
	return fmt.Errorf("%w: slot record %s of semaphore %s (%d bytes, version %d): %s", errCorrupt, slot, id, len(v), firstByte(v), why)
}

func encodeHead(count int) []byte {
	return binary.AppendUvarint([]byte{headV1}, uint64(count))
}

func decodeHead(id locklock.ID, v []byte) (int, error) {
	if len(v) < 2 || v[0] != headV1 {
		return 0, fmt.Errorf("%w: semaphore head of %s (%d bytes, version %d)", errCorrupt, id, len(v), firstByte(v))
	}
	r := reader{b: v[1:]}
	n := r.uvarint()
	if r.bad || len(r.b) != 0 || n > 1<<31 {
		return 0, fmt.Errorf("%w: semaphore head of %s: bad count", errCorrupt, id)
	}
	return int(n), nil
}
