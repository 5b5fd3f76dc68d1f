package locklock

import (
	"fmt"
	"time"

	"github.com/locklock/locklock/internal/abbrev"
)

// timeFormat is how times appear in messages and on the wire: UTC with
// millisecond precision, the precision the Service keeps.
const timeFormat = "2006-01-02T15:04:05.000Z07:00"

// Kind says how a lock is named.
type Kind string

const (
	// KindUUID locks are named by an RFC 4122 UUID (lower-cased).
	KindUUID Kind = "uuid"
	// KindKey locks carry a custom name chosen by the caller.
	KindKey Kind = "key"
)

// DefaultNamespace is the namespace of anonymous callers.
const DefaultNamespace = "public"

// MaxNameLen is the longest custom lock name.
const MaxNameLen = 255

// ID identifies a lock. Two IDs that differ in any field are different locks;
// in particular two namespaces never see each other's locks.
type ID struct {
	Namespace string
	Kind      Kind
	Name      string
}

func (id ID) String() string {
	return id.Namespace + "/" + string(id.Kind) + "/" + id.Name
}

// NewID checks kind and name against the naming rules of API.md §1 and returns
// the canonical ID (UUIDs in lower case). The namespace must be valid too.
func NewID(namespace string, kind Kind, name string) (ID, error) {
	if err := ValidateNamespace(namespace); err != nil {
		return ID{}, err
	}
	switch kind {
	case KindUUID:
		canonical, ok := canonicalUUID(name)
		if !ok {
			return ID{}, fmt.Errorf("%w: %q is not a UUID (8-4-4-4-12 hex digits)", ErrInvalidUUID, abbrev.String(name))
		}
		name = canonical
	case KindKey:
		if err := validateKeyName(name); err != nil {
			return ID{}, err
		}
	default:
		return ID{}, invalidf("unknown lock kind %q", abbrev.String(string(kind)))
	}
	return ID{Namespace: namespace, Kind: kind, Name: name}, nil
}

// Validate reports whether id is canonical, as NewID would return it.
func (id ID) Validate() error {
	canonical, err := NewID(id.Namespace, id.Kind, id.Name)
	if err != nil {
		return err
	}
	if canonical != id {
		return fmt.Errorf("%w: %q is not in lower case", ErrInvalidUUID, id.Name)
	}
	return nil
}

// ValidateNamespace accepts DNS-label-shaped namespaces (1–63 characters of
// a-z, 0-9 and '-', not starting or ending with '-'), because a namespace may
// also be served as a custom subdomain.
func ValidateNamespace(ns string) error {
	if len(ns) == 0 || len(ns) > 63 || ns[0] == '-' || ns[len(ns)-1] == '-' {
		return invalidf("namespace %q must be 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'", abbrev.String(ns))
	}
	for i := 0; i < len(ns); i++ {
		c := ns[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return invalidf("namespace %q must be 1-63 characters of a-z, 0-9 and '-'", abbrev.String(ns))
		}
	}
	return nil
}

func validateKeyName(name string) error {
	if len(name) == 0 || len(name) > MaxNameLen {
		return fmt.Errorf("%w: a lock name is 1-%d characters long, got %d", ErrInvalidName, MaxNameLen, len(name))
	}
	for i := 0; i < len(name); i++ {
		if !nameChar(name[i]) {
			return fmt.Errorf("%w: %q may contain only A-Z a-z 0-9 . _ - : ~", ErrInvalidName, abbrev.String(name))
		}
	}
	return nil
}

func nameChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '.' || c == '_' || c == '-' || c == ':' || c == '~'
}

// canonicalUUID accepts the 36-character textual form of any UUID version,
// in any case, and returns it in lower case.
func canonicalUUID(s string) (string, bool) {
	if len(s) != 36 {
		return "", false
	}
	var b [36]byte
	lower := true
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return "", false
			}
		default:
			switch {
			case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
			case c >= 'A' && c <= 'F':
				c += 'a' - 'A'
				lower = false
			default:
				return "", false
			}
		}
		b[i] = c
	}
	if lower {
		return s, true // already canonical: no copy
	}
	return string(b[:]), true
}

// Lock is a held lock as stored by an engine.
type Lock struct {
	ID
	// AcquiredAt is when the lock was granted; a refresh keeps it.
	AcquiredAt time.Time
	// ExpiresAt is when the lock frees itself.
	ExpiresAt time.Time
	// Token is the fencing token: strictly greater than every token issued
	// before for the same ID. A refresh keeps it.
	Token uint64
	// Guard is the salted hash of the lock's secret; zero when unprotected.
	Guard Guard
	// ObservedAt is the instant the Service judged this lock at (its clock
	// reading for the operation). Engines need not set it.
	ObservedAt time.Time
	// Revision is the storage's revision at which the engine read this lock
	// (etcd), so that a watch from the next revision misses no change. Zero
	// for engines without revisions.
	Revision int64

	// Holder says who holds the lock (API.md §8); "" when not set. It is
	// not a secret.
	Holder string
	// Metadata are the lock's labels; nil when not set. A map given to or
	// returned by an engine is never modified afterwards: a change replaces
	// the whole map, so engines and events may share it.
	Metadata map[string]string
	// LockDelay, when above zero, keeps everyone else off the lock for this
	// long after it expires or is revoked (API.md §8). Whole seconds.
	LockDelay time.Duration
	// Ended marks a record an engine keeps only for its lock-delay: the lock
	// ended (expired, or was revoked) at ExpiresAt and is no longer held.
	// An engine that judges a lock with a lock-delay expired sets it in the
	// same atomic step, so that no later step — even one carrying an
	// earlier clock reading — finds the lock live again.
	Ended bool
	// Revoked says an operator ended the lock (a forced release): its
	// lock-delay then holds for its own secret too.
	Revoked bool
	// Reclaims is set only on the lock given to Engine.TryAcquire: the
	// token of an expired lock whose lock-delay this acquire may pass,
	// because it carries that lock's secret. Zero: none.
	Reclaims uint64
}

// Protected says whether a secret guards the lock.
func (l Lock) Protected() bool { return l.Guard.Protected() }

// Live says whether the lock is still held at now.
func (l Lock) Live(now time.Time) bool { return !l.Ended && now.Before(l.ExpiresAt) }

// DelayedUntil is when the lock-delay that follows the lock's end runs out:
// ExpiresAt plus LockDelay (a revoked lock's ExpiresAt is the moment it was
// revoked). Zero without a lock-delay.
func (l Lock) DelayedUntil() time.Time {
	if l.LockDelay <= 0 {
		return time.Time{}
	}
	return l.ExpiresAt.Add(l.LockDelay)
}

// Delaying says whether the stored record bars acquires at now: the lock is
// no longer live, but its lock-delay has not run out. An engine keeps such a
// record (with Ended set) until then, and sweeps it after.
func (l Lock) Delaying(now time.Time) bool {
	return !l.Live(now) && l.LockDelay > 0 && now.Before(l.DelayedUntil())
}

// Gone says whether the stored record may be deleted at now: neither live
// nor in a lock-delay.
func (l Lock) Gone(now time.Time) bool { return !l.Live(now) && !l.Delaying(now) }

// Bars is the rule every engine's TryAcquire applies to the record it finds
// for cand.ID (a record that is not Gone): ErrHeld (as *HeldError) while it
// is live, ErrDelayed (as *DelayedError) while its lock-delay runs unless
// cand reclaims it, nil when cand may take the lock.
func (l Lock) Bars(cand Lock, now time.Time) error {
	switch {
	case l.Live(now):
		return &HeldError{Lock: l}
	case !l.Delaying(now):
		return nil
	case cand.Reclaims != 0 && cand.Reclaims == l.Token && !l.Revoked:
		return nil
	}
	return &DelayedError{Lock: l}
}

// End is the record an engine keeps after judging l expired at now: nil when
// the lock has no lock-delay left (delete it), else l marked Ended.
func (l Lock) End(now time.Time) (Lock, bool) {
	l.Ended = true
	return l, l.Delaying(now)
}

// Revoke is the record an engine keeps after an operator ends l at now (a
// forced release, API.md §11): l ended at now and marked Revoked, kept
// (keep true) while its lock-delay runs — barring every acquire, its own
// secret's too — else nothing (delete it).
func (l Lock) Revoke(now time.Time) (Lock, bool) {
	l.ExpiresAt, l.Revoked = now, true
	return l.End(now)
}

// Remaining is how long the lock had left when it was observed (never negative).
func (l Lock) Remaining() time.Duration {
	d := l.ExpiresAt.Sub(l.ObservedAt)
	if d < 0 {
		return 0
	}
	return d
}
