package client

import (
	"context"
	"maps"
	"time"
)

// Hooks for the tests of the shared semaphore streams (slotfeed.go), which
// run against the real server in package client_test.

// ErrSlowSubscriber ends a share of a stream whose reader fell behind.
var ErrSlowSubscriber = errSlowSubscriber

// SetSlotBacklog sets how many events may wait for one reader of the
// streams c opens from now on.
func SetSlotBacklog(c *Client, n int) {
	c.slotFeeds.mu.Lock()
	defer c.slotFeeds.mu.Unlock()
	c.slotFeeds.backlog = n
}

// SlotReader is a share of a semaphore's stream read by the test itself
// (or not at all), as a HeldSlot's watcher reads its own.
type SlotReader interface {
	Next() (Event, error)
	Close()
}

// JoinSlotFeed joins c's shared stream of t's semaphore for sl, acquired
// by a request sent at sent and answered at answered, as Hold does.
func JoinSlotFeed(ctx context.Context, c *Client, t Target, sl Slot, sent, answered time.Time, recheck func()) SlotReader {
	return c.slotFeeds.join(ctx, c, t, sl, span{sent, answered}, recheck)
}

// CutSlotWatch cuts h's share of its semaphore's stream off, as a full
// backlog does.
func CutSlotWatch(h *HeldSlot) {
	s := h.k.events.(*slotSub)
	s.feed.mu.Lock()
	defer s.feed.mu.Unlock()
	s.end(errSlowSubscriber)
}

// SlotFeedKnows is what c's shared stream of t's semaphore has told: its
// state came, the slots live since, the highest token seen. open is false
// when c has no such stream.
func SlotFeedKnows(c *Client, t Target) (open, synced bool, live map[string]bool, maxToken uint64) {
	c.slotFeeds.mu.Lock()
	f := c.slotFeeds.byPath[t.semaphorePath()]
	c.slotFeeds.mu.Unlock()
	if f == nil {
		return false, false, nil, 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return true, f.know.synced, maps.Clone(f.know.live), f.know.maxToken
}
