package locklock

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// EventType says what happened to a lock (API.md §9).
type EventType string

// The event types of API.md §9.
const (
	EventAcquired  EventType = "acquired"
	EventRefreshed EventType = "refreshed" // expiry, holder or metadata changed
	EventReleased  EventType = "released"
	EventExpired   EventType = "expired"
	EventRevoked   EventType = "revoked"

	// EventRestart is no change of a lock and never reaches a stream. An
	// engine that numbers its events sends it, alone and with Pos set,
	// when its stream starts again at Pos: it learned its position only
	// after SetEventSink (its storage did not answer then), or it lost
	// events (its storage's history was compacted while it could not
	// read it). The Service then ends every stream — their clients
	// resume, from storage's history or afresh — and retains nothing
	// from before Pos.
	EventRestart EventType = "restart"
)

// Event is one change of one lock, as an engine committed it.
type Event struct {
	Type EventType
	// At is when it happened: the instant the Service judged the step at,
	// or for EventExpired the lock's ExpiresAt.
	At time.Time
	// Lock is the lock after the change (acquired, refreshed), or as it
	// was (released, expired, revoked; its DelayedUntil, when not zero, is
	// the lock-delay that began). Zero for a slot's event.
	Lock Lock
	// Slot, when not nil, makes this the event of a semaphore's slot: the
	// slot after the change, or as it was; Lock is then zero.
	Slot *Slot
	// Pos is the event's place in the stream. Engines that keep their own
	// order (etcd revisions) set it; for the others the Service numbers
	// events in the order the engine reports them.
	Pos Position

	// frame caches the event's wire form, encoded once for every stream
	// that sends it.
	frame atomic.Pointer[[]byte]
}

// Frame returns the event encoded by encode, encoding it at most once (if
// two streams race, both encodings are equal and either is kept).
func (e *Event) Frame(encode func(*Event) []byte) []byte {
	if b := e.frame.Load(); b != nil {
		return *b
	}
	b := encode(e)
	e.frame.Store(&b)
	return b
}

// EventSink receives an engine's events: every change it commits, in the
// order it committed them for each lock, only after they are durable.
// It must not block; the Service's sink appends to memory and returns.
type EventSink func(events ...*Event)

// EventSource is implemented by engines that report their changes. The
// Service calls SetEventSink once, before any other method; an engine calls
// the sink inside the atomic step of each change (or, for storage that
// orders changes itself, in that order), so that the events of one lock
// come in the order the changes were applied.
//
// SetEventSink returns the engine's current position when the engine
// numbers its events itself (Event.Pos set on every event, positions
// comparable across every server of its storage), or the zero Position
// when the Service is to number them.
type EventSource interface {
	SetEventSink(sink EventSink) Position
}

// EventGate is implemented by event sources that can skip building events
// nobody can ask for. The Service calls SetEventGate after SetEventSink:
// while quiet() is true (no stream is open, nor was in the last few
// minutes) the engine may, instead of building an event and giving it to
// the sink, call skip with how many it did not build, so that positions
// still count them. Only for engines whose events the Service numbers.
type EventGate interface {
	SetEventGate(quiet func() bool, skip func(n int))
}

// EventHistory is implemented by engines that number their events from
// their storage's history (etcd revisions) and can read that history back.
// Positions are then valid on every server of the storage: a stream
// resumes from a position older than the events the Service retains (one
// another server handed out, or from before this server started), or one
// that another server has reached and this one has not yet.
type EventHistory interface {
	// EventsAfter returns the events after from, up to and including to,
	// that f selects, oldest first, read from storage's history. When
	// from is not before to, it returns none, once it has checked that
	// storage has reached from. An error wrapping ErrHistoryGone means
	// the stream cannot be resumed (the history was compacted, there is
	// too much of it to replay, or from is not a position of storage):
	// it starts afresh. Other errors: storage did not answer.
	EventsAfter(ctx context.Context, f Filter, from, to Position) ([]*Event, error)
}

// ErrHistoryGone: the events after a position can no longer be read from
// storage; a stream resumed from there starts afresh (event: reset).
var ErrHistoryGone = errors.New("events no longer available")

// Position is a place in an event stream: Epoch names the stream (a server
// process, or an etcd cluster, whose positions are comparable), Seq and Sub
// order events within it (an etcd revision and the index of the change
// within that revision). Its text form is opaque to clients and sorts in
// stream order within one epoch.
type Position struct {
	Epoch string
	Seq   uint64
	Sub   uint32
}

// IsZero says whether p is no position.
func (p Position) IsZero() bool { return p == Position{} }

// After says whether p comes after q in the same stream.
func (p Position) After(q Position) bool {
	return p.Seq > q.Seq || p.Seq == q.Seq && p.Sub > q.Sub
}

// String is the wire form: epoch, then Seq and Sub as fixed-width hex, so
// that positions of one epoch sort as text in stream order.
func (p Position) String() string {
	return fmt.Sprintf("%s.%016x.%08x", p.Epoch, p.Seq, p.Sub)
}

// errBadPosition is why a position cannot be read.
var errBadPosition = errors.New("not a position of this server")

// ParsePosition reads a position's wire form.
func ParsePosition(s string) (Position, error) {
	epoch, rest, ok := strings.Cut(s, ".")
	if !ok || epoch == "" || len(rest) != 16+1+8 || rest[16] != '.' {
		return Position{}, errBadPosition
	}
	seq, err1 := strconv.ParseUint(rest[:16], 16, 64)
	sub, err2 := strconv.ParseUint(rest[17:], 16, 32)
	if err1 != nil || err2 != nil {
		return Position{}, errBadPosition
	}
	return Position{Epoch: epoch, Seq: seq, Sub: uint32(sub)}, nil
}

// Subject is what an event is of: a lock, or (Semaphore) a semaphore —
// a space of its own, so a lock and a semaphore may share an ID.
type Subject struct {
	ID
	Semaphore bool
}

// Subject is what the event is of.
func (e *Event) Subject() Subject {
	if e.Slot != nil {
		return Subject{ID: e.Slot.Semaphore, Semaphore: true}
	}
	return Subject{ID: e.Lock.ID}
}

// Filter selects the events of a stream: one lock or semaphore (ID set;
// Semaphore says which), or a namespace — its locks and semaphores —
// optionally narrowed to a kind and a name prefix.
type Filter struct {
	ID        *ID
	Semaphore bool // with ID: the ID names a semaphore
	Namespace string
	Kind      Kind // "": every kind
	Prefix    string
}

// Matches says whether the filter selects the event of lock id.
func (f Filter) Matches(id ID) bool { return f.selects(Subject{ID: id}) }

// Selects says whether the filter selects ev.
func (f Filter) Selects(ev *Event) bool { return f.selects(ev.Subject()) }

func (f Filter) selects(s Subject) bool {
	if f.ID != nil {
		return *f.ID == s.ID && f.Semaphore == s.Semaphore
	}
	return s.Namespace == f.Namespace && (f.Kind == "" || s.Kind == f.Kind) &&
		strings.HasPrefix(s.Name, f.Prefix)
}

// subject is the one lock or semaphore a filter with ID selects.
func (f Filter) subject() Subject { return Subject{ID: *f.ID, Semaphore: f.Semaphore} }
