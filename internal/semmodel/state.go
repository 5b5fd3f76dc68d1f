package semmodel

import (
	"fmt"
	"hash/fnv"
	"slices"
	"time"
)

// slot is the model's view of one slot. A slot granted by an operation with
// an unknown outcome has no id or token yet (until an answer shows it) and
// an expiry bounded only from below: expiries are ranges, exact for slots
// known from answers.
type slot struct {
	id           string
	client       int
	protected    bool
	weight       int
	token        uint64
	expLo, expHi time.Time
}

func (s slot) equal(o slot) bool {
	return s.id == o.id && s.client == o.client && s.protected == o.protected && s.weight == o.weight &&
		s.token == o.token && s.expLo.Equal(o.expLo) && s.expHi.Equal(o.expHi)
}

// state is the model's state for one semaphore name. Slots stay in a
// canonical order (by token; not-yet-seen ones first, by client) so that
// equal states compare equal. A slot stays in the state until an operation
// judges it gone: released, or expired at that operation's instant; after
// that no operation finds it again, whatever instant it carries.
type state struct {
	limit    int // the live slots' limit; 0 when there are none
	slots    []slot
	maxToken uint64 // the highest token any answer showed
}

func (s state) equal(o state) bool {
	return s.limit == o.limit && s.maxToken == o.maxToken &&
		slices.EqualFunc(s.slots, o.slots, slot.equal)
}

func (s state) hash() uint64 {
	h := fnv.New64a()
	fmt.Fprint(h, s.limit, s.maxToken)
	for _, sl := range s.slots {
		fmt.Fprint(h, sl.id, sl.client, sl.protected, sl.weight, sl.token, sl.expLo.Unix(), sl.expLo.Nanosecond(), sl.expHi.Unix(), sl.expHi.Nanosecond())
	}
	return h.Sum64()
}

// with returns a copy of s whose slots are those keep says to keep, with
// change applied to each kept one (nil: none), in canonical order.
func (s state) with(keep func(i int) bool, change func(i int, sl *slot)) state {
	next := state{limit: s.limit, maxToken: s.maxToken}
	for i, sl := range s.slots {
		if keep != nil && !keep(i) {
			continue
		}
		if change != nil {
			change(i, &sl)
		}
		next.slots = append(next.slots, sl)
	}
	next.sort()
	return next
}

func (s *state) sort() {
	slices.SortFunc(s.slots, func(a, b slot) int {
		if a.token != b.token {
			return cmpUint(a.token, b.token)
		}
		return a.client - b.client
	})
	if len(s.slots) == 0 {
		s.limit = 0
	}
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// window is the range of clock readings an operation may have been judged
// at: the Service truncates its reading to the millisecond.
func window(in Input) (lo, hi time.Time) {
	return in.CallAt.Truncate(time.Millisecond), in.ReturnAt
}

// mayBeLive: some instant of [lo, hi] may see sl held.
func (sl slot) mayBeLive(lo time.Time, slack time.Duration) bool {
	return lo.Before(sl.expHi.Add(slack))
}

// mayBeGone: some instant of [lo, hi] may see sl expired.
func (sl slot) mayBeGone(hi time.Time) bool { return !hi.Before(sl.expLo) }

// views returns every set of slots some single instant of [lo, hi] can see
// live, as masks over s.slots: a slot is live at t while t is before its
// expiry (plus slack) and gone from its expiry on. One instant sees them
// all, so a slot seen gone and another seen live must agree on it.
func (s state) views(lo, hi time.Time, slack time.Duration) [][]bool {
	var uncertain []int
	for i, sl := range s.slots {
		if sl.mayBeLive(lo, slack) && sl.mayBeGone(hi) {
			uncertain = append(uncertain, i)
		}
	}
	var out [][]bool
	for mask := 0; mask < 1<<len(uncertain); mask++ {
		live := make([]bool, len(s.slots))
		for i, sl := range s.slots {
			live[i] = !sl.mayBeGone(hi) // certainly live; certainly gone stays false
		}
		for b, i := range uncertain {
			live[i] = mask&(1<<b) != 0
		}
		from, to := lo, hi
		for i, sl := range s.slots {
			if live[i] {
				if end := sl.expHi.Add(slack).Add(-time.Nanosecond); end.Before(to) {
					to = end
				}
			} else if sl.expLo.After(from) {
				from = sl.expLo
			}
		}
		if !from.After(to) {
			out = append(out, live)
		}
	}
	return out
}

// inUse is the sum of the live slots' weights.
func (s state) inUse(live []bool) int {
	n := 0
	for i, sl := range s.slots {
		if live[i] {
			n += sl.weight
		}
	}
	return n
}

// retryOf is the live slot (index) an acquire with in's secret would get
// back, or -1.
func (s state) retryOf(in Input, live []bool) int {
	if !in.Protected {
		return -1
	}
	for i, sl := range s.slots {
		if live[i] && sl.protected && sl.client == in.Client {
			return i
		}
	}
	return -1
}

func anyLive(live []bool) bool { return slices.Contains(live, true) }

// keepLive drops the slots a view saw gone.
func (s state) keepLive(live []bool, change func(i int, sl *slot)) state {
	return s.with(func(i int) bool { return live[i] }, change)
}

// within: t is inside the slot's expiry range.
func (sl slot) within(t time.Time) bool { return !t.Before(sl.expLo) && !t.After(sl.expHi) }

// grantedAt is the instant a created or refreshed answer was judged at: the
// Service sets expires_at to its clock reading plus the TTL.
func grantedAt(in Input, out Output) (time.Time, bool) {
	at := out.Slot.ExpiresAt.Add(-in.TTL)
	lo, hi := window(in)
	return at, !at.Before(lo) && !at.After(hi)
}

// judgedAt is when the engine judged a created or refreshed answer: at
// the Service's reading, where the engine judges expiry by the clock it is
// given (no slack); anywhere in the call, where its storage keeps its own
// time and judges when the step reaches it (etcd leases).
func judgedAt(in Input, at time.Time) (from, to time.Time) {
	if in.Slack > 0 {
		return window(in)
	}
	return at, at
}

// index finds the slot with id; -1 when the state has none.
func (s state) index(id string) int {
	if id == "" {
		return -1
	}
	return slices.IndexFunc(s.slots, func(sl slot) bool { return sl.id == id })
}

// mayEnd: the client may release or refresh sl (unprotected slots anyone).
func (sl slot) mayEnd(in Input) bool { return !sl.protected || sl.client == in.Client }
