package badger

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/locklock/locklock/locklock"
)

// Key layout. Every key starts with a one-byte table tag and a \x00, so the
// tables never interleave and each is a prefix scan:
//
//	l\x00<namespace>\x00<kind>\x00<name>                   → lock record
//	x\x00<expiresAt, 8 bytes>\x00<namespace>\x00<kind>\x00<name> → empty (expiry index)
//	s\x00token                                             → the lowest fencing token the next start may issue (tokens.go)
//
// Namespaces, kinds and names never contain \x00 (the core's naming rules
// forbid it and the engine rejects it), so \x00 is an unambiguous separator
// and the byte order of lock keys within one namespace and kind is the name
// order that List needs.
//
// The expiry is Unix milliseconds as a big-endian uint64 with the sign bit
// flipped, so byte order equals time order even for instants before 1970;
// Sweep therefore reads the index from the start and stops at the first
// entry that is not yet due. Each lock has exactly one index entry, written
// and deleted in the same transaction as its record.
//
// A lock record is: version byte (1), acquiredAt millis (int64 BE),
// expiresAt millis (int64 BE), fencing token (uint64 BE), then the guard's
// bytes (empty for an unprotected lock). The ID is not repeated in the value:
// it is the key.
var (
	lockPrefix   = []byte("l\x00")
	expiryPrefix = []byte("x\x00")
	seqKey       = []byte("s\x00token")
)

const (
	sep           = 0
	recordVersion = 1
	recordHeader  = 1 + 8 + 8 + 8
	// expiryKeyMin is the length of an expiry key before the ID part.
	expiryKeyMin = 2 + 8 + 1
)

// errCorrupt marks a stored key or record the engine cannot read. It does not
// wrap ErrUnavailable: retrying will not help, an operator has to look.
var errCorrupt = errors.New("badger engine: corrupt data")

// checkID refuses identifiers that would break the key layout. The Service
// only passes validated IDs; this guards direct users of the engine.
func checkID(id locklock.ID) error {
	if strings.IndexByte(id.Namespace, sep) >= 0 || strings.IndexByte(string(id.Kind), sep) >= 0 ||
		strings.IndexByte(id.Name, sep) >= 0 {
		return fmt.Errorf("%w: lock identifiers must not contain NUL bytes", locklock.ErrInvalidArgument)
	}
	return nil
}

// appendID appends <namespace>\x00<kind>\x00<name>.
func appendID(b []byte, id locklock.ID) []byte {
	b = append(b, id.Namespace...)
	b = append(b, sep)
	b = append(b, id.Kind...)
	b = append(b, sep)
	return append(b, id.Name...)
}

func parseID(b []byte) (locklock.ID, error) {
	ns, rest, ok := bytes.Cut(b, []byte{sep})
	if !ok {
		return locklock.ID{}, fmt.Errorf("%w: key %q", errCorrupt, b)
	}
	kind, name, ok := bytes.Cut(rest, []byte{sep})
	if !ok {
		return locklock.ID{}, fmt.Errorf("%w: key %q", errCorrupt, b)
	}
	return locklock.ID{Namespace: string(ns), Kind: locklock.Kind(kind), Name: string(name)}, nil
}

func lockKey(id locklock.ID) []byte {
	b := make([]byte, 0, len(lockPrefix)+len(id.Namespace)+len(id.Kind)+len(id.Name)+2)
	return appendID(append(b, lockPrefix...), id)
}

// listPrefix is the common prefix of the lock keys of one namespace and kind.
func listPrefix(ns string, kind locklock.Kind) []byte {
	b := make([]byte, 0, len(lockPrefix)+len(ns)+len(kind)+2)
	b = append(b, lockPrefix...)
	b = append(b, ns...)
	b = append(b, sep)
	b = append(b, kind...)
	return append(b, sep)
}

func parseLockKey(k []byte) (locklock.ID, error) {
	if !bytes.HasPrefix(k, lockPrefix) {
		return locklock.ID{}, fmt.Errorf("%w: not a lock key %q", errCorrupt, k)
	}
	return parseID(k[len(lockPrefix):])
}

// orderedMillis maps Unix milliseconds to a uint64 whose big-endian bytes sort
// in time order.
func orderedMillis(t time.Time) uint64 { return uint64(t.UnixMilli()) ^ (1 << 63) }

func putOrdered(b []byte, t time.Time) { binary.BigEndian.PutUint64(b, orderedMillis(t)) }

func expiryKey(expiresAt time.Time, id locklock.ID) []byte {
	b := make([]byte, 0, expiryKeyMin+len(id.Namespace)+len(id.Kind)+len(id.Name)+2)
	b = append(b, expiryPrefix...)
	b = binary.BigEndian.AppendUint64(b, orderedMillis(expiresAt))
	b = append(b, sep)
	return appendID(b, id)
}

func parseExpiryKey(k []byte) (time.Time, locklock.ID, error) {
	if len(k) < expiryKeyMin || !bytes.HasPrefix(k, expiryPrefix) || k[expiryKeyMin-1] != sep {
		return time.Time{}, locklock.ID{}, fmt.Errorf("%w: not an expiry key %q", errCorrupt, k)
	}
	ms := int64(binary.BigEndian.Uint64(k[len(expiryPrefix):]) ^ (1 << 63))
	id, err := parseID(k[expiryKeyMin:])
	if err != nil {
		return time.Time{}, locklock.ID{}, err
	}
	return time.UnixMilli(ms).UTC(), id, nil
}

// normalize gives a lock the form the engine stores exactly: UTC times at
// millisecond precision, no ObservedAt. What TryAcquire and Refresh return is
// then equal (==) to what Get later decodes.
func normalize(l locklock.Lock) locklock.Lock {
	l.AcquiredAt = millis(l.AcquiredAt)
	l.ExpiresAt = millis(l.ExpiresAt)
	l.ObservedAt = time.Time{}
	return l
}

func millis(t time.Time) time.Time { return time.UnixMilli(t.UnixMilli()).UTC() }

func encodeRecord(l locklock.Lock) []byte {
	b := make([]byte, 0, recordHeader+len(l.Guard))
	b = append(b, recordVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(l.AcquiredAt.UnixMilli()))
	b = binary.BigEndian.AppendUint64(b, uint64(l.ExpiresAt.UnixMilli()))
	b = binary.BigEndian.AppendUint64(b, l.Token)
	return append(b, l.Guard...)
}

func decodeRecord(id locklock.ID, v []byte) (locklock.Lock, error) {
	if len(v) < recordHeader || v[0] != recordVersion {
		return locklock.Lock{}, fmt.Errorf("%w: lock record for %s (%d bytes, version %d)", errCorrupt, id, len(v), firstByte(v))
	}
	return locklock.Lock{
		ID:         id,
		AcquiredAt: time.UnixMilli(int64(binary.BigEndian.Uint64(v[1:]))).UTC(),
		ExpiresAt:  time.UnixMilli(int64(binary.BigEndian.Uint64(v[9:]))).UTC(),
		Token:      binary.BigEndian.Uint64(v[17:]),
		Guard:      locklock.Guard(v[recordHeader:]), // string conversion copies out of Badger's buffer
	}, nil
}

func firstByte(v []byte) int {
	if len(v) == 0 {
		return -1
	}
	return int(v[0])
}
