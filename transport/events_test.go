package transport

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/locklock/locklock/engines/memory"
	"github.com/locklock/locklock/locklock"
)

// sseEvent is one server-sent event as a client reads it.
type sseEvent struct {
	id, event, data string
	comment         bool
}

// sseStream reads events from a real HTTP response.
type sseStream struct {
	t    *testing.T
	resp *http.Response
	r    *bufio.Reader
	ch   chan sseEvent
}

func openStream(t *testing.T, srv *httptest.Server, path string, hdr ...string) (*sseStream, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", path, err)
	}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		return nil, resp
	}
	s := &sseStream{t: t, resp: resp, r: bufio.NewReader(resp.Body), ch: make(chan sseEvent, 100)}
	go s.read()
	return s, resp
}

func (s *sseStream) read() {
	defer close(s.ch)
	var ev sseEvent
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if ev != (sseEvent{}) {
				s.ch <- ev
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, ":"):
			ev.comment = true
		case strings.HasPrefix(line, "id: "):
			ev.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			ev.event = line[7:]
		case strings.HasPrefix(line, "data: "):
			ev.data += line[6:]
		}
	}
}

// next returns the next event (pings skipped), or fails.
func (s *sseStream) next() sseEvent {
	s.t.Helper()
	for {
		select {
		case ev, ok := <-s.ch:
			if !ok {
				s.t.Fatal("stream ended")
			}
			if !ev.comment {
				return ev
			}
		case <-time.After(10 * time.Second):
			s.t.Fatal("no event within 10 s")
		}
	}
}

// ended says whether the server closed the stream (after any events left).
func (s *sseStream) ended() bool {
	for {
		select {
		case _, ok := <-s.ch:
			if !ok {
				return true
			}
		case <-time.After(5 * time.Second):
			return false
		}
	}
}

type eventData struct {
	Type         string   `json:"type"`
	At           string   `json:"at"`
	Lock         lockJSON `json:"lock"`
	DelayedUntil string   `json:"delayed_until"`
}

func (s *sseStream) nextOf(typ string) eventData {
	s.t.Helper()
	ev := s.next()
	if ev.event != typ || ev.id == "" {
		s.t.Fatalf("event %+v, want %s with an id", ev, typ)
	}
	var d eventData
	if err := json.Unmarshal([]byte(ev.data), &d); err != nil || d.Type != typ {
		s.t.Fatalf("event data %s: %v", ev.data, err)
	}
	return d
}

func newEventServer(t *testing.T, svcOpts []locklock.Option, opts ...Option) (*httptest.Server, *locklock.Service) {
	t.Helper()
	engine := memory.New()
	t.Cleanup(func() { engine.Close() })
	svc := locklock.NewService(engine, svcOpts...)
	srv := httptest.NewUnstartedServer(NewHandler(svc, append([]Option{WithAuthenticator(testAuth)}, opts...)...))
	// A write timeout far shorter than a stream's life: streams must not
	// be cut by it.
	srv.Config.WriteTimeout = 500 * time.Millisecond
	srv.Start()
	t.Cleanup(func() { svc.StopWatching(); srv.Close() })
	return srv, svc
}

func do(t *testing.T, srv *httptest.Server, method, path, body string, hdr ...string) *http.Response {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), method, srv.URL+path, strings.NewReader(body))
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// TestLockStreamOverHTTP: one lock's stream over a real connection: the
// SSE headers, state first, then acquired / refreshed / released with the
// lock object, and still alive after the server's write timeout.
func TestLockStreamOverHTTP(t *testing.T) {
	srv, _ := newEventServer(t, nil)
	s, resp := openStream(t, srv, uuidPath(u1)+"/events")
	if s == nil {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if ct, cc := resp.Header.Get("Content-Type"), resp.Header.Get("Cache-Control"); ct != "text/event-stream" || cc != "no-store" {
		t.Errorf("Content-Type %q, Cache-Control %q", ct, cc)
	}
	state := s.next()
	if state.event != "state" || state.data != `{"lock":null}` || state.id == "" {
		t.Fatalf("first event %+v, want state {\"lock\":null} with an id", state)
	}
	time.Sleep(time.Second) // past the server's write timeout
	if r := do(t, srv, http.MethodPost, uuidPath(u1), `{"secret":"s","expires_in":60}`); r.StatusCode != http.StatusCreated {
		t.Fatalf("acquire: %d", r.StatusCode)
	}
	acquired := s.nextOf("acquired")
	if acquired.Lock.Name != u1 || acquired.Lock.ExpiresIn != 60 || !acquired.Lock.Protected {
		t.Errorf("acquired carries %+v", acquired.Lock)
	}
	do(t, srv, http.MethodPatch, uuidPath(u1), `{"secret":"s","expires_in":120}`)
	if d := s.nextOf("refreshed"); d.Lock.ExpiresIn != 120 {
		t.Errorf("refreshed carries %+v", d.Lock)
	}
	do(t, srv, http.MethodDelete, uuidPath(u1), `{"secret":"s"}`)
	if d := s.nextOf("released"); d.Lock.FencingToken != acquired.Lock.FencingToken {
		t.Errorf("released carries %+v", d.Lock)
	}
}

// TestStreamOfAHeldLockAndResume: state carries the held lock; a client
// that reconnects with Last-Event-ID gets exactly what it missed, with no
// state; one with an unknown id gets reset, then state.
func TestStreamOfAHeldLockAndResume(t *testing.T) {
	srv, _ := newEventServer(t, nil)
	do(t, srv, http.MethodPost, uuidPath(u1), `{"expires_in":60}`)
	s, _ := openStream(t, srv, uuidPath(u1)+"/events")
	state := s.next()
	var st struct{ Lock *lockJSON }
	if err := json.Unmarshal([]byte(state.data), &st); err != nil || state.event != "state" || st.Lock == nil || st.Lock.Name != u1 {
		t.Fatalf("state %+v, want the held lock", state)
	}
	do(t, srv, http.MethodDelete, uuidPath(u1), "")
	released := s.next()
	if released.event != "released" {
		t.Fatalf("after state: %+v, want released (and no acquired: the state had it)", released)
	}
	do(t, srv, http.MethodPost, uuidPath(u1), "")
	do(t, srv, http.MethodDelete, uuidPath(u1), "")

	r, _ := openStream(t, srv, uuidPath(u1)+"/events", lastEventIDHeader, released.id)
	r.nextOf("acquired")
	r.nextOf("released")

	q, _ := openStream(t, srv, uuidPath(u1)+"/events?last_event_id="+released.id)
	q.nextOf("acquired")

	x, _ := openStream(t, srv, uuidPath(u1)+"/events", lastEventIDHeader, "somewhere-else")
	if ev := x.next(); ev.event != "reset" || ev.id != "" {
		t.Fatalf("unknown position: %+v, want reset without an id", ev)
	}
	if ev := x.next(); ev.event != "state" {
		t.Fatalf("after reset: %+v, want state", ev)
	}
}

// TestNamespaceStreamOverHTTP: /events is for API keys, starts with ready,
// sees its namespace only, and takes kind and prefix.
func TestNamespaceStreamOverHTTP(t *testing.T) {
	srv, _ := newEventServer(t, nil)
	if _, resp := openStream(t, srv, "/events"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous /events: %d, want 401", resp.StatusCode)
	}
	for _, q := range []string{"?kind=lock", "?prefix=a", "?kind=key&limit=3", "?secret=x"} {
		if _, resp := openStream(t, srv, "/events"+q, "Authorization", proKey); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("/events%s: %d, want 400", q, resp.StatusCode)
		}
	}
	acme, _ := openStream(t, srv, "/events?kind=key&prefix=jobs.", "Authorization", proKey)
	if ev := acme.next(); ev.event != "ready" || ev.data != "{}" || ev.id == "" {
		t.Fatalf("first event %+v, want ready", ev)
	}
	do(t, srv, http.MethodPost, uuidPath(u2), "", "Authorization", devKey) // namespace devco
	do(t, srv, http.MethodPost, keyPath("other"), "", "Authorization", proKey)
	do(t, srv, http.MethodPost, keyPath("jobs.1"), "", "Authorization", proKey)
	d := acme.nextOf("acquired")
	if d.Lock.Name != "jobs.1" || d.Lock.Namespace != "acme" {
		t.Errorf("acme's jobs. stream got %+v", d.Lock)
	}
	if _, resp := openStream(t, srv, uuidPath(u1)+"/events?kind=uuid"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a lock stream with kind: %d, want 400", resp.StatusCode)
	}
	if _, resp := openStream(t, srv, keyPath("x")+"/events"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("an anonymous key-lock stream: %d, want 401", resp.StatusCode)
	}
	if resp := do(t, srv, http.MethodPost, "/events", ""); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /events: %d, want 405", resp.StatusCode)
	}
}

// TestNamespaceStreamShowsSlots: a namespace stream carries its
// semaphores' slot events, with "slot" in place of "lock" (API.md §9).
func TestNamespaceStreamShowsSlots(t *testing.T) {
	srv, _ := newEventServer(t, nil)
	acme, _ := openStream(t, srv, "/events?kind=key", "Authorization", proKey)
	if ev := acme.next(); ev.event != "ready" {
		t.Fatalf("first event %+v, want ready", ev)
	}
	resp := doBody(t, srv, http.MethodPost, semPath("key", "pool"), `{"limit":3,"weight":2,"holder":"w"}`, "Authorization", proKey)
	var sl slotJSON
	decodeStrict(t, resp, &sl)
	ev := acme.next()
	if ev.event != "acquired" || ev.id == "" {
		t.Fatalf("event %+v, want acquired", ev)
	}
	var d slotEventJSON
	decodeStrict(t, []byte(ev.data), &d)
	if d.Type != "acquired" || d.At == "" || !reflect.DeepEqual(d.Slot, sl) {
		t.Errorf("slot event %+v, want the slot %+v", d, sl)
	}
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(ev.data))
	if err != nil {
		t.Fatal(err)
	}
	if err := loadOpenAPI(t).schema("#/components/schemas/LockEvent").Validate(v); err != nil {
		t.Errorf("a slot event does not fit the document's LockEvent: %v", err)
	}
	doBody(t, srv, http.MethodDelete, semPath("key", "pool")+"/"+sl.Slot, "", "Authorization", proKey)
	if ev := acme.next(); ev.event != "released" || !strings.Contains(ev.data, `"slot":{`) || strings.Contains(ev.data, `"lock"`) {
		t.Errorf("release event %+v", ev)
	}
}

// TestSemaphoreStreamOverHTTP: one semaphore's stream starts with its state
// (the semaphore with its slots), then its slots' events; a lock of the same
// name is not in it.
func TestSemaphoreStreamOverHTTP(t *testing.T) {
	srv, _ := newEventServer(t, nil)
	auth := []string{"Authorization", proKey}
	var first slotJSON
	decodeStrict(t, doBody(t, srv, http.MethodPost, semPath("key", "pool"), `{"limit":3}`, auth...), &first)
	s, resp := openStream(t, srv, semPath("key", "pool")+"/events", auth...)
	if s == nil {
		t.Fatalf("stream: %d", resp.StatusCode)
	}
	ev := s.next()
	var state struct {
		Semaphore *semaphoreJSON `json:"semaphore"`
	}
	decodeStrict(t, []byte(ev.data), &state)
	if ev.event != "state" || ev.id == "" || state.Semaphore == nil || len(state.Semaphore.Slots) != 1 ||
		state.Semaphore.Slots[0].Slot != first.Slot || state.Semaphore.InUse != 1 {
		t.Fatalf("first event %+v, want the state with slot %s", ev, first.Slot)
	}
	do(t, srv, http.MethodPost, "/lock/key/pool", "", auth...) // same name, a lock: not in the stream
	var second slotJSON
	decodeStrict(t, doBody(t, srv, http.MethodPost, semPath("key", "pool"), `{"limit":3,"weight":2}`, auth...), &second)
	doBody(t, srv, http.MethodDelete, semPath("key", "pool")+"/"+first.Slot, "", auth...)
	for _, want := range []struct{ typ, slot string }{{"acquired", second.Slot}, {"released", first.Slot}} {
		ev := s.next()
		var d slotEventJSON
		decodeStrict(t, []byte(ev.data), &d)
		if ev.event != want.typ || d.Slot.Slot != want.slot || d.Slot.Name != "pool" {
			t.Errorf("event %+v, want %s of slot %s", ev, want.typ, want.slot)
		}
	}

	empty, _ := openStream(t, srv, semPath("key", "none")+"/events", auth...)
	if ev := empty.next(); ev.event != "state" || ev.data != `{"semaphore":null}` {
		t.Errorf("a semaphore without slots starts with %+v, want state null", ev)
	}
}

// doBody is do returning the answer's body.
func doBody(t *testing.T, srv *httptest.Server, method, path, body string, hdr ...string) []byte {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), method, srv.URL+path, strings.NewReader(body))
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	return raw
}

// TestStreamCaps: beyond --max-watchers-per-caller a caller gets 503.
func TestStreamCaps(t *testing.T) {
	srv, _ := newEventServer(t, []locklock.Option{locklock.WithMaxWatchersPerCaller(2)})
	for range 2 {
		if s, resp := openStream(t, srv, uuidPath(u1)+"/events"); s == nil {
			t.Fatalf("stream: %d", resp.StatusCode)
		}
	}
	if _, resp := openStream(t, srv, uuidPath(u1)+"/events"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("third stream of one address: %d, want 503", resp.StatusCode)
	}
	if s, resp := openStream(t, srv, "/events", "Authorization", proKey); s == nil {
		t.Fatalf("another caller: %d", resp.StatusCode)
	}
}

// TestStreamsEndOnShutdown: StopWatching ends open streams, so a server's
// shutdown is not held up by them.
func TestStreamsEndOnShutdown(t *testing.T) {
	srv, svc := newEventServer(t, nil)
	s, _ := openStream(t, srv, uuidPath(u1)+"/events")
	s.next()
	svc.StopWatching()
	if !s.ended() {
		t.Fatal("the stream stayed open after StopWatching")
	}
}

// TestStreamPacing: the first event after a quiet spell goes out at once;
// a burst that follows is held back at most streamLinger; and a stream fed
// faster than its pacing would allow is written as it fills, never cut
// while its reader keeps up.
func TestStreamPacing(t *testing.T) {
	srv, svc := newEventServer(t, nil)
	s, _ := openStream(t, srv, "/events", "Authorization", proKey)
	s.next() // ready
	id := locklock.ID{Namespace: "acme", Kind: locklock.KindKey, Name: "paced"}
	start := time.Now()
	if _, _, err := svc.Acquire(t.Context(), locklock.AcquireRequest{ID: id}); err != nil {
		t.Fatal(err)
	}
	s.nextOf("acquired")
	if d := time.Since(start); d > streamLinger/2 {
		t.Errorf("the first event took %v", d)
	}
	start = time.Now()
	for range 5 {
		if _, err := svc.Refresh(t.Context(), id, "", time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	for range 5 {
		s.nextOf("refreshed")
	}
	if d := time.Since(start); d > streamLinger+time.Second {
		t.Errorf("a burst took %v", d)
	}
	// Far more events than a reader may fall behind by, as fast as eight
	// clients can make them over HTTP: pacing must not let them pile up
	// to a cut while the reader keeps up.
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 3 * locklock.MaxEventBacklog / 8 {
					if r := do(t, srv, http.MethodPatch, keyPath("paced"), `{"expires_in":3600}`, "Authorization", proKey); r.StatusCode != http.StatusOK {
						t.Errorf("refresh: %d", r.StatusCode)
						return
					}
				}
			})
		}
		wg.Wait()
	}()
	for range 3 * locklock.MaxEventBacklog {
		if ev := s.next(); ev.event != "refreshed" {
			t.Fatalf("got %+v in a fast stream, want only refreshed (no reset)", ev)
		}
	}
	<-done
}

// TestStreamPaceLinger: after a small write the stream waits streamLinger,
// unless events pile up (filling), and after a large one not at all.
func TestStreamPaceLinger(t *testing.T) {
	var p streamPace
	p.wrote(lingerBelow)
	start := time.Now()
	if !p.linger(t.Context(), nil) || time.Since(start) > streamLinger/2 {
		t.Errorf("after a write of %d events the stream waited %v", lingerBelow, time.Since(start))
	}
	p.wrote(1)
	start = time.Now()
	if !p.linger(t.Context(), nil) || time.Since(start) < streamLinger {
		t.Errorf("after a write of 1 event the stream waited %v, want %v", time.Since(start), streamLinger)
	}
	p.wrote(1)
	filling := make(chan struct{}, 1)
	filling <- struct{}{}
	start = time.Now()
	if !p.linger(t.Context(), filling) || time.Since(start) > streamLinger/2 {
		t.Errorf("with events piling up the stream waited %v", time.Since(start))
	}
}

// TestEventFrameFastPath: an event's hand-appended data is exactly what
// encoding/json writes for it, for every type and the locks that take the
// slow path (metadata, a holder that needs escaping).
func TestEventFrameFastPath(t *testing.T) {
	at := start.Add(time.Second)
	base := locklock.Lock{
		ID:         locklock.ID{Namespace: "acme", Kind: locklock.KindKey, Name: "jobs.1"},
		AcquiredAt: start, ExpiresAt: start.Add(time.Minute), Token: 42, Guard: locklock.NewGuard("s"),
	}
	withDelay := base
	withDelay.LockDelay, withDelay.Holder = 5*time.Second, "host-a:7"
	withMeta := withDelay
	withMeta.Metadata = map[string]string{"b": "2", "a": "<1>"}
	escaped := base
	escaped.Holder = `a "quoted" <holder>`
	for _, l := range []locklock.Lock{base, withDelay, withMeta, escaped} {
		for _, typ := range []locklock.EventType{locklock.EventAcquired, locklock.EventRefreshed, locklock.EventReleased, locklock.EventExpired, locklock.EventRevoked} {
			ev := &locklock.Event{Type: typ, At: at, Lock: l, Pos: locklock.Position{Epoch: "m1", Seq: 7, Sub: 2}}
			frame := string(encodeEvent(ev))
			observed := l
			observed.ObservedAt = at
			want := "id: m1.0000000000000007.00000002\nevent: " + string(typ) + "\ndata: " + string(encodeData(eventOf(typ, at, observed))) + "\n\n"
			if frame != want {
				t.Errorf("%s of %+v:\n got %q\nwant %q", typ, l, frame, want)
			}
		}
	}
}
