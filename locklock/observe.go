package locklock

// AcquireOutcome is how an Acquire ended, for metrics.
type AcquireOutcome string

// The outcomes of Acquire.
const (
	OutcomeGranted    AcquireOutcome = "granted"    // a free lock, at once
	OutcomeReacquired AcquireOutcome = "reacquired" // the holder's retry (same secret): 200
	OutcomeHeld       AcquireOutcome = "held"       // held by another, no wait asked
	OutcomeWaited     AcquireOutcome = "waited"     // granted after waiting
	OutcomeTimedOut   AcquireOutcome = "timed_out"  // still held when the wait ended
	// OutcomeTooManyWaiters: held, and the waiter caps allowed no wait.
	OutcomeTooManyWaiters AcquireOutcome = "too_many_waiters"
	OutcomeFailed         AcquireOutcome = "failed" // any other error: bad input, storage, a client gone
)
