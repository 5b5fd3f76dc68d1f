package client

import (
	"context"
	"slices"
	"sync"
	"time"
)

// slotSub is one HeldSlot's share of its semaphore's stream: its slot's
// events and the states, in stream order, through a queue of its own, so
// that a slow reader holds up neither the stream nor the other HeldSlots.
type slotSub struct {
	feed     *slotFeed
	id       string
	token    uint64
	acquired span
	recheck  func()
	ctx      context.Context
	wake     chan struct{} // signalled when the queue or err changes

	mu    sync.Mutex
	queue []feedEvent
	err   error // how it ended (after the queue): cut off, the stream's end, closed
}

// feedEvent is an event as the feed hands it out.
type feedEvent struct {
	ev Event
	// dialed is, for a state, when its connection was requested: the
	// server read the state after that.
	dialed time.Time
	// judged marks the feed's own verdict on joining, passed on as is.
	judged bool
}

// push queues fe, or cuts s off when its backlog is full. Under the
// feed's mutex.
func (s *slotSub) push(fe feedEvent, backlog int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.err != nil:
		return
	case len(s.queue) >= backlog:
		s.err = errSlowSubscriber
	default:
		s.queue = append(s.queue, fe)
	}
	s.signal()
}

// end ends s after what is queued; the first end stays.
func (s *slotSub) end(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
		s.signal()
	}
}

func (s *slotSub) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Next returns the next event for the keeper to judge, waiting for one.
// Its error says that no more will come: the watcher's context ended, the
// stream ended (its error), or s was cut off (errSlowSubscriber).
func (s *slotSub) Next() (Event, error) {
	for {
		if err := s.ctx.Err(); err != nil {
			return Event{}, err
		}
		s.mu.Lock()
		var (
			fe  feedEvent
			ok  = len(s.queue) > 0
			err = s.err
		)
		if ok {
			fe = s.queue[0]
			s.queue[0] = feedEvent{}
			s.queue = s.queue[1:]
		}
		s.mu.Unlock()
		switch {
		case ok && s.doubts(fe):
			s.recheck()
		case ok:
			return fe.ev, nil
		case err != nil:
			return Event{}, err
		default:
			select {
			case <-s.ctx.Done():
			case <-s.wake:
			}
		}
	}
}

// Close unsubscribes; the stream closes with its last subscriber.
func (s *slotSub) Close() { s.feed.leave(s) }

// doubts reports a state without our slot that does not prove it gone.
// A state read after the acquire does (dialed after its answer), as it
// does for a stream of one's own. One whose connection was asked for
// earlier — a stream opened by another HeldSlot while ours was acquired —
// may have been read before our slot existed: then its acquire follows in
// the stream, and judging the state would end a HeldSlot that is held.
// Unless the state lists a slot acquired after ours (tokens rise per
// semaphore, in the order of the acquires): then ours was acquired before
// it was read, and is not in it. Otherwise only the server can tell: the
// keeper refreshes at once.
func (s *slotSub) doubts(fe feedEvent) bool {
	if fe.judged || fe.ev.Type != EventState || fe.dialed.After(s.acquired.answered) {
		return false
	}
	if why, _ := slotLoss(fe.ev, Slot{ID: s.id, FencingToken: s.token}); why == "" {
		return false
	}
	sem := fe.ev.Semaphore
	return sem == nil || !slices.ContainsFunc(sem.Slots, func(sl Slot) bool { return sl.FencingToken > s.token })
}
