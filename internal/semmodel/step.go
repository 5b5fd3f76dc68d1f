package semmodel

import (
	"time"
)

// step is the semaphore's sequential specification: the states it can be in
// after in produced out from s (none: impossible).
func step(s state, in Input, out Output) []state {
	switch in.Kind {
	case Acquire:
		return stepAcquire(s, in, out)
	case Release, Refresh:
		return stepSlot(s, in, out)
	case Read:
		return stepRead(s, in, out)
	}
	return nil
}

func stepAcquire(s state, in Input, out Output) []state {
	lo, hi := window(in)
	var next []state
	switch out.Outcome {
	case Created:
		at, ok := grantedAt(in, out)
		if !ok || out.Slot.Weight != in.Weight || out.Slot.Token <= s.maxToken || out.Slot.ID == "" {
			return nil
		}
		from, to := judgedAt(in, at)
		for _, live := range s.views(from, to, in.Slack) {
			if s.fits(in, live) {
				n := s.keepLive(live, nil)
				n.add(slot{id: out.Slot.ID, client: in.Client, protected: in.Protected, weight: in.Weight,
					token: out.Slot.Token, expLo: out.Slot.ExpiresAt, expHi: out.Slot.ExpiresAt}, in.Limit)
				next = append(next, n)
			}
		}
	case Reacquired:
		for _, live := range s.views(lo, hi, in.Slack) {
			i := s.retryOf(in, live)
			if i < 0 {
				continue
			}
			sl := s.slots[i]
			if (sl.id != "" && sl.id != out.Slot.ID) || (sl.token != 0 && sl.token != out.Slot.Token) ||
				sl.weight != out.Slot.Weight || !sl.within(out.Slot.ExpiresAt) {
				continue
			}
			n := s.keepLive(live, func(j int, x *slot) {
				if j == i {
					x.id, x.token, x.expLo, x.expHi = out.Slot.ID, out.Slot.Token, out.Slot.ExpiresAt, out.Slot.ExpiresAt
				}
			})
			n.maxToken = max(n.maxToken, out.Slot.Token)
			next = append(next, n)
		}
	case Full:
		for _, live := range s.views(lo, hi, in.Slack) {
			used := s.inUse(live)
			if s.retryOf(in, live) >= 0 || !anyLive(live) || s.limit != in.Limit || out.Limit != in.Limit ||
				used != out.InUse || used+in.Weight <= in.Limit || !s.freesAt(live, out.FreesAt) {
				continue
			}
			next = append(next, s.keepLive(live, nil))
		}
	case LimitMismatch:
		for _, live := range s.views(lo, hi, in.Slack) {
			if s.retryOf(in, live) >= 0 || !anyLive(live) || s.limit == in.Limit || out.Limit != s.limit {
				continue
			}
			next = append(next, s.keepLive(live, nil))
		}
	case Unknown:
		next = append(next, s)
		for _, live := range s.views(lo, hi, in.Slack) {
			if s.fits(in, live) {
				n := s.keepLive(live, nil)
				n.add(slot{client: in.Client, protected: in.Protected, weight: in.Weight,
					expLo: lo.Add(in.TTL), expHi: FarFuture}, in.Limit)
				next = append(next, n)
			}
		}
	}
	return next
}

// fits: with the live slots of a view, an acquire gets a new slot: it is
// not a retry, the limit matches any live slot's, and the weight fits.
func (s state) fits(in Input, live []bool) bool {
	if s.retryOf(in, live) >= 0 {
		return false
	}
	if anyLive(live) && s.limit != in.Limit {
		return false
	}
	return s.inUse(live)+in.Weight <= in.Limit
}

// freesAt: at may be the earliest expiry of the live slots (zero: not
// checked). Each expiry lies in its range, so their minimum lies between
// the minimum of the lower and of the upper bounds.
func (s state) freesAt(live []bool, at time.Time) bool {
	if at.IsZero() {
		return true
	}
	var lo, hi time.Time
	for i, sl := range s.slots {
		if !live[i] {
			continue
		}
		if lo.IsZero() || sl.expLo.Before(lo) {
			lo = sl.expLo
		}
		if hi.IsZero() || sl.expHi.Before(hi) {
			hi = sl.expHi
		}
	}
	return !at.Before(lo) && !at.After(hi)
}

// add stores a new slot under limit.
func (s *state) add(sl slot, limit int) {
	s.slots = append(s.slots, sl)
	s.limit = limit
	s.maxToken = max(s.maxToken, sl.token)
	s.sort()
}

// stepSlot answers release and refresh, which concern one slot: the other
// slots may expire whenever a later operation finds them so.
func stepSlot(s state, in Input, out Output) []state {
	lo, hi := window(in)
	i := s.index(in.Slot)
	if i < 0 {
		// Released, expired, or never a slot of this semaphore.
		if out.Outcome == NotFound || out.Outcome == Unknown {
			return []state{s}
		}
		return nil
	}
	sl := s.slots[i]
	without := s.with(func(j int) bool { return j != i }, nil)
	switch out.Outcome {
	case NotFound:
		if sl.mayBeGone(hi) {
			return []state{without}
		}
	case Mismatch:
		if sl.mayBeLive(lo, in.Slack) && !sl.mayEnd(in) {
			return []state{s}
		}
	}
	shows := out.Slot.ID == sl.id && out.Slot.Token == sl.token && out.Slot.Weight == sl.weight
	switch {
	case in.Kind == Release && out.Outcome == Released:
		if sl.mayBeLive(lo, in.Slack) && sl.mayEnd(in) && shows && sl.within(out.Slot.ExpiresAt) {
			return []state{without}
		}
	case in.Kind == Release && out.Outcome == Unknown:
		if sl.mayBeLive(lo, in.Slack) && sl.mayEnd(in) {
			return []state{s, without}
		}
		return []state{s}
	case in.Kind == Refresh && out.Outcome == Refreshed:
		at, ok := grantedAt(in, out)
		from, _ := judgedAt(in, at)
		if ok && sl.mayBeLive(from, in.Slack) && sl.mayEnd(in) && shows {
			return []state{s.with(nil, func(j int, x *slot) {
				if j == i {
					x.expLo, x.expHi = out.Slot.ExpiresAt, out.Slot.ExpiresAt
				}
			})}
		}
	case in.Kind == Refresh && out.Outcome == Unknown:
		if sl.mayBeLive(lo, in.Slack) && sl.mayEnd(in) {
			return []state{s, s.with(nil, func(j int, x *slot) {
				if j == i {
					x.expLo, x.expHi = lo.Add(in.TTL), FarFuture
				}
			})}
		}
		return []state{s}
	}
	return nil
}

// stepRead answers a read of the whole semaphore: exactly the slots live at
// one instant, with their limit and the sum of their weights.
func stepRead(s state, in Input, out Output) []state {
	lo, hi := window(in)
	if out.Outcome == Unknown {
		return []state{s}
	}
	var next []state
	for _, live := range s.views(lo, hi, in.Slack) {
		switch out.Outcome {
		case NotFound:
			if !anyLive(live) {
				next = append(next, s.keepLive(live, nil))
			}
		case Found:
			if !anyLive(live) || out.Limit != s.limit || out.InUse != s.inUse(live) {
				continue
			}
			if n, ok := s.match(live, out.Slots); ok {
				next = append(next, n)
			}
		}
	}
	return next
}

// match pairs a read's slots with the live ones one to one — by id, or for
// a slot not seen yet by its client — and returns the state with the
// unseen ones filled in.
func (s state) match(live []bool, shown []Slot) (state, bool) {
	if len(shown) != countLive(live) {
		return state{}, false
	}
	used := make([]bool, len(shown))
	pick := make([]int, len(s.slots))
	for i, sl := range s.slots {
		pick[i] = -1
		if !live[i] {
			continue
		}
		for j, x := range shown {
			if used[j] || x.Weight != sl.weight || !sl.within(x.ExpiresAt) {
				continue
			}
			if (sl.id != "" && x.ID == sl.id && x.Token == sl.token) ||
				(sl.id == "" && x.Client == sl.client && s.index(x.ID) < 0) {
				used[j], pick[i] = true, j
				break
			}
		}
		if pick[i] < 0 {
			return state{}, false
		}
	}
	n := state{limit: s.limit, maxToken: s.maxToken}
	for i, sl := range s.slots {
		if !live[i] {
			continue
		}
		if sl.id == "" {
			x := shown[pick[i]]
			sl.id, sl.token, sl.expLo, sl.expHi = x.ID, x.Token, x.ExpiresAt, x.ExpiresAt
		}
		n.slots = append(n.slots, sl)
	}
	for _, x := range shown {
		n.maxToken = max(n.maxToken, x.Token)
	}
	n.sort()
	return n, true
}

func countLive(live []bool) int {
	n := 0
	for _, l := range live {
		if l {
			n++
		}
	}
	return n
}
