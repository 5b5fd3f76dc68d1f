package locklock

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"maps"
	"sync"
	"sync/atomic"
	"time"
)

// Limits of API.md §9.
const (
	// DefaultEventRetention is how many recent events a server keeps for
	// streams that resume.
	DefaultEventRetention = 10000
	// MaxEventBacklog is how many events may wait for a stream's reader
	// before the stream is cut (with a reset).
	MaxEventBacklog = 1000
	// FillingAt is how many waiting events signal Subscription.Filling.
	FillingAt = MaxEventBacklog / 4
)

// ErrSlowReader ends a subscription whose reader fell more than
// MaxEventBacklog events behind. Lock operations never wait for readers:
// the subscription is cut instead, and its client starts afresh.
var ErrSlowReader = errors.New("events stream reader too slow")

// errSubscriptionClosed ends a subscription its hub closed (shutdown).
var errSubscriptionClosed = errors.New("events stream closed")

// errStreamRestarted ends the subscriptions of a stream that its engine
// restarted (EventRestart): their clients resume, or start afresh.
var errStreamRestarted = errors.New("events stream restarted by storage")

// hub fans events out: it numbers the events of engines that do not number
// them, keeps the most recent ones for resuming streams, and hands each to
// the subscriptions whose filter selects it. Publishing costs a mutex and
// an append per subscriber; it never blocks on a reader.
type hub struct {
	epoch string

	mu       sync.Mutex
	seq      uint64
	ring     []*Event // the last len(ring) events; next is where the next goes
	next     int
	last     Position // the position of the last event published
	floor    Position // the last event no longer retained, or where the stream began
	byOne    map[Subject]map[*Subscription]struct{}
	byNS     map[string]map[*Subscription]struct{}
	closed   bool
	numbered bool // the engine numbers events (startAt)
	history  bool // and can read them back from storage (EventHistory)

	// Idle: with no stream open, and none in the last retentionWindow, no
	// client holds a position it may still resume from (API.md §9 keeps
	// events at most five minutes for it), so the hub only counts the
	// events of engines it numbers, without its mutex: lock operations
	// then pay an atomic add for events nobody can ask for.
	recording  atomic.Bool
	skipped    atomic.Uint64
	streams    int       // subscriptions open
	lastStream time.Time // when the last one closed
	now        func() time.Time
}

// retentionWindow is the longest API.md §9 asks a server to keep events
// for a resuming stream.
const retentionWindow = 5 * time.Minute

func newHub(retention int) *hub {
	var b [6]byte
	_, _ = rand.Read(b[:])
	h := &hub{
		epoch: "m" + hex.EncodeToString(b[:]),
		ring:  make([]*Event, retention),
		byOne: make(map[Subject]map[*Subscription]struct{}),
		byNS:  make(map[string]map[*Subscription]struct{}),
		now:   time.Now,
	}
	h.last = Position{Epoch: h.epoch}
	h.floor = h.last
	return h
}

// startAt makes the hub's stream continue an engine's own numbering (etcd
// revisions, comparable across the servers of one cluster) from pos;
// history says the engine can read past events back (EventHistory).
func (h *hub) startAt(pos Position, history bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.epoch, h.last, h.floor, h.numbered, h.history = pos.Epoch, pos, pos, true, history
	h.recording.Store(true) // numbered events are always kept: see publish
}

// restartLocked starts the stream again after pos (EventRestart): what is
// retained goes, and every subscription ends, since it may have missed
// events.
func (h *hub) restartLocked(pos Position) {
	h.epoch, h.last, h.floor = pos.Epoch, pos, pos
	clear(h.ring)
	h.next = 0
	h.endAllLocked(errStreamRestarted)
	clear(h.byOne)
	clear(h.byNS)
}

// storageNumbered says whether the engine numbers events itself.
func (h *hub) storageNumbered() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.numbered
}

// quiet says whether nobody can ask for events now (EventGate).
func (h *hub) quiet() bool { return !h.recording.Load() }

// skip counts n events an engine did not build while quiet (EventGate).
func (h *hub) skip(n int) { h.skipped.Add(uint64(n)) }

// publish is the EventSink the Service gives its engine.
func (h *hub) publish(events ...*Event) {
	if !h.recording.Load() {
		// Idle, and the hub numbers these events (recording stays on for
		// an engine that numbers its own, whose restarts must be seen).
		h.skipped.Add(uint64(len(events)))
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.streams == 0 && !h.numbered && h.now().Sub(h.lastStream) > retentionWindow {
		h.recording.Store(false)
	}
	for _, ev := range events {
		if ev.Type == EventRestart {
			h.restartLocked(ev.Pos)
			continue
		}
		if ev.Pos.IsZero() {
			h.seq++
			ev.Pos = Position{Epoch: h.epoch, Seq: h.seq}
		}
		h.last = ev.Pos
		if len(h.ring) > 0 {
			if old := h.ring[h.next]; old != nil {
				h.floor = old.Pos
			}
			h.ring[h.next] = ev
			h.next = (h.next + 1) % len(h.ring)
		} else {
			h.floor = ev.Pos
		}
		subj := ev.Subject()
		for s := range h.byOne[subj] {
			s.push(ev)
		}
		for s := range h.byNS[subj.Namespace] {
			if s.filter.selects(subj) {
				s.push(ev)
			}
		}
	}
}

// subscribe registers a subscription for f. With a zero from it starts at
// the current position; otherwise it first gets every retained event after
// from that f selects. resumed is false when from is not zero but cannot be
// resumed from: not a position of this stream, or older than what is
// retained. at is the position the subscription starts after (the last
// event of the backlog, or the current position).
//
// When the engine keeps its history (EventHistory), a position of the
// stream's epoch that is older than what is retained, or later than the
// last event published here (another server has seen further), is resumed
// too: the subscription's replay says what the caller must read from
// storage (and prepend) before the subscription is read; events up to a
// later from are dropped as they arrive.
func (h *hub) subscribe(f Filter, from Position) (s *Subscription, resumed bool, at Position, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, false, Position{}, errSubscriptionClosed
	}
	s = &Subscription{hub: h, filter: f, signal: make(chan struct{}, 1), filling: make(chan struct{}, 1)}
	h.recording.Store(true)
	if n := h.skipped.Swap(0); n > 0 {
		// Events went by uncounted while idle: number past them, and
		// resume from no position before them.
		h.seq += n
		h.last = Position{Epoch: h.epoch, Seq: h.seq}
		h.floor = h.last
	}
	h.streams++
	s.counted = true
	at = h.last
	if !from.IsZero() {
		backlog, ok := h.since(from)
		switch {
		case ok:
			resumed = true
			for _, ev := range backlog {
				if f.Selects(ev) {
					s.queue = append(s.queue, ev)
				}
			}
			if len(s.queue) > 0 {
				s.signal <- struct{}{}
			}
		case h.history && from.Epoch == h.epoch:
			resumed = true
			s.replay = &replayRange{from: from, to: h.last}
			if from.After(h.last) {
				s.skip = from
			}
		}
	}
	if f.ID != nil {
		add(h.byOne, f.subject(), s)
	} else {
		add(h.byNS, f.Namespace, s)
	}
	return s, resumed, at, nil
}

// since returns the retained events after from, oldest first, and whether
// from can be resumed from: a position of this stream no later than the
// last event and no earlier than the floor (the last event no longer
// retained, or where the stream began).
func (h *hub) since(from Position) ([]*Event, bool) {
	if from.Epoch != h.last.Epoch || from.After(h.last) || h.floor.After(from) {
		return nil, false
	}
	var out []*Event
	for i := 1; i <= len(h.ring); i++ {
		ev := h.ring[(h.next-i+len(h.ring))%len(h.ring)]
		if ev == nil || !ev.Pos.After(from) {
			break
		}
		out = append(out, ev)
	}
	reverse(out)
	return out, true
}

func reverse(evs []*Event) {
	for i, j := 0, len(evs)-1; i < j; i, j = i+1, j-1 {
		evs[i], evs[j] = evs[j], evs[i]
	}
}

func add[K comparable](m map[K]map[*Subscription]struct{}, k K, s *Subscription) {
	set := m[k]
	if set == nil {
		set = make(map[*Subscription]struct{})
		m[k] = set
	}
	set[s] = struct{}{}
}

func (h *hub) unsubscribe(s *Subscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !s.counted {
		return // closed before
	}
	s.counted = false
	if h.streams--; h.streams == 0 {
		h.lastStream = h.now()
	}
	if s.filter.ID != nil {
		drop(h.byOne, s.filter.subject(), s)
	} else {
		drop(h.byNS, s.filter.Namespace, s)
	}
}

func drop[K comparable](m map[K]map[*Subscription]struct{}, k K, s *Subscription) {
	if set := m[k]; set != nil {
		delete(set, s)
		if len(set) == 0 {
			delete(m, k)
		}
	}
}

// endAllLocked ends every subscription with err.
func (h *hub) endAllLocked(err error) {
	for _, set := range h.byOne {
		for s := range set {
			s.end(err)
		}
	}
	for _, set := range h.byNS {
		for s := range set {
			s.end(err)
		}
	}
}

// close ends every subscription (shutdown: clients resume elsewhere).
func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	h.endAllLocked(errSubscriptionClosed)
}

// Subscription is one stream's view of the events. Its reader calls Next;
// a reader more than MaxEventBacklog events behind is cut off with
// ErrSlowReader.
type Subscription struct {
	hub     *hub
	filter  Filter
	signal  chan struct{} // buffered: a wake-up is never lost, never blocks
	filling chan struct{} // signalled when the queue reaches FillingAt

	counted bool // among the hub's open streams; under the hub's mutex

	mu    sync.Mutex
	queue []*Event
	err   error    // set once: the subscription ended
	skip  Position // events up to here are already in the stream's state

	// replay, set by subscribe, is what a resumed stream must read from
	// the engine's history before its queue (see prepend).
	replay *replayRange
}

// replayRange is a part of a stream to read from storage: the events after
// from up to and including to.
type replayRange struct{ from, to Position }

// prepend puts events read from storage (the replay) before the queued
// ones, which all come after replay.to.
func (s *Subscription) prepend(evs []*Event) {
	s.mu.Lock()
	s.replay = nil
	if s.err != nil || len(evs) == 0 {
		s.mu.Unlock()
		return
	}
	s.queue = append(evs[:len(evs):len(evs)], s.queue...)
	s.mu.Unlock()
	select {
	case s.signal <- struct{}{}:
	default:
	}
}

// push queues ev; the hub's mutex is held.
func (s *Subscription) push(ev *Event) {
	s.mu.Lock()
	if !s.skip.IsZero() && !ev.Pos.After(s.skip) {
		s.mu.Unlock()
		return
	}
	if s.err == nil {
		if len(s.queue) >= MaxEventBacklog {
			s.err, s.queue = ErrSlowReader, nil
		} else {
			s.queue = append(s.queue, ev)
			if len(s.queue) == FillingAt {
				select {
				case s.filling <- struct{}{}:
				default:
				}
			}
		}
	}
	s.mu.Unlock()
	select {
	case s.signal <- struct{}{}:
	default:
	}
}

func (s *Subscription) end(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
	select {
	case s.signal <- struct{}{}:
	default:
	}
}

// Next waits for events and returns all that are queued, oldest first. It
// returns ErrSlowReader once the reader fell too far behind, an error when
// the Service shut streams down, and ctx's error when ctx is done.
func (s *Subscription) Next(ctx context.Context) ([]*Event, error) {
	for {
		if q, err := s.Take(); len(q) > 0 || err != nil {
			return q, err
		}
		select {
		case <-s.signal:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Filling is signalled when FillingAt events wait: a reader that holds
// back to read many events at once (see transport's stream pacing) should
// read now, well before MaxEventBacklog cuts it off.
func (s *Subscription) Filling() <-chan struct{} { return s.filling }

// Ready is signalled when events may be waiting, or the subscription has
// ended: then call Take. For readers that wait on other things too (a
// ping timer) without a context per wait.
func (s *Subscription) Ready() <-chan struct{} { return s.signal }

// Take returns the events queued now, oldest first, without waiting — or,
// with none queued, the error that ended the subscription (nil while it
// lives).
func (s *Subscription) Take() ([]*Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q, err := s.queue, s.err
	s.queue = nil
	if len(q) > 0 {
		return q, nil
	}
	return nil, err
}

// Close ends the subscription.
func (s *Subscription) Close() {
	s.hub.unsubscribe(s)
	s.end(errSubscriptionClosed)
}

// settle reconciles a one-lock (or one-semaphore) stream's queue with the
// state read after subscribing, and returns the stream's position for it.
// Events already reflected in the state are dropped, so the client never
// sees an event that its state already contains: the last queued event
// whose outcome the state shows (inState) and every one before it; with
// storage-numbered events (Revision set), every event up to the revision
// the state was read at, queued now or arriving later. at is the position
// subscribed at.
func (s *Subscription) settle(inState func(*Event) bool, readAt int64, at Position) Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	at = s.skipTo(readAt, at)
	k := -1
	for i, ev := range s.queue {
		if !s.skip.IsZero() && !ev.Pos.After(s.skip) || inState(ev) {
			k = i
		}
	}
	if k >= 0 {
		at = s.queue[k].Pos
		s.queue = s.queue[k+1:]
	}
	return at
}

// skipTo, with storage-numbered events (readAt > 0), drops from now on
// every event up to the revision the state was read at: every change up to
// it is in the state, whether its event is queued already or still to
// come. It returns the stream's position, which is the state's even if this
// server's watch has not reached it yet. Under s.mu.
func (s *Subscription) skipTo(readAt int64, at Position) Position {
	if readAt <= 0 {
		return at
	}
	s.skip = Position{Epoch: at.Epoch, Seq: uint64(readAt), Sub: ^uint32(0)}
	if s.skip.After(at) {
		return s.skip
	}
	return at
}

// lockOutcomeIs says whether the lock after ev is state (nil: no lock).
func lockOutcomeIs(state *Lock) func(*Event) bool {
	return func(ev *Event) bool {
		switch ev.Type {
		case EventAcquired, EventRefreshed:
			l := ev.Lock
			return state != nil && l.Token == state.Token && l.ExpiresAt.Equal(state.ExpiresAt) &&
				l.Holder == state.Holder && maps.Equal(l.Metadata, state.Metadata)
		}
		return state == nil
	}
}

// slotOutcomeIs says whether the slot after ev is as state shows it: held
// as it is there after an acquire or a refresh, absent after its end.
func slotOutcomeIs(state *Semaphore) func(*Event) bool {
	return func(ev *Event) bool {
		var cur *Slot
		if state != nil {
			for i := range state.Slots {
				if state.Slots[i].ID == ev.Slot.ID {
					cur = &state.Slots[i]
				}
			}
		}
		switch ev.Type {
		case EventAcquired, EventRefreshed:
			sl := ev.Slot
			return cur != nil && sl.ExpiresAt.Equal(cur.ExpiresAt) && sl.Holder == cur.Holder && maps.Equal(sl.Metadata, cur.Metadata)
		}
		return cur == nil
	}
}
