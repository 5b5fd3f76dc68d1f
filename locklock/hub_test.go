package locklock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func evOf(ns string, name string, typ EventType) *Event {
	return &Event{Type: typ, Lock: Lock{ID: ID{Namespace: ns, Kind: KindKey, Name: name}}}
}

func next(t *testing.T, s *Subscription) []*Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	evs, err := s.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return evs
}

func names(evs []*Event) string {
	out := ""
	for _, ev := range evs {
		out += fmt.Sprintf("%s/%s:%s ", ev.Lock.Namespace, ev.Lock.Name, ev.Type)
	}
	return out
}

func TestHubFilters(t *testing.T) {
	h := recordingHub(100)
	a := ID{Namespace: "acme", Kind: KindKey, Name: "jobs/1"}
	one, _, _, _ := h.subscribe(Filter{ID: &a}, Position{})
	acme, _, _, _ := h.subscribe(Filter{Namespace: "acme", Kind: KindKey, Prefix: "jobs/"}, Position{})
	globex, _, _, _ := h.subscribe(Filter{Namespace: "globex"}, Position{})
	h.publish(evOf("acme", "jobs/1", EventAcquired), evOf("acme", "other", EventAcquired),
		evOf("globex", "jobs/1", EventAcquired), evOf("acme", "jobs/2", EventReleased))
	if got, want := names(next(t, one)), "acme/jobs/1:acquired "; got != want {
		t.Errorf("one lock: %q, want %q", got, want)
	}
	if got, want := names(next(t, acme)), "acme/jobs/1:acquired acme/jobs/2:released "; got != want {
		t.Errorf("acme, prefix jobs/: %q, want %q", got, want)
	}
	if got, want := names(next(t, globex)), "globex/jobs/1:acquired "; got != want {
		t.Errorf("globex: %q, want %q (never acme's)", got, want)
	}
}

func TestHubResume(t *testing.T) {
	h := recordingHub(4)
	for i := range 3 {
		h.publish(evOf("ns", fmt.Sprint(i), EventAcquired))
	}
	first := h.ring[0].Pos
	s, resumed, _, _ := h.subscribe(Filter{Namespace: "ns"}, first)
	if !resumed {
		t.Fatal("resume from a retained position refused")
	}
	if got, want := names(next(t, s)), "ns/1:acquired ns/2:acquired "; got != want {
		t.Errorf("backlog %q, want %q", got, want)
	}
	for i := 3; i < 7; i++ { // wraps the ring: events 0..2 are gone
		h.publish(evOf("ns", fmt.Sprint(i), EventAcquired))
	}
	if _, resumed, _, _ := h.subscribe(Filter{Namespace: "ns"}, first); resumed {
		t.Error("resume from a position older than the retained events was accepted")
	}
	// The event just before the oldest retained one is still resumable.
	oldest := h.ring[h.next].Pos
	justBefore := Position{Epoch: oldest.Epoch, Seq: oldest.Seq - 1}
	s2, resumed, _, _ := h.subscribe(Filter{Namespace: "ns"}, justBefore)
	if !resumed || len(next(t, s2)) != 4 {
		t.Error("resume from right before the oldest retained event refused or incomplete")
	}
	for _, bad := range []Position{{Epoch: "other", Seq: 1}, {Epoch: h.epoch, Seq: 99}} {
		if _, resumed, _, _ := h.subscribe(Filter{Namespace: "ns"}, bad); resumed {
			t.Errorf("resume from %v accepted", bad)
		}
	}
	if _, resumed, _, _ := h.subscribe(Filter{Namespace: "ns"}, h.last); !resumed {
		t.Error("resume from the latest position refused")
	}
}

func TestPositionText(t *testing.T) {
	a := Position{Epoch: "m0a1b", Seq: 9, Sub: 1}
	b := Position{Epoch: "m0a1b", Seq: 10}
	if !(a.String() < b.String()) || !b.After(a) {
		t.Errorf("%s, %s do not sort in stream order", a, b)
	}
	for _, p := range []Position{a, b, {Epoch: "e42", Seq: 1 << 60, Sub: 65535}} {
		got, err := ParsePosition(p.String())
		if err != nil || got != p {
			t.Errorf("ParsePosition(%q) = %v, %v", p, got, err)
		}
	}
	for _, s := range []string{"", "x", "m1.12.3", "m1.zzzzzzzzzzzzzzzz.0000", ".0000000000000001.0000"} {
		if _, err := ParsePosition(s); err == nil {
			t.Errorf("ParsePosition(%q) accepted", s)
		}
	}
}

// TestHubSlowReaderCut: a reader more than MaxEventBacklog behind is cut,
// and publishing never waits for it.
func TestHubSlowReaderCut(t *testing.T) {
	h := recordingHub(10)
	slow, _, _, _ := h.subscribe(Filter{Namespace: "ns"}, Position{})
	fast, _, _, _ := h.subscribe(Filter{Namespace: "ns"}, Position{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < MaxEventBacklog+5; i++ {
			h.publish(evOf("ns", "x", EventRefreshed))
			if i%100 == 0 {
				next(t, fast)
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("publishing blocked on a slow reader")
	}
	if _, err := slow.Next(t.Context()); !errors.Is(err, ErrSlowReader) {
		t.Errorf("slow reader: %v, want ErrSlowReader", err)
	}
	if evs, err := fast.Next(t.Context()); err != nil || len(evs) == 0 {
		t.Errorf("fast reader: %d events, %v", len(evs), err)
	}
}

// TestHubConcurrentOrder: events published concurrently reach a
// subscriber in the order their positions say, per lock in publish order.
func TestHubConcurrentOrder(t *testing.T) {
	h := recordingHub(100)
	s, _, _, _ := h.subscribe(Filter{Namespace: "ns"}, Position{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 100 {
				ev := evOf("ns", fmt.Sprint(w), EventRefreshed)
				ev.Lock.Token = uint64(i)
				h.publish(ev)
			}
		})
	}
	var got []*Event
	for len(got) < 800 {
		got = append(got, next(t, s)...)
	}
	wg.Wait()
	lastTok := map[string]int{}
	for i, ev := range got {
		if i > 0 && !ev.Pos.After(got[i-1].Pos) {
			t.Fatalf("event %d at %v not after %v", i, ev.Pos, got[i-1].Pos)
		}
		if prev, ok := lastTok[ev.Lock.Name]; ok && int(ev.Lock.Token) != prev+1 {
			t.Fatalf("lock %s: token %d after %d", ev.Lock.Name, ev.Lock.Token, prev)
		}
		lastTok[ev.Lock.Name] = int(ev.Lock.Token)
	}
}

func TestHubCloseEndsSubscriptions(t *testing.T) {
	h := recordingHub(10)
	s, _, _, _ := h.subscribe(Filter{Namespace: "ns"}, Position{})
	h.close()
	if _, err := s.Next(t.Context()); !errors.Is(err, errSubscriptionClosed) {
		t.Errorf("after close: %v", err)
	}
	if _, _, _, err := h.subscribe(Filter{Namespace: "ns"}, Position{}); err == nil {
		t.Error("subscribe after close accepted")
	}
}

// TestHubFilling: Filling is signalled once the queue reaches FillingAt, so
// a reader that holds back reads before it is cut.
func TestHubFilling(t *testing.T) {
	h := recordingHub(10)
	s, _, _, _ := h.subscribe(Filter{Namespace: "ns"}, Position{})
	for range FillingAt - 1 {
		h.publish(evOf("ns", "x", EventRefreshed))
	}
	select {
	case <-s.Filling():
		t.Fatalf("Filling signalled below %d events", FillingAt)
	default:
	}
	h.publish(evOf("ns", "x", EventRefreshed))
	select {
	case <-s.Filling():
	default:
		t.Fatalf("Filling not signalled at %d events", FillingAt)
	}
	if evs, err := s.Take(); err != nil || len(evs) != FillingAt {
		t.Errorf("Take: %d events, %v", len(evs), err)
	}
}

// TestHubRestart: an engine's EventRestart ends every subscription (its
// client resumes or starts afresh), drops what is retained, and moves the
// stream to the restart's position and epoch.
func TestHubRestart(t *testing.T) {
	h := recordingHub(10)
	h.startAt(Position{Epoch: "e0"}, false)
	s, _, _, _ := h.subscribe(Filter{Namespace: "ns"}, Position{})
	ev := evOf("ns", "a", EventAcquired)
	ev.Pos = Position{Epoch: "e0", Seq: 1, Sub: 1}
	h.publish(ev)
	restart := Position{Epoch: "e1", Seq: 7}
	h.publish(&Event{Type: EventRestart, Pos: restart})
	if evs, err := s.Next(t.Context()); err != nil || len(evs) != 1 {
		t.Fatalf("before the restart: %v, %v", evs, err)
	}
	if _, err := s.Next(t.Context()); !errors.Is(err, errStreamRestarted) {
		t.Errorf("after the restart: %v, want errStreamRestarted", err)
	}
	if _, resumed, _, _ := h.subscribe(Filter{Namespace: "ns"}, ev.Pos); resumed {
		t.Error("resume from before the restart accepted")
	}
	s2, resumed, at, _ := h.subscribe(Filter{Namespace: "ns"}, restart)
	if !resumed || at != restart {
		t.Errorf("resume from the restart: resumed %v at %v", resumed, at)
	}
	ev2 := evOf("ns", "b", EventAcquired)
	ev2.Pos = Position{Epoch: "e1", Seq: 8, Sub: 1}
	h.publish(ev2)
	if got := names(next(t, s2)); got != "ns/b:acquired " {
		t.Errorf("after the restart: %q", got)
	}
}

// TestHubHistoryResume: with an engine that keeps its history, a position
// of the stream older than what is retained, or later than the last event
// published, is resumed: the subscription says what to read from storage,
// and drops the events up to a later position as they arrive.
func TestHubHistoryResume(t *testing.T) {
	h := recordingHub(2)
	start := Position{Epoch: "e1", Seq: 10}
	h.startAt(start, true)
	for i := range 3 {
		ev := evOf("ns", fmt.Sprint(i), EventAcquired)
		ev.Pos = Position{Epoch: "e1", Seq: uint64(11 + i), Sub: 1}
		h.publish(ev)
	}
	old := Position{Epoch: "e1", Seq: 5, Sub: 2}
	s, resumed, _, _ := h.subscribe(Filter{Namespace: "ns"}, old)
	if !resumed || s.replay == nil || s.replay.from != old || s.replay.to != h.last {
		t.Fatalf("resume from before the retained events: resumed %v replay %+v", resumed, s.replay)
	}
	late := evOf("ns", "late", EventAcquired)
	late.Pos = Position{Epoch: "e1", Seq: 20, Sub: 1}
	h.publish(late)
	replayed := evOf("ns", "replayed", EventAcquired)
	s.prepend([]*Event{replayed})
	if got := names(next(t, s)); got != "ns/replayed:acquired ns/late:acquired " {
		t.Errorf("replayed, then live: %q", got)
	}

	ahead := Position{Epoch: "e1", Seq: 30, Sub: 1}
	s2, resumed, _, _ := h.subscribe(Filter{Namespace: "ns"}, ahead)
	if !resumed || s2.replay == nil {
		t.Fatalf("resume from a position another server reached: resumed %v", resumed)
	}
	s2.prepend(nil)
	for _, p := range []Position{{Epoch: "e1", Seq: 30, Sub: 1}, {Epoch: "e1", Seq: 30, Sub: 2}} {
		ev := evOf("ns", fmt.Sprint(p.Sub), EventAcquired)
		ev.Pos = p
		h.publish(ev)
	}
	if got := names(next(t, s2)); got != "ns/2:acquired " {
		t.Errorf("after a position ahead: %q, want only the event after it", got)
	}
	if _, resumed, _, _ := h.subscribe(Filter{Namespace: "ns"}, Position{Epoch: "other", Seq: 1}); resumed {
		t.Error("a position of another epoch resumed")
	}
}

// recordingHub is a hub that keeps every event, as it does once a stream
// has been open (an idle hub only counts them).
func recordingHub(retention int) *hub {
	h := newHub(retention)
	h.recording.Store(true)
	h.lastStream = time.Now()
	return h
}

// TestHubIdle: with no stream open the hub does not keep events; a stream
// opened then starts after them, and cannot resume from before; once a
// stream has been open the hub keeps events for retentionWindow after the
// last one closed, then goes idle again.
func TestHubIdle(t *testing.T) {
	now := time.Unix(1000, 0)
	h := newHub(10)
	h.now = func() time.Time { return now }
	for range 3 {
		h.publish(evOf("ns", "x", EventAcquired))
	}
	if h.next != 0 || h.skipped.Load() != 3 {
		t.Fatalf("an idle hub kept events: next %d, skipped %d", h.next, h.skipped.Load())
	}
	s, _, at, _ := h.subscribe(Filter{Namespace: "ns"}, Position{})
	if at.Seq != 3 {
		t.Errorf("a stream opened after 3 uncounted events starts at %v, want seq 3", at)
	}
	if x, resumed, _, _ := h.subscribe(Filter{Namespace: "ns"}, Position{Epoch: h.epoch, Seq: 1}); resumed {
		t.Error("resumed from a position the idle hub did not keep")
	} else {
		x.Close()
	}
	h.publish(evOf("ns", "x", EventReleased))
	if evs, _ := s.Take(); len(evs) != 1 || evs[0].Pos.Seq != 4 {
		t.Fatalf("events after the idle spell: %v", evs)
	}
	last := h.last
	s.Close()
	s.Close() // twice: counted once
	// Within the window after the last stream closed: kept, resumable.
	now = now.Add(retentionWindow - time.Second)
	h.publish(evOf("ns", "x", EventAcquired))
	r, resumed, _, _ := h.subscribe(Filter{Namespace: "ns"}, last)
	if !resumed || len(r.queue) != 1 {
		t.Fatalf("resume within the window: resumed %v, %d events", resumed, len(r.queue))
	}
	r.Close()
	// Past it: idle again.
	now = now.Add(retentionWindow + time.Second)
	h.publish(evOf("ns", "x", EventAcquired))
	h.publish(evOf("ns", "x", EventReleased))
	if h.recording.Load() || h.skipped.Load() == 0 {
		t.Errorf("the hub still records %v after the window (skipped %d)", retentionWindow, h.skipped.Load())
	}
}
