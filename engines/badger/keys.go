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
//	l\x00<namespace>\x00<kind>\x00<name>                      → lock record (record.go)
//	x\x00<expiresAt, 8 bytes>\x00<namespace>\x00<kind>\x00<name>    → empty (expiry index: held locks)
//	d\x00<delayedUntil, 8 bytes>\x00<namespace>\x00<kind>\x00<name> → empty (delay index: ended locks)
//	s\x00token                                                → the lowest fencing token the next start may issue (tokens.go)
//	h\x00<namespace>\x00<kind>\x00<name>                      → semaphore head: how many slot records it has (semaphore.go)
//	t\x00<namespace>\x00<kind>\x00<name>\x00<slot>            → slot record (slotrecord.go)
//	y\x00<expiresAt, 8 bytes>\x00<namespace>\x00<kind>\x00<name>\x00<slot> → empty (slot expiry index)
//
// Namespaces, kinds and names never contain \x00 (the core's naming rules
// forbid it and the engine rejects it), so \x00 is an unambiguous separator
// and the byte order of lock keys within one namespace and kind is the name
// order that List needs.
//
// The expiry is Unix milliseconds as a big-endian uint64 with the sign bit
// flipped, so byte order equals time order even for instants before 1970;
// Sweep therefore reads each index from its start and stops at the first
// entry that is not yet due. Each record has exactly one index entry
// (indexKey), written and deleted in the same transaction as the record: in
// the expiry index at its ExpiresAt while the lock is held (not Ended), in
// the delay index at its DelayedUntil once it has ended and is kept only for
// its lock-delay. Two indexes rather than one keep the expiry index's
// entries after now exactly the live locks, which CountHeld counts from the
// keys alone, while the sweeper still finds an ended record when its
// lock-delay runs out. (Directories written before lock-delays existed have
// no delay index and no ended records: they need no conversion.)
//
// Semaphores (API.md §10) have tables of their own, so a lock and a
// semaphore may share an ID. A semaphore's slot records share the prefix
// t\x00<id>\x00, so one prefix scan reads its slots, and the slot records of
// one namespace and kind come in name order, which ListSemaphores needs
// (a name's slots, <name>\x00…, sort before any longer name that starts
// with it, as \x00 is the smallest byte). Each slot has one entry in the
// slot expiry index, at its ExpiresAt, for Sweep; slots have no lock-delay.
// The head exists exactly while the semaphore has slot records (live or
// expired, not yet deleted); why it is there at all is in semaphore.go.
var (
	lockPrefix   = []byte("l\x00")
	expiryPrefix = []byte("x\x00")
	delayPrefix  = []byte("d\x00")
	seqKey       = []byte("s\x00token")

	headPrefix       = []byte("h\x00")
	slotPrefix       = []byte("t\x00")
	slotExpiryPrefix = []byte("y\x00")
)

const (
	sep = 0
	// expiryKeyMin is the length of an index key (either index) before the
	// ID part.
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
	return timeKey(expiryPrefix, expiresAt, id)
}

func delayKey(delayedUntil time.Time, id locklock.ID) []byte {
	return timeKey(delayPrefix, delayedUntil, id)
}

// indexKey is l's one index entry: see the key layout above.
func indexKey(l locklock.Lock) []byte {
	if l.Ended {
		// ExpiresAt+LockDelay is DelayedUntil; an ended record is only kept
		// while it has a lock-delay, but the key must exist regardless.
		return delayKey(l.ExpiresAt.Add(l.LockDelay), l.ID)
	}
	return expiryKey(l.ExpiresAt, l.ID)
}

func timeKey(prefix []byte, at time.Time, id locklock.ID) []byte {
	b := make([]byte, 0, expiryKeyMin+len(id.Namespace)+len(id.Kind)+len(id.Name)+2)
	b = append(b, prefix...)
	b = binary.BigEndian.AppendUint64(b, orderedMillis(at))
	b = append(b, sep)
	return appendID(b, id)
}

func parseExpiryKey(k []byte) (time.Time, locklock.ID, error) {
	return parseTimeKey(expiryPrefix, k)
}

// parseTimeKey reads a key of the index with the given prefix.
func parseTimeKey(prefix, k []byte) (time.Time, locklock.ID, error) {
	if len(k) < expiryKeyMin || !bytes.HasPrefix(k, prefix) || k[expiryKeyMin-1] != sep {
		return time.Time{}, locklock.ID{}, fmt.Errorf("%w: not an index key %q", errCorrupt, k)
	}
	ms := int64(binary.BigEndian.Uint64(k[len(prefix):]) ^ (1 << 63))
	id, err := parseID(k[expiryKeyMin:])
	if err != nil {
		return time.Time{}, locklock.ID{}, err
	}
	return time.UnixMilli(ms).UTC(), id, nil
}

// checkSlotID refuses a slot id that would break the key layout. The
// Service only passes well-formed ids (locklock.ValidSlotID).
func checkSlotID(slot string) bool {
	return slot != "" && strings.IndexByte(slot, sep) < 0
}

func headKey(id locklock.ID) []byte {
	b := make([]byte, 0, len(headPrefix)+len(id.Namespace)+len(id.Kind)+len(id.Name)+2)
	return appendID(append(b, headPrefix...), id)
}

// semSlotsPrefix is the common prefix of id's slot records.
func semSlotsPrefix(id locklock.ID) []byte {
	b := make([]byte, 0, len(slotPrefix)+len(id.Namespace)+len(id.Kind)+len(id.Name)+3+locklock.SlotIDLen)
	b = appendID(append(b, slotPrefix...), id)
	return append(b, sep)
}

func slotKey(id locklock.ID, slot string) []byte {
	return append(semSlotsPrefix(id), slot...)
}

// slotListPrefix is the common prefix of the slot records of one namespace
// and kind.
func slotListPrefix(ns string, kind locklock.Kind) []byte {
	b := make([]byte, 0, len(slotPrefix)+len(ns)+len(kind)+2)
	b = append(b, slotPrefix...)
	b = append(b, ns...)
	b = append(b, sep)
	b = append(b, kind...)
	return append(b, sep)
}

// slotExpiryKey is the slot expiry index entry of slot of id at expiresAt.
func slotExpiryKey(expiresAt time.Time, id locklock.ID, slot string) []byte {
	b := make([]byte, 0, expiryKeyMin+len(id.Namespace)+len(id.Kind)+len(id.Name)+3+len(slot))
	b = append(b, slotExpiryPrefix...)
	b = binary.BigEndian.AppendUint64(b, orderedMillis(expiresAt))
	b = append(b, sep)
	b = appendID(b, id)
	b = append(b, sep)
	return append(b, slot...)
}

// parseSlotRef reads <namespace>\x00<kind>\x00<name>\x00<slot>.
func parseSlotRef(b []byte) (locklock.ID, string, error) {
	id, err := parseID(b)
	if err != nil {
		return locklock.ID{}, "", err
	}
	name, slot, ok := strings.Cut(id.Name, "\x00")
	if !ok {
		return locklock.ID{}, "", fmt.Errorf("%w: not a slot key %q", errCorrupt, b)
	}
	id.Name = name
	return id, slot, nil
}

// parseSlotExpiryKey reads a key of the slot expiry index.
func parseSlotExpiryKey(k []byte) (time.Time, locklock.ID, string, error) {
	if len(k) < expiryKeyMin || !bytes.HasPrefix(k, slotExpiryPrefix) || k[expiryKeyMin-1] != sep {
		return time.Time{}, locklock.ID{}, "", fmt.Errorf("%w: not a slot index key %q", errCorrupt, k)
	}
	ms := int64(binary.BigEndian.Uint64(k[len(slotExpiryPrefix):]) ^ (1 << 63))
	id, slot, err := parseSlotRef(k[expiryKeyMin:])
	if err != nil {
		return time.Time{}, locklock.ID{}, "", err
	}
	return time.UnixMilli(ms).UTC(), id, slot, nil
}
