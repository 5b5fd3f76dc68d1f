package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/locklock/locklock/locklock"
)

// Query parameter of the event streams: the position to resume after, for
// clients that cannot send the Last-Event-ID header.
const paramLastEventID = "last_event_id"

// lastEventIDHeader is what browsers' EventSource sends on reconnecting.
const lastEventIDHeader = "Last-Event-ID"

const (
	// pingEvery keeps proxies from closing a quiet stream (API.md §9).
	pingEvery = 15 * time.Second
	// streamWriteTimeout cuts a client that stops reading: each write of
	// a stream must finish within it. It replaces the server's write
	// timeout, which would otherwise end every stream after the longest
	// request.
	streamWriteTimeout = 30 * time.Second
)

// lockEvents serves GET /lock/{kind}/{name}/events: whoever may GET the
// lock may watch it.
func (h *handler) lockEvents(kind locklock.Kind, routePrefix string) http.HandlerFunc {
	return h.oneEvents(kind, routePrefix, false)
}

// semaphoreEvents serves GET /semaphore/{kind}/{name}/events: whoever may
// GET the semaphore may watch it.
func (h *handler) semaphoreEvents(kind locklock.Kind, routePrefix string) http.HandlerFunc {
	return h.oneEvents(kind, routePrefix, true)
}

// oneEvents serves the stream of one lock, or of one semaphore.
func (h *handler) oneEvents(kind locklock.Kind, routePrefix string, semaphore bool) http.HandlerFunc {
	skip := len(h.prefix) + len(routePrefix)
	return func(w http.ResponseWriter, r *http.Request) {
		err := func() error {
			path := r.URL.Path[skip:]
			c, id, err := h.lockCaller(w, r, kind, path[:len(path)-len("/events")])
			if err != nil {
				return err
			}
			q, err := parseQuery(r.URL.RawQuery, paramLastEventID)
			if err != nil {
				return err
			}
			f := locklock.Filter{ID: &id, Semaphore: semaphore}
			return h.stream(w, r, c, f, resumeFrom(r, q.Get(paramLastEventID)))
		}()
		if err != nil {
			h.fail(w, r, err)
		}
	}
}

// namespaceEvents serves GET /events: every lock of the caller's namespace,
// for API keys only, like /locks.
func (h *handler) namespaceEvents(w http.ResponseWriter, r *http.Request) {
	err := func() error {
		c, err := h.caller(w, r)
		if err != nil {
			return err
		}
		if c.Anonymous {
			return fmt.Errorf("%w: watching a namespace needs an API key (Authorization: Bearer <key>)", locklock.ErrUnauthorized)
		}
		q, err := parseQuery(r.URL.RawQuery, paramKind, paramPrefix, paramLastEventID)
		if err != nil {
			return err
		}
		f := locklock.Filter{Namespace: c.Namespace, Prefix: q.Get(paramPrefix)}
		switch kind := locklock.Kind(q.Get(paramKind)); {
		case !q.Has(paramKind):
			if q.Has(paramPrefix) {
				return invalidBody("query parameter prefix needs kind")
			}
		case kind == locklock.KindUUID || kind == locklock.KindKey:
			f.Kind = kind
		default:
			return invalidBody("query parameter kind must be %q or %q", locklock.KindUUID, locklock.KindKey)
		}
		return h.stream(w, r, c, f, resumeFrom(r, q.Get(paramLastEventID)))
	}()
	if err != nil {
		h.fail(w, r, err)
	}
}

// resumeFrom is the position a client resumes after: the Last-Event-ID
// header, or the query parameter.
func resumeFrom(r *http.Request, param string) string {
	if id := r.Header.Get(lastEventIDHeader); id != "" {
		return id
	}
	return param
}

// watcherOf names the caller for the per-caller cap on streams: its rate
// bucket (one per API key, one per address for anonymous callers), else its
// namespace or address.
func watcherOf(r *http.Request, c Caller) string {
	switch {
	case c.RateKey != "":
		return c.RateKey
	case !c.Anonymous: // an authenticator without rate keys: per namespace
		return "ns:" + c.Namespace
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return "addr:" + host
	}
	return "addr:" + r.RemoteAddr
}

// stream opens the watch and writes it as server-sent events until the
// client goes, reads too slowly, or the server shuts streams down. Errors
// before the first byte become problems; after it the stream just ends.
func (h *handler) stream(w http.ResponseWriter, r *http.Request, c Caller, f locklock.Filter, from string) error {
	watch, err := h.svc.Watch(r.Context(), locklock.WatchRequest{Filter: f, From: from, Caller: watcherOf(r, c)})
	if err != nil {
		return err
	}
	defer watch.Close()
	out := &sseWriter{w: w, rc: http.NewResponseController(w)}
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Accel-Buffering", "no") // nginx: do not hold events back
	w.WriteHeader(http.StatusOK)

	var buf []byte
	if watch.Reset {
		buf = appendReset(buf)
	}
	if !watch.Resumed {
		switch {
		case f.ID != nil && f.Semaphore:
			var state any = nil
			if watch.SemaphoreState != nil {
				state = semaphoreOf(*watch.SemaphoreState)
			}
			buf = appendFrame(buf, watch.At.String(), "state", encodeData(map[string]any{"semaphore": state}))
		case f.ID != nil:
			var state any = nil
			if watch.State != nil {
				state = lockOf(*watch.State)
			}
			buf = appendFrame(buf, watch.At.String(), "state", encodeData(map[string]any{"lock": state}))
		default:
			buf = appendFrame(buf, watch.At.String(), "ready", []byte("{}"))
		}
	}
	if out.send(buf) != nil {
		return nil
	}
	ctx := r.Context()
	ping := time.NewTimer(pingEvery)
	defer ping.Stop()
	var pace streamPace
	for {
		if !pace.linger(ctx, watch.Filling()) {
			return nil
		}
		select {
		case <-ctx.Done(): // the client went
			return nil
		case <-ping.C:
			buf = append(buf[:0], ": ping\n\n"...)
		case <-watch.Ready():
			evs, err := watch.Take()
			switch {
			case errors.Is(err, locklock.ErrSlowReader):
				_ = out.send(appendReset(buf[:0]))
				return nil
			case err != nil: // the server shuts streams down
				return nil
			case len(evs) == 0:
				continue
			}
			buf = buf[:0]
			for _, ev := range evs {
				buf = append(buf, ev.Frame(encodeEvent)...)
			}
			pace.wrote(len(evs))
		}
		if out.send(buf) != nil {
			return nil
		}
		ping.Reset(pingEvery)
	}
}

// Pacing: a stream's events go out at once after a quiet spell, but after
// a write of a few events a stream waits up to streamLinger, and sends what
// came meanwhile in one write. Every write is a system call and a wake-up
// of the reader, and a thousand streams each written per event (one lock's
// stream under load: an event per change) would cost the server more than
// the lock operations they report. The wait ends early when events pile up
// (Watch.Filling, at a quarter of the backlog that cuts a reader off), so a
// busy stream — a namespace's — is written as fast as it fills.
const (
	streamLinger = 250 * time.Millisecond
	// lingerBelow: a write of at least this many events waits for nothing;
	// the stream is busy and its writes are full already.
	lingerBelow = 64
)

// streamPace decides how long a stream waits before its next write.
type streamPace struct {
	delay time.Duration
	timer *time.Timer
}

// wrote records a write of n events.
func (p *streamPace) wrote(n int) {
	p.delay = 0
	if n < lingerBelow {
		p.delay = streamLinger
	}
}

// linger waits out the delay set by the last write, or until many events
// wait; false if ctx ended.
func (p *streamPace) linger(ctx context.Context, filling <-chan struct{}) bool {
	if p.delay <= 0 {
		return true
	}
	if p.timer == nil {
		p.timer = time.NewTimer(p.delay)
	} else {
		p.timer.Reset(p.delay)
	}
	p.delay = 0
	select {
	case <-p.timer.C:
	case <-filling:
		p.timer.Stop()
	case <-ctx.Done():
		p.timer.Stop()
		return false
	}
	return true
}

// sseWriter writes and flushes, each write bounded by streamWriteTimeout
// (moved on at most once a second: setting a deadline costs a lock and a
// timer update, and a second more or less does not matter here).
type sseWriter struct {
	w        http.ResponseWriter
	rc       *http.ResponseController
	deadline time.Time
}

func (s *sseWriter) send(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if now := time.Now(); s.deadline.Sub(now) < streamWriteTimeout-time.Second {
		s.deadline = now.Add(streamWriteTimeout)
		_ = s.rc.SetWriteDeadline(s.deadline)
	}
	if _, err := s.w.Write(b); err != nil {
		return err
	}
	return s.rc.Flush()
}

// appendReset tells the client to start afresh. It carries no id, so that
// a browser reconnecting after it does not resume from a stale position.
func appendReset(b []byte) []byte { return append(b, "event: reset\ndata: {}\n\n"...) }

// appendFrame appends one server-sent event. data is one line of JSON (the
// encoder escapes newlines in strings), so one data: field holds it.
func appendFrame(b []byte, id, event string, data []byte) []byte {
	if id != "" {
		b = append(append(append(b, "id: "...), id...), '\n')
	}
	b = append(append(append(b, "event: "...), event...), '\n')
	b = append(append(append(b, "data: "...), data...), "\n\n"...)
	return b
}

// eventJSON is the data of a lock event (API.md §9).
type eventJSON struct {
	Type         locklock.EventType `json:"type"`
	At           string             `json:"at"`
	Lock         lockJSON           `json:"lock"`
	DelayedUntil string             `json:"delayed_until,omitempty"`
}

// encodeEvent is an event's whole frame, made once per event for every
// stream that sends it (Event.Frame). Its data is what encode writes for
// eventOf(ev) — compact, without HTML escaping, like every answer —, the
// lock appended by hand when appendLock can (a frame per lock change is
// most of a busy stream's cost).
func encodeEvent(ev *locklock.Event) []byte {
	if ev.Slot != nil {
		return encodeSlotEvent(ev)
	}
	l := ev.Lock
	l.ObservedAt = ev.At // expires_in as it was when the event happened
	b := make([]byte, 0, 512)
	b = append(append(append(b, "id: "...), ev.Pos.String()...), '\n')
	b = append(append(append(b, "event: "...), ev.Type...), '\n')
	b = append(b, "data: "...)
	data := len(b)
	b = append(append(append(b, `{"type":"`...), ev.Type...), `","at":`...)
	b = appendTime(b, ev.At)
	b = append(b, `,"lock":`...)
	if lb := appendLock(b, l); lb != nil {
		b = lb
		if until := eventDelayEnd(ev.Type, l); !until.IsZero() {
			b = appendTime(append(b, `,"delayed_until":`...), until)
		}
		b = append(b, '}')
	} else {
		b = append(b[:data], encodeData(eventOf(ev.Type, ev.At, l))...)
	}
	return append(b, "\n\n"...)
}

// slotEventJSON is the data of a semaphore slot's event: "slot" in place
// of "lock" (API.md §9).
type slotEventJSON struct {
	Type locklock.EventType `json:"type"`
	At   string             `json:"at"`
	Slot slotJSON           `json:"slot"`
}

// encodeSlotEvent is a slot event's whole frame, with encoding/json: slot
// events reach only the streams of a namespace (and, later, of one
// semaphore), not the lock streams a busy server has most of.
func encodeSlotEvent(ev *locklock.Event) []byte {
	sl := *ev.Slot
	sl.ObservedAt = ev.At // expires_in as it was when the event happened
	b := make([]byte, 0, 512)
	b = append(append(append(b, "id: "...), ev.Pos.String()...), '\n')
	b = append(append(append(b, "event: "...), ev.Type...), '\n')
	b = append(append(b, "data: "...), encodeData(slotEventJSON{Type: ev.Type, At: formatTime(ev.At), Slot: slotOf(sl)})...)
	return append(b, "\n\n"...)
}

// eventOf is an event's data for encoding/json.
func eventOf(typ locklock.EventType, at time.Time, l locklock.Lock) eventJSON {
	data := eventJSON{Type: typ, At: formatTime(at), Lock: lockOf(l)}
	if until := eventDelayEnd(typ, l); !until.IsZero() {
		data.DelayedUntil = formatTime(until)
	}
	return data
}

// eventDelayEnd is when the lock-delay an event began ends: expired and
// revoked carry it, when the lock has one.
func eventDelayEnd(typ locklock.EventType, l locklock.Lock) time.Time {
	if typ == locklock.EventExpired || typ == locklock.EventRevoked {
		return l.DelayedUntil()
	}
	return time.Time{}
}

// encodeData is v as one line of compact JSON, as encode writes answers
// (the encoder escapes newlines in strings, so one data: field holds it).
func encodeData(v any) []byte {
	return bytes.TrimSuffix(encode(v), []byte("\n"))
}
