package locklock

import (
	"sync"
	"time"
)

// Clock is the Service's source of time. Injecting a ManualClock lets tests
// expire locks without sleeping.
type Clock interface {
	Now() time.Time
	// At delivers the time on the returned channel once the clock reads t
	// or later. An absolute time, not a duration, so that a deadline is
	// never pushed back by time passing between reading the clock and
	// setting the timer.
	At(t time.Time) <-chan time.Time
}

// SystemClock is the real clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// At returns time.After(time.Until(t)). Unstopped timers are collected by
// the runtime since Go 1.23, so abandoning the channel leaks nothing.
func (SystemClock) At(t time.Time) <-chan time.Time { return time.After(time.Until(t)) }

// ManualClock is a Clock that moves only when told to. It is safe for
// concurrent use.
type ManualClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []manualTimer
}

type manualTimer struct {
	at time.Time
	ch chan time.Time
}

// NewManualClock returns a clock stopped at start.
func NewManualClock(start time.Time) *ManualClock {
	return &ManualClock{now: start}
}

// Now returns the clock's current time.
func (c *ManualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// At fires once the clock has been advanced to t or beyond.
func (c *ManualClock) At(t time.Time) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if !t.After(c.now) {
		ch <- c.now
		return ch
	}
	c.timers = append(c.timers, manualTimer{at: t, ch: ch})
	return ch
}

// Advance moves the clock forward by d and fires every timer that is due.
func (c *ManualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	pending := c.timers[:0]
	for _, t := range c.timers {
		if t.at.After(c.now) {
			pending = append(pending, t)
			continue
		}
		t.ch <- c.now
	}
	c.timers = pending
}

// PendingTimers is how many At channels have not fired yet. Tests use it to
// know that a goroutine has set its timer before they move the clock.
func (c *ManualClock) PendingTimers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}
