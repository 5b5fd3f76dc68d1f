package client

import (
	"testing"
	"time"
)

// TestSlotKnowledgeJudge: the cases of slotKnowledge.judge, on knowledge
// built by learn from the events a stream would carry. The end-to-end
// tests (semjoin_test.go) put the real server in the cases that need a
// race; these pin the rule down, page limits and resets among them.
func TestSlotKnowledgeJudge(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	slot := func(id string, tok uint64) *Slot { return &Slot{ID: id, FencingToken: tok} }
	state := func(next string, slots ...Slot) Event {
		return Event{Type: EventState, Semaphore: &SemaphoreState{Slots: slots, Next: next}}
	}
	ev := func(typ, id string, tok uint64) Event { return Event{Type: typ, Slot: slot(id, tok)} }
	type step struct {
		ev     Event
		dialed int // ms
		at     int // ms: when it came
	}
	// Ours is slot "s" (token 20), acquired by a request sent at 100 ms
	// and answered at 200 ms.
	acquired := span{at(100), at(200)}
	for _, c := range []struct {
		name  string
		steps []step
		want  slotVerdict
	}{
		{"no state yet", nil, slotHeld},
		{"a reset since the state", []step{{state("", *slot("a", 10)), 0, 50}, {Event{Type: EventReset}, 0, 60}}, slotHeld},
		{"in the state", []step{{state("", *slot("a", 10), *slot("s", 20)), 150, 250}}, slotHeld},
		{"acquired since", []step{{state("", *slot("a", 10)), 0, 50}, {ev("acquired", "s", 20), 0, 190}}, slotHeld},
		{"state read after the acquire, without it", []step{{state("", *slot("a", 10)), 210, 220}}, slotGone},
		{"acquired and revoked since", []step{{state(""), 0, 50}, {ev("acquired", "s", 20), 0, 190}, {ev("revoked", "s", 20), 0, 195}}, slotGone},
		{"a later slot in the state", []step{{state("", *slot("a", 30)), 150, 250}}, slotGone},
		{"a later slot acquired since", []step{{state(""), 0, 50}, {ev("acquired", "b", 30), 0, 190}}, slotGone},
		{"state before the acquire, nothing since", []step{{state("", *slot("a", 10)), 0, 50}}, slotHeld},
		{"state while the acquire ran", []step{{state("", *slot("a", 10)), 50, 150}}, slotUnsure},
		{"empty state while the acquire ran", []step{{state(""), 50, 150}}, slotUnsure},
		// A first page up to token 15: ours, above it, may be live unseen.
		{"above a partial page, state after the acquire", []step{{state("15", *slot("a", 10), *slot("b", 15)), 210, 220}}, slotUnsure},
		{"above a partial page, a later token since", []step{{state("15", *slot("b", 15)), 0, 50}, {ev("refreshed", "c", 40), 0, 60}}, slotUnsure},
		{"above a partial page, state before the acquire", []step{{state("15", *slot("b", 15)), 0, 50}}, slotHeld},
		{"above a partial page, refreshed since", []step{{state("15", *slot("b", 15)), 0, 50}, {ev("refreshed", "s", 20), 0, 60}}, slotHeld},
		{"below a partial page's end, not in it", []step{{state("25", *slot("a", 10), *slot("b", 25)), 50, 150}}, slotGone},
	} {
		var k slotKnowledge
		for _, st := range c.steps {
			k.learn(st.ev, at(st.dialed), at(st.at))
		}
		if got := k.judge("s", 20, acquired); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
