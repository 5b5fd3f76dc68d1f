package transport

import (
	"context"
	"encoding/json"
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
	skip := len(h.prefix) + len(routePrefix)
	return func(w http.ResponseWriter, r *http.Request) {
		err := func() error {
			c, err := h.caller(w, r)
			if err != nil {
				return err
			}
			if kind == locklock.KindKey {
				if err := mayUseKeys(c); err != nil {
					return err
				}
			}
			path := r.URL.Path[skip:]
			id, err := locklock.NewID(c.Namespace, kind, path[:len(path)-len("/events")])
			if err != nil {
				return err
			}
			q, err := parseQuery(r.URL.RawQuery, paramLastEventID)
			if err != nil {
				return err
			}
			return h.stream(w, r, c, locklock.Filter{ID: &id}, resumeFrom(r, q.Get(paramLastEventID)))
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
	out := sseWriter{w: w, rc: http.NewResponseController(w)}
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
		if f.ID != nil {
			var state any = nil
			if watch.State != nil {
				state = lockOf(*watch.State)
			}
			buf = appendFrame(buf, watch.At.String(), "state", encodeData(map[string]any{"lock": state}))
		} else {
			buf = appendFrame(buf, watch.At.String(), "ready", []byte("{}"))
		}
	}
	if out.send(buf) != nil {
		return nil
	}
	ctx := r.Context()
	for {
		wait, cancel := context.WithTimeout(ctx, pingEvery)
		evs, err := watch.Next(wait)
		cancel()
		switch {
		case err == nil:
			buf = buf[:0]
			for _, ev := range evs {
				buf = append(buf, ev.Frame(encodeEvent)...)
			}
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
			buf = append(buf[:0], ": ping\n\n"...)
		case errors.Is(err, locklock.ErrSlowReader):
			_ = out.send(appendReset(buf[:0]))
			return nil
		default: // the client went, or the server shuts streams down
			return nil
		}
		if out.send(buf) != nil {
			return nil
		}
	}
}

// sseWriter writes and flushes, each write bounded by streamWriteTimeout.
type sseWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func (s sseWriter) send(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	_ = s.rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
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
// stream that sends it (Event.Frame).
func encodeEvent(ev *locklock.Event) []byte {
	l := ev.Lock
	l.ObservedAt = ev.At // expires_in as it was when the event happened
	data := eventJSON{Type: ev.Type, At: formatTime(ev.At), Lock: lockOf(l)}
	switch ev.Type {
	case locklock.EventExpired, locklock.EventRevoked:
		if until := l.DelayedUntil(); !until.IsZero() {
			data.DelayedUntil = formatTime(until)
		}
	}
	return appendFrame(nil, ev.Pos.String(), string(ev.Type), encodeData(data))
}

// encodeData is one line of compact JSON. json.Marshal escapes <, > and &
// in strings (as \u003c …), which every JSON reader turns back into the
// same text, and which keeps a holder's markup inert if a page ever
// mishandles the data.
func encodeData(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return []byte("{}") // our own types always marshal
	}
	return b
}
