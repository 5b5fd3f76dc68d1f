package clustertest

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/locklock/locklock/internal/lockmodel"
)

// Op is one operation of the recorded history: what the lock model needs
// (lockmodel.HistoryOp) and where it came from.
type Op struct {
	lockmodel.HistoryOp
	Worker int           // the goroutine that made it
	Server int           // the locklock server it went to
	Wait   time.Duration // acquire's wait
	Err    string        // why the outcome is unknown
	Status int           // the HTTP status of an error answer (0: none, or no answer)
}

func (op Op) String() string {
	s := fmt.Sprintf("w%d/c%d %v %s via l%d ttl=%v", op.Worker, op.Client, op.Kind, short(op.Name), op.Server, op.TTL)
	if op.Wait > 0 {
		s += fmt.Sprintf(" wait=%v", op.Wait)
	}
	if !op.Protected && op.Kind == lockmodel.Acquire {
		s += " unprotected"
	}
	s += " -> " + op.Outcome.String()
	if op.Token != 0 {
		s += fmt.Sprint(" token=", op.Token)
	}
	if !op.ExpiresAt.IsZero() {
		s += " expires=" + op.ExpiresAt.Format("15:04:05.000")
	}
	return s + fmt.Sprintf(" [%s, %s]", op.CallAt.Format("15:04:05.000"), op.ReturnAt.Format("15:04:05.000"))
}

func short(name string) string { return name[:min(8, len(name))] }

// Grant is a lock granted by a 201 answer, and the interval in which it
// was certainly held according to the answers of the history.
type Grant struct {
	Op    Op
	Start time.Time // when the 201 arrived: the grant was committed before
	End   time.Time // the earliest the lock may have stopped being held
}

// Held says whether the interval is not empty.
func (g Grant) Held() bool { return g.End.After(g.Start) }

// HeldIntervals finds, for every lock name, each grant (201) and the
// interval in which the history proves it held: from the 201's arrival to
// the earliest instant at which anything in the history may have ended it.
//
// The bounds are conservative in the direction that keeps the double-hold
// check from crying wolf: an interval only shrinks for uncertainty, never
// grows, except by a refresh that itself answered 200 with the grant's
// token (the service then claims the grant lived on to the new expiry).
//
//   - It starts when the 201 arrived, not when the request was sent: the
//     grant was committed somewhere in between.
//   - It ends at expires_at at the latest. A lock never frees earlier: the
//     server reads its clock (expires_at − TTL) before etcd grants the
//     lease, so the lease, which counts the TTL from its grant, ends later.
//     The clocks are one clock: servers and clients run on one machine.
//   - A release that may have freed it (200 with its token, or an unknown
//     outcome) ends it when that release was sent; so does any answer that
//     says the lock was gone (404, 403, a new 201 for the same secret). For
//     an unprotected lock anyone's release counts, for a protected one only
//     its holder's (one secret per holder; a client that saw an unknown
//     outcome takes a new secret, so an old request still in flight cannot
//     touch its later grants).
//   - A refresh answered 200 with its token sets the end to its new
//     expires_at; one with an unknown outcome may have shortened the lock
//     to its TTL from when it was sent.
func HeldIntervals(ops []Op) map[string][]Grant {
	byName := map[string][]Op{}
	for _, op := range ops {
		byName[op.Name] = append(byName[op.Name], op)
	}
	out := map[string][]Grant{}
	for name, nops := range byName {
		slices.SortStableFunc(nops, func(a, b Op) int { return a.CallAt.Compare(b.CallAt) })
		for i, g := range nops {
			if g.Kind != lockmodel.Acquire || g.Outcome != lockmodel.Created {
				continue
			}
			end := g.ExpiresAt
			if g.Protected {
				end = protectedEnd(g, nops[i+1:], end)
			} else {
				end = unprotectedEnd(g, nops, i, end)
			}
			out[name] = append(out[name], Grant{Op: g, Start: g.ReturnAt, End: end})
		}
	}
	return out
}

// protectedEnd walks the holder's own later operations on the lock (they
// are sequential: one client, one secret) until one may have ended it.
func protectedEnd(g Op, later []Op, end time.Time) time.Time {
	cut := func(at time.Time) time.Time { return minTime(end, maxTime(at, g.ReturnAt)) }
	for _, op := range later {
		if op.Client != g.Client {
			continue
		}
		switch op.Kind {
		case lockmodel.Acquire:
			switch op.Outcome {
			case lockmodel.Reacquired, lockmodel.Unknown:
				continue // the same grant, or (unknown) nothing that ends it
			}
			return cut(op.CallAt) // free again (201) or held by another (409)
		case lockmodel.Release:
			return cut(op.CallAt)
		case lockmodel.Refresh:
			switch {
			case op.Outcome == lockmodel.Refreshed && op.Token == g.Token:
				end = op.ExpiresAt
				continue
			case op.Outcome == lockmodel.Unknown:
				return minTime(end, maxTime(op.CallAt, g.ReturnAt).Add(op.TTL))
			}
			return cut(op.CallAt)
		}
	}
	return end
}

// unprotectedEnd: anyone may release or refresh an unprotected lock, so
// every operation on the name that overlaps the interval and may have acted
// on this grant counts, in whatever order they took effect.
func unprotectedEnd(g Op, nops []Op, self int, end time.Time) time.Time {
	for j, op := range nops {
		if j == self || !op.CallAt.Before(end) {
			continue
		}
		if op.Outcome != lockmodel.Unknown && !op.ReturnAt.After(g.ReturnAt) {
			continue // over before the interval began
		}
		from := maxTime(op.CallAt, g.ReturnAt)
		switch op.Kind {
		case lockmodel.Release:
			if op.Outcome == lockmodel.Unknown || (op.Outcome == lockmodel.Released && op.Token == g.Token) {
				end = minTime(end, from)
			}
		case lockmodel.Refresh:
			switch {
			case op.Outcome == lockmodel.Unknown:
				end = minTime(end, from.Add(op.TTL))
			case op.Outcome == lockmodel.Refreshed && op.Token == g.Token:
				end = minTime(end, op.ExpiresAt)
			}
		}
	}
	return end
}

// Overlap is two grants of one lock certainly held at the same instant.
type Overlap struct{ A, B Grant }

// DoubleHolds returns every pair of grants of one lock whose certain
// intervals overlap: two holders at once, or one lock granted twice.
func DoubleHolds(grants map[string][]Grant) []Overlap {
	var out []Overlap
	names := make([]string, 0, len(grants))
	for n := range grants {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		var gs []Grant
		for _, g := range grants[n] {
			if g.Held() {
				gs = append(gs, g)
			}
		}
		slices.SortFunc(gs, func(a, b Grant) int { return a.Start.Compare(b.Start) })
		for i, a := range gs {
			for _, b := range gs[i+1:] {
				if !b.Start.Before(a.End) {
					break
				}
				out = append(out, Overlap{A: a, B: b})
			}
		}
	}
	return out
}

// TokenRegressions returns pairs of grants of one lock where the later one
// (asked for after the earlier one's 201 arrived) carries a token that is
// not higher: what fencing depends on.
func TokenRegressions(grants map[string][]Grant) [][2]Grant {
	var out [][2]Grant
	for _, gs := range grants {
		sorted := slices.Clone(gs)
		slices.SortFunc(sorted, func(a, b Grant) int { return a.Op.ReturnAt.Compare(b.Op.ReturnAt) })
		// Every earlier grant that returned before b was asked for must
		// have a lower token; checking the highest such token suffices.
		var best Grant
		k := 0
		byCall := slices.Clone(gs)
		slices.SortFunc(byCall, func(a, b Grant) int { return a.Op.CallAt.Compare(b.Op.CallAt) })
		for _, b := range byCall {
			for k < len(sorted) && sorted[k].Op.ReturnAt.Before(b.Op.CallAt) {
				if sorted[k].Op.Token > best.Op.Token {
					best = sorted[k]
				}
				k++
			}
			if best.Op.Token != 0 && b.Op.Token <= best.Op.Token {
				out = append(out, [2]Grant{best, b})
			}
		}
	}
	return out
}

// Resource is the fenced resource the lock protects: it takes a write only
// with a fencing token at least as high as any it has seen for that lock
// (equal: the same grant writing again — tokens are unique to a grant). It
// records every write, taken or refused, so that the history can be read
// again as if the resource had not been fenced.
type Resource struct {
	mu      sync.Mutex
	highest map[string]uint64
	writes  []Write
}

// Write is one write to the Resource.
type Write struct {
	At     time.Time
	Name   string
	Worker int
	Token  uint64
	// OnTime: the writer held the lock by its own reckoning — a protected
	// grant, before its TTL (counted from when the request was sent) less
	// a safety margin ran out, and before it released it. A paused holder
	// that wakes up and writes without looking at the clock is not on time.
	OnTime   bool
	Accepted bool
	Highest  uint64 // the highest token seen before this write
}

// NewResource returns an empty fenced resource.
func NewResource() *Resource { return &Resource{highest: map[string]uint64{}} }

// Write offers a write with token for lock name by worker, who believes it
// holds the lock until believedUntil, and says whether it was taken.
func (r *Resource) Write(name string, token uint64, worker int, believedUntil time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	w := Write{At: now, Name: name, Worker: worker, Token: token, OnTime: now.Before(believedUntil), Highest: r.highest[name]}
	if token >= w.Highest {
		w.Accepted = true
		r.highest[name] = token
	}
	r.writes = append(r.writes, w)
	return w.Accepted
}

// Writes returns the writes so far.
func (r *Resource) Writes() []Write {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.writes)
}

// FencingReport reads the writes to a Resource against the grants of the
// history.
type FencingReport struct {
	Writes, OnTime, Late int
	// Stale writes came with a token lower than one the resource had
	// already seen: the fenced resource refused each (StaleAccepted counts
	// the ones it took anyway: none, or the resource is broken). An
	// unfenced resource would have taken them all.
	Stale, StaleAccepted int
	// StaleWhileHeld: of the stale writes, those made while another
	// grant of the lock was certainly held — writes that would have
	// clobbered a live holder's work.
	StaleWhileHeld int
	// OnTimeRefused: writes refused although their writer held the lock by
	// its own reckoning. Each means the service let a later holder in (with
	// a higher token) while an earlier one still held the lock: a double
	// hold, or tokens out of order.
	OnTimeRefused int
	// LateUnseen: late writes the resource took although a higher token
	// had already been granted — its holder had not written yet, so the
	// resource could not know. Fencing cannot stop these; they are counted
	// to show how often the race was lost.
	LateUnseen int
	Refused    []Write // the refused on-time writes, for the log
}

// Report reads the writes against the grants.
func (r *Resource) Report(grants map[string][]Grant) FencingReport {
	var rep FencingReport
	for _, w := range r.Writes() {
		rep.Writes++
		if w.OnTime {
			rep.OnTime++
		} else {
			rep.Late++
		}
		stale := w.Token < w.Highest
		if stale {
			rep.Stale++
			if w.Accepted {
				rep.StaleAccepted++
			}
			for _, g := range grants[w.Name] {
				if g.Op.Token != w.Token && g.Held() && !w.At.Before(g.Start) && w.At.Before(g.End) {
					rep.StaleWhileHeld++
					break
				}
			}
		}
		if w.OnTime && !w.Accepted {
			rep.OnTimeRefused++
			rep.Refused = append(rep.Refused, w)
		}
		if !w.OnTime && w.Accepted {
			for _, g := range grants[w.Name] {
				if g.Op.Token > w.Token && g.Start.Before(w.At) {
					rep.LateUnseen++
					break
				}
			}
		}
	}
	return rep
}

func (rep FencingReport) String() string {
	return fmt.Sprintf("fencing: %d writes (%d by holders on time, %d by holders waking from a pause); "+
		"the fenced resource refused %d stale writes and took %d; without fencing the same history would have let "+
		"through all %d stale writes, %d of them while another client certainly held the lock; "+
		"on-time writes refused: %d; late writes taken before the new holder's first write: %d",
		rep.Writes, rep.OnTime, rep.Late, rep.Stale-rep.StaleAccepted, rep.StaleAccepted, rep.Stale, rep.StaleWhileHeld,
		rep.OnTimeRefused, rep.LateUnseen)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// ForgeDoubleGrant returns a copy of ops in which one 409 answer, given
// while another client certainly held the lock, is turned into a 201 with a
// fresh token: a double grant. Run on a real history, it shows that the
// checks are not vacuous there — they must reject the forgery. The token
// fits between the grants before and after it, so that only the second
// holder is wrong. ok is false if the history has no such answer.
func ForgeDoubleGrant(ops []Op) (forged []Op, at Op, ok bool) {
	grants := HeldIntervals(ops)
	for i, op := range ops {
		if op.Kind != lockmodel.Acquire || op.Outcome != lockmodel.Held || !op.Protected {
			continue
		}
		for _, g := range grants[op.Name] {
			if !g.Held() || g.Op.Client == op.Client || op.CallAt.Before(g.Start) || !op.ReturnAt.Before(g.End) {
				continue
			}
			// A token that keeps grants in order (above every grant
			// answered before, below every one asked for after), so that
			// what the checks object to is the second holder alone.
			var below uint64
			above := ^uint64(0)
			for _, o := range grants[op.Name] {
				if o.Op.ReturnAt.Before(op.CallAt) {
					below = max(below, o.Op.Token)
				} else if o.Op.CallAt.After(op.ReturnAt) {
					above = min(above, o.Op.Token)
				}
			}
			if below+1 >= above {
				continue
			}
			forged = slices.Clone(ops)
			f := &forged[i]
			f.Outcome, f.Token = lockmodel.Created, below+1
			f.ExpiresAt = f.ReturnAt.Truncate(time.Millisecond).Add(f.TTL)
			return forged, *f, true
		}
	}
	return nil, Op{}, false
}
