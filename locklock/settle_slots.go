package locklock

// settleSlots is settle for a one-semaphore stream. The lock rule — drop
// every queued event up to the last one whose outcome the state shows —
// does not fit a semaphore's many slots: events that came after the state
// was read (queued before settle runs) can end with the release of a slot
// the state does not show (acquired and released since), and dropping up
// to it would drop, with it, later changes of the state's own slots — a
// release left out, the slot shown held forever — and acquires of other
// slots. So each slot is judged by its own events:
//
//   - a slot in the state: its events up to the last one whose outcome the
//     state shows are in the state (the ones after it changed it since);
//   - cut is just past the last of those, over all the state's slots: every
//     event before the state was read is before cut, unless it belongs to a
//     slot whose whole life in the queue came after cut;
//   - a slot not in the state whose first queued event is not its acquire
//     (held when the stream subscribed), or whose acquire is before cut,
//     was acquired before the state was read and ended before it: all its
//     events are in the state (it is not there);
//   - any other slot not in the state was acquired after cut: its events
//     are kept — even if its whole life came before the state was read, it
//     came after every state slot's last change, so the state and then its
//     acquire and end are a history that happened (its acquire fitted beside
//     every slot of the state).
//
// With storage-numbered events (readAt) the cut is exact: the events up to
// the revision the state was read at are in it, the others are not. It
// returns the stream's position: the last event dropped before the first one
// kept (a stream resumed from there may get again an event dropped after
// that one: only ends and lives of slots not in the state, which a reader
// of the state can tell it does not hold).
func (s *Subscription) settleSlots(state *Semaphore, readAt int64, at Position) Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	at = s.skipTo(readAt, at)
	inState := slotOutcomeIs(state)
	shown := map[string]bool{}
	if state != nil {
		for _, sl := range state.Slots {
			shown[sl.ID] = true
		}
	}
	drop := make([]bool, len(s.queue))
	if readAt > 0 {
		for i, ev := range s.queue {
			drop[i] = !ev.Pos.After(s.skip)
		}
	} else {
		last := map[string]int{} // a state slot's last event the state shows
		cut := 0
		for i, ev := range s.queue {
			if ev.Slot != nil && shown[ev.Slot.ID] && inState(ev) {
				last[ev.Slot.ID], cut = i, i+1
			}
		}
		before := map[string]bool{} // a slot not in the state, acquired before the state was read
		for i, ev := range s.queue {
			if ev.Slot == nil {
				continue
			}
			id := ev.Slot.ID
			if shown[id] {
				if k, ok := last[id]; ok && i <= k {
					drop[i] = true
				}
				continue
			}
			if _, seen := before[id]; !seen {
				before[id] = ev.Type != EventAcquired || i < cut
			}
			drop[i] = before[id]
		}
	}
	kept := s.queue[:0:0]
	for i, ev := range s.queue {
		switch {
		case !drop[i]:
			kept = append(kept, ev)
		case len(kept) == 0 && ev.Pos.After(at):
			at = ev.Pos
		}
	}
	s.queue = kept
	return at
}
