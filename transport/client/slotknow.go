package client

import "time"

// slotKnowledge is what a semaphore's shared stream has told of its live
// slots: its last state and the events since. A HeldSlot that joins the
// stream while it runs has missed what came before — perhaps its own
// slot's end, between its acquire and its joining — and this stands in
// for it.
type slotKnowledge struct {
	synced   bool      // a state came, and no reset since
	dialed   time.Time // when the state's connection was requested
	received time.Time // when the state came
	live     map[string]bool
	maxToken uint64 // the highest token in the state and the events since
	partial  bool   // the state listed a first page of slots only,
	pageLast uint64 // up to this token: a slot above it may be live unseen
}

// learn folds ev, come over a connection requested at dialed, in.
func (k *slotKnowledge) learn(ev Event, dialed, now time.Time) {
	switch {
	case ev.Type == EventReset:
		k.synced = false // a state follows
	case ev.Type == EventState:
		*k = slotKnowledge{synced: true, dialed: dialed, received: now, live: map[string]bool{}}
		if sem := ev.Semaphore; sem != nil {
			for _, sl := range sem.Slots {
				k.live[sl.ID] = true
				k.maxToken = max(k.maxToken, sl.FencingToken)
			}
			if sem.Next != "" && len(sem.Slots) > 0 {
				k.partial, k.pageLast = true, sem.Slots[len(sem.Slots)-1].FencingToken
			}
		}
	case ev.Slot != nil && k.live != nil:
		k.maxToken = max(k.maxToken, ev.Slot.FencingToken)
		switch ev.Type {
		case "acquired", "refreshed": // refreshed: one beyond a partial state's page
			k.live[ev.Slot.ID] = true
		case "released", "expired", "revoked":
			delete(k.live, ev.Slot.ID)
		}
	}
}

// slotVerdict is what the knowledge says of a joining HeldSlot's slot.
type slotVerdict int

const (
	// slotHeld: any end of the slot after its acquire reaches the
	// subscriber, as an event or in a state it can judge.
	slotHeld slotVerdict = iota
	// slotGone: the stream has told already that it ended.
	slotGone
	// slotUnsure: the stream cannot tell; the server must (a refresh).
	slotUnsure
)

// judge says what the knowledge tells of slot id (token) of a HeldSlot
// joining now, acquired in the span acquired: confirmed held by the
// server at a moment M within it. It rests on two promises of the API:
// a slot's events come in the order they happened, and tokens rise per
// semaphore in the order of the acquires.
//
//   - No state yet (or a reset since): the subscriber gets the state, and
//     judges it itself (slotSub.doubts).
//   - Live as far as the stream has told: its end, if any, is still to come.
//   - Its token above a partial state's page: it may be live unseen, or
//     have ended before the state, and nothing here says which: unsure.
//   - A state read after M (requested after the acquire's answer) that
//     lacks it, or an end since: gone, as a stream of its own would say.
//   - A slot acquired after ours seen (a token at least ours): ours was
//     acquired before that slot, so the stream told of it too — in the
//     state, or as an acquire before that slot's events — and it is no
//     longer live: gone.
//   - A state read before the acquire began, and no token at least ours
//     since: nothing of our slot has passed yet; all of it is to come.
//   - Otherwise the state was read while the acquire ran: our slot may
//     have been acquired after it (its acquire still to come) or have
//     come and gone before it (never to be told): unsure.
//
// An unsure HeldSlot is refreshed at once rather than waiting a third of
// its TTL for the refresh that would find it gone: one request, needed
// only when the stream was (re)connected while the acquire ran, or for a
// semaphore with more live slots than a state lists.
func (k *slotKnowledge) judge(id string, token uint64, acquired span) slotVerdict {
	beyond := k.partial && token > k.pageLast
	switch {
	case !k.synced, k.live[id]:
		return slotHeld
	case !beyond && (k.dialed.After(acquired.answered) || k.maxToken >= token):
		return slotGone
	case k.maxToken < token && k.received.Before(acquired.sent):
		return slotHeld
	}
	return slotUnsure
}
