package locklock

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSettleSlots: a one-semaphore stream's queue reconciled with the state
// read after subscribing (settleSlots). Each case is the queue, in order,
// as the hub numbered it; the state; and what must be left, and the
// position the stream starts after.
func TestSettleSlots(t *testing.T) {
	sem := ID{Namespace: "public", Kind: KindKey, Name: "s"}
	exp := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	slot := func(id string, holder string) Slot {
		return Slot{Semaphore: sem, ID: id, Limit: 3, Weight: 1, ExpiresAt: exp, Holder: holder}
	}
	ev := func(typ EventType, id, holder string) *Event {
		sl := slot(id, holder)
		return &Event{Type: typ, Slot: &sl}
	}
	acq := func(id string) *Event { return ev(EventAcquired, id, "") }
	ren := func(id, holder string) *Event { return ev(EventRefreshed, id, holder) }
	rel := func(id, holder string) *Event { return ev(EventReleased, id, holder) }
	state := func(slots ...Slot) *Semaphore {
		if len(slots) == 0 {
			return nil
		}
		return &Semaphore{ID: sem, Limit: 3, Slots: slots}
	}
	cases := []struct {
		name   string
		queue  []*Event
		state  *Semaphore
		readAt int64
		keep   string // the kept events' indexes in queue
		at     int    // the index of the event the stream starts after; -1: where it subscribed (without readAt)
	}{
		{
			// The lock rule would drop up to c's release, taking z's
			// release with it: z shown held for ever.
			name:  "changes since the state, ending with a slot the state lacks",
			queue: []*Event{acq("z"), rel("z", ""), acq("c"), rel("c", "")},
			state: state(slot("z", "")),
			keep:  "1 2 3", at: 0,
		},
		{
			name:  "a state slot renamed, then renamed again since",
			queue: []*Event{acq("z"), ren("z", "a"), ren("z", "b")},
			state: state(slot("z", "a")),
			keep:  "2", at: 1,
		},
		{
			// c came and went before the state was read, around z's
			// rename; d came after it.
			name:  "a life straddling the state's last change",
			queue: []*Event{acq("c"), ren("z", "a"), rel("c", ""), acq("d")},
			state: state(slot("z", "a"), slot("d", "")),
			keep:  "", at: 3,
		},
		{
			name:  "a life straddling the state's last change, and one after it",
			queue: []*Event{acq("c"), ren("z", "a"), rel("c", ""), acq("d"), rel("d", "")},
			state: state(slot("z", "a")),
			keep:  "3 4", at: 2,
		},
		{
			// x was held when the stream subscribed, and ended before the
			// state was read.
			name:  "a slot held at subscribing, ended",
			queue: []*Event{ren("z", "a"), rel("x", "")},
			state: state(slot("z", "a")),
			keep:  "", at: 1,
		},
		{
			name:  "a slot held at subscribing, unchanged, released since",
			queue: []*Event{rel("z", "")},
			state: state(slot("z", "")),
			keep:  "0", at: -1,
		},
		{
			// Nothing tells whether c's life came before the state or
			// after: it came after every state slot's last change, so
			// showing it tells a history that happened.
			name:  "an empty state and a whole life",
			queue: []*Event{acq("c"), rel("c", "")},
			state: state(),
			keep:  "0 1", at: -1,
		},
		{
			name:  "a whole life before a state slot's acquire",
			queue: []*Event{acq("c"), rel("c", ""), acq("d")},
			state: state(slot("d", "")),
			keep:  "", at: 2,
		},
		{
			name:   "storage-numbered: exactly the events up to the revision",
			queue:  []*Event{acq("z"), acq("c"), rel("c", ""), acq("d")},
			state:  state(slot("z", ""), slot("d", "")),
			readAt: 3,
			keep:   "3",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			subscribed := Position{Epoch: "e", Seq: 10}
			s := &Subscription{signal: make(chan struct{}, 1)}
			for i, ev := range tc.queue {
				if tc.readAt > 0 {
					ev.Pos = Position{Epoch: "e", Seq: uint64(i + 1)}
					subscribed = Position{Epoch: "e"}
				} else {
					ev.Pos = Position{Epoch: "e", Seq: uint64(11 + i)}
				}
			}
			queue := append([]*Event(nil), tc.queue...)
			s.queue = queue
			at := s.settleSlots(tc.state, tc.readAt, subscribed)
			var kept []string
			for _, ev := range s.queue {
				for i, q := range queue {
					if q == ev {
						kept = append(kept, strconv.Itoa(i))
					}
				}
			}
			wantAt := subscribed
			switch {
			case tc.readAt > 0: // the revision the state was read at
				wantAt = Position{Epoch: "e", Seq: uint64(tc.readAt), Sub: ^uint32(0)}
			case tc.at >= 0:
				wantAt = queue[tc.at].Pos
			}
			if got := strings.Join(kept, " "); got != tc.keep || at != wantAt {
				t.Errorf("kept %q at %v; want %q at %v", got, at, tc.keep, wantAt)
			}
		})
	}
}
