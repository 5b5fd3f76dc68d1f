package locklock

import (
	"errors"
	"fmt"
	"time"

	"github.com/locklock/locklock/internal/abbrev"
)

// Sentinel errors. Every error the Service and engines return wraps one of
// these, so callers (the HTTP transport, the Go client, tests) decide with
// errors.Is and never by comparing strings.
var (
	// ErrHeld: the lock is held by someone else. The concrete error is a
	// *HeldError that carries the holder's lock (without its secret).
	ErrHeld = errors.New("lock is held")
	// ErrNotFound: no such lock — never acquired, released, or expired.
	ErrNotFound = errors.New("lock not found")
	// ErrDelayed: the lock ended (expired or was revoked) and its lock-delay
	// still keeps others off it (API.md §8). The concrete error is a
	// *DelayedError.
	ErrDelayed = errors.New("lock is in its lock-delay")
	// ErrSemaphoreFull: a slot does not fit under the semaphore's limit
	// (API.md §10). The concrete error is a *FullError.
	ErrSemaphoreFull = errors.New("semaphore is full")
	// ErrLimitMismatch: the semaphore has live slots with another limit.
	// The concrete error is a *LimitMismatchError.
	ErrLimitMismatch = errors.New("semaphore limit mismatch")
	// ErrSemaphoreNotFound: the semaphore has no live slot.
	ErrSemaphoreNotFound = errors.New("semaphore not found")
	// ErrSlotNotFound: no such slot — never acquired, released, expired,
	// or not a slot id at all.
	ErrSlotNotFound = errors.New("slot not found")
	// ErrSecretMismatch: the lock is protected and the secret is missing or wrong.
	ErrSecretMismatch = errors.New("secret does not match")

	// ErrInvalidUUID: the name of a uuid lock is not an RFC 4122 UUID.
	ErrInvalidUUID = errors.New("invalid uuid")
	// ErrInvalidName: the name of a key lock breaks the name rules.
	ErrInvalidName = errors.New("invalid lock name")
	// ErrInvalidArgument: a request field is out of range or malformed.
	ErrInvalidArgument = errors.New("invalid argument")

	// The caller's errors. The Service never returns them: transports and
	// authenticators do (an authenticator given to the HTTP transport
	// returns an error wrapping ErrUnauthorized or ErrForbidden to get 401
	// or 403), and the Go client maps answers to them. They live here, once,
	// so that client and server code match the same values with errors.Is.

	// ErrUnauthorized: the request carries no API key, or an unknown one,
	// where one is needed (HTTP 401).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden: the API key is known but may not do this (HTTP 403).
	ErrForbidden = errors.New("forbidden")
	// ErrRateLimited: the caller is over its plan's request rate (HTTP 429).
	ErrRateLimited = errors.New("rate limited")

	// ErrUnavailable: storage cannot answer right now; retrying later may work.
	ErrUnavailable = errors.New("unavailable")
	// ErrClosed: the engine was closed. It wraps ErrUnavailable.
	ErrClosed = fmt.Errorf("%w: engine closed", ErrUnavailable)
	// ErrShuttingDown: the service is draining and no longer waits for locks.
	// It wraps ErrUnavailable.
	ErrShuttingDown = fmt.Errorf("%w: server shutting down", ErrUnavailable)
	// ErrTooManyWaiters: a long-poll acquire found the lock held and could
	// not wait, because as many clients as the service allows (per lock or
	// in total, see WithMaxWaitersPerLock and WithMaxWaiters) already wait.
	// It wraps ErrUnavailable: the HTTP answer is 503 with Retry-After.
	ErrTooManyWaiters = fmt.Errorf("%w: too many waiters", ErrUnavailable)
	// ErrStorageFull: the engine's disk is nearly full, so it refuses a
	// write (acquire, refresh, and when nearly out, release) until space is
	// freed; reads still work. It wraps ErrUnavailable: the HTTP answer is
	// 503 with Retry-After.
	ErrStorageFull = fmt.Errorf("%w: storage nearly full", ErrUnavailable)
)

// HeldError reports that a lock is held, with the holder's lock as observed.
// errors.Is(err, ErrHeld) is true for it.
type HeldError struct {
	// Lock is the holder's lock. It is the zero Lock when a wait timed out
	// at the instant the lock was between holders.
	Lock Lock
}

func (e *HeldError) Error() string {
	if e.Lock.ExpiresAt.IsZero() {
		return ErrHeld.Error()
	}
	return fmt.Sprintf("lock %s is held until %s", abbrev.String(e.Lock.Name), e.Lock.ExpiresAt.UTC().Format(timeFormat))
}

// Unwrap makes errors.Is(err, ErrHeld) true.
func (e *HeldError) Unwrap() error { return ErrHeld }

// DelayedError reports that a lock-delay bars an acquire. errors.Is(err,
// ErrDelayed) is true for it.
type DelayedError struct {
	// Lock is the lost lock's record (Ended set); its DelayedUntil is when
	// the delay runs out.
	Lock Lock
}

func (e *DelayedError) Error() string {
	if e.Lock.Revoked {
		return fmt.Sprintf("lock %s was revoked by an operator at %s and its lock-delay keeps everyone off it, its last holder too, until %s",
			abbrev.String(e.Lock.Name), e.Lock.ExpiresAt.UTC().Format(timeFormat), e.Lock.DelayedUntil().UTC().Format(timeFormat))
	}
	return fmt.Sprintf("lock %s ended at %s and its lock-delay keeps others off it until %s",
		abbrev.String(e.Lock.Name), e.Lock.ExpiresAt.UTC().Format(timeFormat), e.Lock.DelayedUntil().UTC().Format(timeFormat))
}

// Unwrap makes errors.Is(err, ErrDelayed) true.
func (e *DelayedError) Unwrap() error { return ErrDelayed }

// NotFoundError reports that no live lock has the ID. errors.Is(err,
// ErrNotFound) is true for it.
type NotFoundError struct {
	ID ID
	// DelayedUntil, when not zero, says a lock-delay keeps the lock free
	// until then (API.md §8: GET answers 404 with delayed_until).
	DelayedUntil time.Time
	// Revision is the storage's revision the lock was found missing at
	// (etcd), as Lock.Revision is for a lock found; zero without one.
	Revision int64
}

func (e *NotFoundError) Error() string {
	if !e.DelayedUntil.IsZero() {
		return fmt.Sprintf("%s: no lock %s: it ended and its lock-delay runs until %s", ErrNotFound, abbrev.String(e.ID.Name), e.DelayedUntil.UTC().Format(timeFormat))
	}
	return fmt.Sprintf("%s: no lock %s (never acquired, released, or expired)", ErrNotFound, abbrev.String(e.ID.Name))
}

// Unwrap makes errors.Is(err, ErrNotFound) true.
func (e *NotFoundError) Unwrap() error { return ErrNotFound }

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidArgument}, args...)...)
}
