package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/locklock/locklock/locklock"
)

// Event types of a stream beyond the lock events (API.md §9).
const (
	// EventState starts a new stream of one lock: Lock is the lock, or nil
	// when it is free; or of one semaphore: Semaphore is the semaphore
	// with its first page of slots, or nil when it has none.
	EventState = "state"
	// EventReady starts a new namespace stream: everything after it is
	// seen.
	EventReady = "ready"
	// EventReset says the stream could not resume where it left off (the
	// server no longer had the events, or the reader fell behind): events
	// were missed, and a fresh state or ready follows. Re-read what you
	// keep (a listing) after it.
	EventReset = "reset"
)

// Event is one event of a stream.
type Event struct {
	// Type is EventState, EventReady, EventReset, or a lock or slot event:
	// "acquired", "refreshed", "released", "expired", "revoked".
	Type string
	// ID is the event's position, which the stream resumes after; "" for
	// a reset.
	ID string
	// At is when a lock or slot event happened.
	At time.Time
	// Lock is the lock after the event (acquired, refreshed, state), or
	// as it was (released, expired, revoked); nil in a state of a free
	// lock, in ready and reset, and in a semaphore's events.
	Lock *Lock
	// Slot is, in an event of a semaphore's slot, the slot after the
	// event, or as it was (released, expired, revoked); nil otherwise.
	Slot *Slot
	// Semaphore is, in the state of a semaphore's stream, the semaphore
	// with its first page of slots; nil when it has none, and in every
	// other event.
	Semaphore *SemaphoreState
	// DelayedUntil is, on a lock's expired and revoked, when the
	// lock-delay that began ends; zero without one.
	DelayedUntil time.Time
}

// Stream is an event stream that reconnects by itself: when the connection
// drops, or the server shuts down, it connects again (to the same URL, with
// backoff) and resumes after the last event it delivered, so no event is
// missed or repeated — unless the server cannot resume, which it reports as
// an EventReset. Not safe for concurrent use; Close may be called from any
// goroutine.
type Stream struct {
	c      *Client
	path   string
	lastID string

	ctx    context.Context
	cancel context.CancelFunc
	bodyMu sync.Mutex    // body is set by Next's goroutine, closed by Close's too
	body   io.ReadCloser // under bodyMu
	r      *bufio.Reader
	fails  int
	// dialed is when the open connection was requested: a state on it
	// was read by the server after that (slotFeed judges by it).
	dialed time.Time
}

// WatchOptions selects a namespace stream's locks.
type WatchOptions struct {
	Kind   locklock.Kind // "": every kind
	Prefix string        // needs Kind
}

// Watch opens a stream of one lock's events. It connects on the first Next.
func (c *Client) Watch(ctx context.Context, t Target) *Stream {
	return c.stream(ctx, t.path()+"/events")
}

// WatchSemaphore opens a stream of one semaphore's events: its state, then
// its slots' events. It connects on the first Next.
func (c *Client) WatchSemaphore(ctx context.Context, t Target) *Stream {
	return c.stream(ctx, t.semaphorePath()+"/events")
}

// WatchNamespace opens a stream of every lock and slot event of the key's
// namespace (API keys only). It connects on the first Next.
func (c *Client) WatchNamespace(ctx context.Context, o WatchOptions) *Stream {
	q := url.Values{}
	if o.Kind != "" {
		q.Set("kind", string(o.Kind))
	}
	if o.Prefix != "" {
		q.Set("prefix", o.Prefix)
	}
	path := "/events"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	return c.stream(ctx, path)
}

func (c *Client) stream(ctx context.Context, path string) *Stream {
	ctx, cancel := context.WithCancel(ctx)
	return &Stream{c: c, path: path, ctx: ctx, cancel: cancel}
}

// Close ends the stream; Next then returns context.Canceled.
func (s *Stream) Close() {
	s.cancel()
	s.drop()
}

// Next returns the next event, connecting or reconnecting as needed. It
// returns an error only when the stream cannot go on: its context ended,
// or the server refused it for good (401, 403, 400, 404 — errors match the
// core's sentinels with errors.Is, as for other calls).
func (s *Stream) Next() (Event, error) {
	for {
		if err := s.ctx.Err(); err != nil {
			return Event{}, err
		}
		if s.r == nil {
			if err := s.connect(); err != nil {
				if !s.retry(err) {
					return Event{}, err
				}
				continue
			}
		}
		ev, err := s.read()
		if err == nil {
			s.fails = 0
			if ev.ID != "" {
				s.lastID = ev.ID
			}
			if ev.Type == EventReset {
				s.lastID = ""
			}
			return ev, nil
		}
		s.r = nil // Next's own, unlike body: it connects again, or ends
		s.drop()
		if !s.retry(err) {
			return Event{}, err
		}
	}
}

// retry waits before the next connection attempt, or reports that err is
// final.
func (s *Stream) retry(err error) bool {
	if s.ctx.Err() != nil {
		return false
	}
	var apiErr *Error
	if errors.As(err, &apiErr) && apiErr.Status != http.StatusTooManyRequests && apiErr.Status < 500 {
		return false
	}
	d := s.c.delay(s.fails, err)
	s.fails++
	return s.c.sleep(s.ctx, d)
}

// drop closes the open connection, if any. Next's reader is left for Next
// to clear: Close may run while Next reads.
func (s *Stream) drop() {
	s.bodyMu.Lock()
	defer s.bodyMu.Unlock()
	if s.body != nil {
		s.body.Close()
	}
	s.body = nil
}

func (s *Stream) connect() error {
	hr, err := http.NewRequestWithContext(s.ctx, http.MethodGet, s.c.base+s.path, nil)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	hr.Header.Set("Accept", "text/event-stream")
	hr.Header.Set("User-Agent", s.c.userAgent)
	if s.c.apiKey != "" {
		hr.Header.Set("Authorization", "Bearer "+s.c.apiKey)
	}
	if s.lastID != "" {
		hr.Header.Set("Last-Event-ID", s.lastID)
	}
	s.dialed = time.Now()
	resp, err := s.c.http.Do(hr)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		resp.Body.Close()
		return decodeError(resp, raw)
	}
	s.bodyMu.Lock()
	defer s.bodyMu.Unlock()
	if s.ctx.Err() != nil { // closed meanwhile: Close found no body to close
		resp.Body.Close()
		return s.ctx.Err()
	}
	s.body, s.r = resp.Body, bufio.NewReader(resp.Body)
	return nil
}

// read parses the next event of the open connection, skipping comments
// (pings).
func (s *Stream) read() (Event, error) {
	var typ, id, data string
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF // the server ended the stream: reconnect
			}
			return Event{}, err
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if typ == "" && data == "" {
				continue // a comment's blank line
			}
			return decodeEvent(typ, id, data)
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "event:"):
			typ = strings.TrimPrefix(strings.TrimPrefix(line, "event:"), " ")
		case strings.HasPrefix(line, "id:"):
			id = strings.TrimPrefix(strings.TrimPrefix(line, "id:"), " ")
		case strings.HasPrefix(line, "data:"):
			data += strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " ")
		}
	}
}

func decodeEvent(typ, id, data string) (Event, error) {
	ev := Event{Type: typ, ID: id}
	var body struct {
		At           time.Time       `json:"at"`
		Lock         *Lock           `json:"lock"`
		Slot         *Slot           `json:"slot"`
		Semaphore    *SemaphoreState `json:"semaphore"`
		DelayedUntil time.Time       `json:"delayed_until"`
	}
	if err := json.Unmarshal([]byte(data), &body); err != nil {
		return Event{}, fmt.Errorf("client: event %q: unexpected data: %w", typ, err)
	}
	ev.At, ev.Lock, ev.Slot, ev.Semaphore, ev.DelayedUntil = body.At, body.Lock, body.Slot, body.Semaphore, body.DelayedUntil
	return ev, nil
}
