package client

import (
	"cmp"
	"context"
	"errors"
	"sync"
	"time"
)

// defaultSlotBacklog is how many events may wait for one HeldSlot's
// watcher before it is cut off. A watcher is sent only its own slot's
// events and the states, and judges each in a moment: a backlog this long
// means it is stuck, and the stream must not wait for it.
const defaultSlotBacklog = 256

// errSlowSubscriber ends the share of a HeldSlot whose watcher fell too far
// behind: its keeper goes on with refreshes alone, as when a stream is
// refused.
var errSlowSubscriber = errors.New("client: a HeldSlot's watcher fell behind its semaphore's stream and was cut off")

// slotFeeds are a Client's shared semaphore streams: one per semaphore that
// has HeldSlots, fanned out to them, closed when the last of them ends.
// A stream of its own per HeldSlot would carry every slot's events to each
// (N holders, N² events), and each would count against the server's cap
// on one caller's streams (--max-watchers-per-caller).
type slotFeeds struct {
	mu      sync.Mutex
	byPath  map[string]*slotFeed // open feeds only: a closed one is removed at once
	backlog int                  // per subscriber; 0: defaultSlotBacklog
}

// slotFeed is one semaphore's shared stream. Lock order: slotFeeds.mu,
// then slotFeed.mu, then slotSub.mu.
type slotFeed struct {
	feeds   *slotFeeds
	path    string
	stream  *Stream // read by run only
	cancel  context.CancelFunc
	backlog int

	mu     sync.Mutex
	subs   map[string]map[*slotSub]struct{} // by slot id (two Holds may share a slot: same secret)
	n      int
	closed bool // the last subscriber left, or the stream ended
	know   slotKnowledge
}

// join subscribes a HeldSlot's watcher to its semaphore's stream, opening
// one if none is open. acquired spans the acquire that confirmed held;
// recheck has its keeper refresh at once.
func (fs *slotFeeds) join(ctx context.Context, c *Client, t Target, held Slot, acquired span, recheck func()) *slotSub {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	path := t.semaphorePath()
	f := fs.byPath[path]
	if f == nil {
		// Not the Hold's context: the stream serves every HeldSlot of the
		// semaphore, and outlives the one that opened it.
		sctx, cancel := context.WithCancel(context.Background())
		f = &slotFeed{
			feeds: fs, path: path, stream: c.WatchSemaphore(sctx, t), cancel: cancel,
			backlog: cmp.Or(fs.backlog, defaultSlotBacklog), subs: map[string]map[*slotSub]struct{}{},
		}
		if fs.byPath == nil {
			fs.byPath = map[string]*slotFeed{}
		}
		fs.byPath[path] = f
		go f.run()
	}
	s := &slotSub{feed: f, id: held.ID, token: held.FencingToken, acquired: acquired, recheck: recheck, ctx: ctx, wake: make(chan struct{}, 1)}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.subs[s.id] == nil {
		f.subs[s.id] = map[*slotSub]struct{}{}
	}
	f.subs[s.id][s] = struct{}{}
	f.n++
	// What the stream told before s joined is gone; the knowledge kept
	// from it stands in (slotKnowledge.judge).
	switch f.know.judge(s.id, s.token, acquired) {
	case slotGone:
		// As a state without our slot: what the stream knows of the
		// semaphore now has no place for it.
		s.queue = append(s.queue, feedEvent{ev: Event{Type: EventState}, judged: true})
	case slotUnsure:
		recheck()
	}
	return s
}

// run reads the stream and fans its events out until it ends: closed
// after the last subscriber left, or refused for good.
func (f *slotFeed) run() {
	// Close here, not from a leaving subscriber: the Stream is not safe
	// for concurrent use, and cancel already ends a Next under way.
	defer f.stream.Close()
	for {
		ev, err := f.stream.Next()
		if err != nil {
			f.end(err)
			return
		}
		f.dispatch(ev, f.stream.dialed)
	}
}

// dispatch learns from ev and hands it to the subscribers it concerns: a
// state to every one, a slot's event to that slot's. A reset is for no
// one: the state that follows it tells each what it needs.
func (f *slotFeed) dispatch(ev Event, dialed time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.know.learn(ev, dialed, time.Now())
	fe := feedEvent{ev: ev, dialed: dialed}
	switch {
	case ev.Type == EventState:
		for _, subs := range f.subs {
			for s := range subs {
				s.push(fe, f.backlog)
			}
		}
	case ev.Slot != nil:
		for s := range f.subs[ev.Slot.ID] {
			s.push(fe, f.backlog)
		}
	}
}

// end tells every subscriber that the stream ended with err, and takes
// the feed out of use: a later Hold opens a fresh stream.
func (f *slotFeed) end(err error) {
	f.feeds.mu.Lock()
	defer f.feeds.mu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.close()
	for _, subs := range f.subs {
		for s := range subs {
			s.end(err)
		}
	}
}

// leave unsubscribes s, and ends the stream if s was the last.
func (f *slotFeed) leave(s *slotSub) {
	f.feeds.mu.Lock()
	defer f.feeds.mu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	s.end(context.Canceled)
	subs := f.subs[s.id]
	if _, ok := subs[s]; !ok {
		return
	}
	if delete(subs, s); len(subs) == 0 {
		delete(f.subs, s.id)
	}
	if f.n--; f.n == 0 {
		f.close()
	}
}

// close stops the stream and forgets the feed. Under both mutexes.
func (f *slotFeed) close() {
	if f.closed {
		return
	}
	f.closed = true
	delete(f.feeds.byPath, f.path) // it is f: open feeds are the ones there
	f.cancel()
}
