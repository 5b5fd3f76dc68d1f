package locklock

// AcquireOutcome is how an Acquire ended, for metrics.
type AcquireOutcome string

// The outcomes of Acquire.
const (
	OutcomeGranted    AcquireOutcome = "granted"    // a free lock, at once
	OutcomeReacquired AcquireOutcome = "reacquired" // the holder's retry (same secret): 200
	OutcomeHeld       AcquireOutcome = "held"       // held by another, no wait asked
	OutcomeDelayed    AcquireOutcome = "delayed"    // a lock-delay barred it (no wait, or the wait ended in it)
	OutcomeWaited     AcquireOutcome = "waited"     // granted after waiting
	OutcomeTimedOut   AcquireOutcome = "timed_out"  // still held when the wait ended
	// OutcomeTooManyWaiters: held, and the waiter caps allowed no wait.
	OutcomeTooManyWaiters AcquireOutcome = "too_many_waiters"
	// OutcomeInvalid: the request was refused for its input (a bad name,
	// secret, expires_in or wait) — the client's mistake, not the server's.
	OutcomeInvalid AcquireOutcome = "invalid"
	// OutcomeCanceled: the client went away (or its deadline passed) before
	// an answer, typically a long-poll waiter that hung up. Counted apart
	// from failed, so that an alert on failures is not paged by clients
	// leaving.
	OutcomeCanceled AcquireOutcome = "canceled"
	// OutcomeFailed: the server's own error (storage unreachable, engine
	// closed, shutting down).
	OutcomeFailed AcquireOutcome = "failed"
)

// AcquireOutcomes lists every outcome, for metrics that show each at 0.
func AcquireOutcomes() []AcquireOutcome {
	return []AcquireOutcome{
		OutcomeGranted, OutcomeReacquired, OutcomeHeld, OutcomeDelayed, OutcomeWaited, OutcomeTimedOut,
		OutcomeTooManyWaiters, OutcomeInvalid, OutcomeCanceled, OutcomeFailed,
	}
}

// The outcomes only AcquireSlot has. Its others mean what they mean for
// Acquire: granted, reacquired, waited, timed_out (still full when the wait
// ended), too_many_waiters, invalid, canceled, failed.
const (
	// OutcomeFull: the slot did not fit (or earlier waiters were queued),
	// no wait asked.
	OutcomeFull AcquireOutcome = "full"
	// OutcomeLimitMismatch: the semaphore's live slots have another limit.
	OutcomeLimitMismatch AcquireOutcome = "limit_mismatch"
)

// SlotOutcomes lists every outcome of AcquireSlot, for metrics that show
// each at 0.
func SlotOutcomes() []AcquireOutcome {
	return []AcquireOutcome{
		OutcomeGranted, OutcomeReacquired, OutcomeFull, OutcomeLimitMismatch, OutcomeWaited, OutcomeTimedOut,
		OutcomeTooManyWaiters, OutcomeInvalid, OutcomeCanceled, OutcomeFailed,
	}
}

// WithSlotObserver has f called with the outcome of every AcquireSlot, for
// metrics. f runs on the request's goroutine: it must be fast.
func WithSlotObserver(f func(AcquireOutcome)) Option { return func(s *Service) { s.onSlot = f } }
