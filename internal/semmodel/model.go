// Package semmodel is the porcupine model of a semaphore (API.md §10): a
// limit, slots of a weight each whose sum never exceeds it, expiry, a retry
// with the same secret answered by the live slot it names, fencing tokens
// that rise with every grant, and outcomes that may be unknown. It is the
// semaphore counterpart of internal/lockmodel, with the same shape: the
// semaphore suite's Linearizable sub-test (conformance.RunSemaphores) records histories
// through a Service and checks them here, and a suite that drives real
// servers while injecting faults can check its histories against the same
// model.
//
// Time is part of the model, as in lockmodel: each operation records the
// clock before its call and after its return, and takes effect at one clock
// reading in between (the Service reads its clock once per operation). A
// semaphore's state is several slots, each expiring on its own, so an
// operation sees the set of slots live at its instant; where an operation's
// window straddles expiries the model tries every set some instant of the
// window can see. That is exponential in the number of such slots, which
// stays small because live slots are at most limit: check histories of
// semaphores with small limits.
package semmodel

import (
	"fmt"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// Kind is what an operation asked for.
type Kind uint8

// The operations of the model.
const (
	Acquire Kind = iota // take a slot (POST)
	Release             // end a slot (DELETE)
	Refresh             // extend a slot (PATCH with expires_in)
	Read                // the semaphore with all its slots (GET)
)

func (k Kind) String() string { return [...]string{"acquire", "release", "refresh", "read"}[k] }

// Outcome is what an operation answered.
type Outcome uint8

// The outcomes of the model.
const (
	Created       Outcome = iota // acquire: 201
	Reacquired                   // acquire: 200, a live slot has this client's secret
	Full                         // acquire: 409 semaphore_full
	LimitMismatch                // acquire: 409 limit_mismatch
	Released                     // release: 200
	Refreshed                    // refresh: 200
	NotFound                     // release, refresh: slot_not_found; read: semaphore_not_found
	Mismatch                     // release, refresh: 403 secret_mismatch
	Found                        // read: 200
	// Unknown: the call failed in a way that leaves its effect unknown (a
	// timeout, a dropped connection, a 503). It may have taken effect, at
	// any time after its call, or not at all.
	Unknown
)

// Outcomes is how many outcomes there are, for ranging over them.
const Outcomes = int(Unknown) + 1

var outcomeNames = [Outcomes]string{"created", "reacquired", "full", "limit_mismatch", "released", "refreshed", "not_found", "mismatch", "found", "unknown"}

// String is the outcome's name for logs ("created", "full", …).
func (o Outcome) String() string { return outcomeNames[o] }

// Input is a porcupine operation's input: the call and the clock around it.
type Input struct {
	Kind Kind
	// Client is the model's identity of a holder: the secret it uses. Two
	// clients never share a secret; a client sends its secret on every
	// release and refresh.
	Client int
	Name   string // the semaphore; histories are checked one name at a time
	// Slot is the slot a release or refresh names.
	Slot string
	// Protected: an acquire with the client's secret (false: without one).
	Protected bool
	// Limit and Weight of an acquire (Weight already defaulted: 1–Limit).
	Limit, Weight int
	TTL           time.Duration // acquire and refresh
	// CallAt and ReturnAt are the clock before the call and after its
	// return. An operation with an Unknown outcome has ReturnAt FarFuture.
	CallAt, ReturnAt time.Time
	// Slack is how long after its expires_at a slot may still be held:
	// zero where the engine judges expiry by the given clock, a little for
	// engines whose storage ends slots on its own cycle (etcd leases).
	Slack time.Duration
}

// Slot is a slot as an answer shows it.
type Slot struct {
	ID     string
	Client int // whose it is (-1: not known), for matching a read's slots
	Token  uint64
	Weight int
	// ExpiresAt is the slot's expires_at; AcquiredAt is not needed, since
	// expires_at minus the TTL asked for is the instant of a grant.
	ExpiresAt time.Time
}

// Output is a porcupine operation's output: what the call answered.
type Output struct {
	Outcome Outcome
	// Slot is the slot of created, reacquired, released and refreshed.
	Slot Slot
	// Limit is the limit of full, limit_mismatch (the semaphore's, not the
	// one asked for) and found; InUse of full and found.
	Limit, InUse int
	// FreesAt is full's earliest expiry of a live slot; zero: not checked.
	FreesAt time.Time
	// Slots are found's slots, by token.
	Slots []Slot
}

// FarFuture stands for "no bound" on when a slot expires or when an
// operation with an unknown outcome took effect.
var FarFuture = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

// Model is the semaphore model over porcupine operations whose inputs are
// Input and outputs Output: one partition per semaphore name.
func Model() porcupine.Model {
	m := porcupine.NondeterministicModel{
		Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
			byName := map[string][]porcupine.Operation{}
			var order []string
			for _, op := range history {
				n := op.Input.(Input).Name
				if _, ok := byName[n]; !ok {
					order = append(order, n)
				}
				byName[n] = append(byName[n], op)
			}
			var out [][]porcupine.Operation
			for _, n := range order {
				out = append(out, byName[n])
			}
			return out
		},
		Init: func() []any { return []any{state{}} },
		Step: func(st, input, output any) []any {
			var out []any
			for _, n := range step(st.(state), input.(Input), output.(Output)) {
				out = append(out, n)
			}
			return out
		},
		Equal: func(a, b any) bool { return a.(state).equal(b.(state)) },
		Hash:  func(st any) uint64 { return st.(state).hash() },
		DescribeOperation: func(input, output any) string {
			return describe(input.(Input), output.(Output))
		},
		DescribeState: func(st any) string {
			s := st.(state)
			var b strings.Builder
			fmt.Fprintf(&b, "limit=%d max=%d", s.limit, s.maxToken)
			for _, sl := range s.slots {
				fmt.Fprintf(&b, " [c%d w%d tok=%d exp=%s..%s]", sl.client, sl.weight, sl.token,
					sl.expLo.Format("05.000"), sl.expHi.Format("05.000"))
			}
			return b.String()
		},
	}
	return m.ToModel()
}

func describe(in Input, out Output) string {
	switch in.Kind {
	case Acquire:
		return fmt.Sprintf("c%d acquire %s limit=%d weight=%d protected=%v ttl=%v -> %s tok=%d in_use=%d",
			in.Client, in.Name, in.Limit, in.Weight, in.Protected, in.TTL, out.Outcome, out.Slot.Token, out.InUse)
	case Read:
		return fmt.Sprintf("c%d read %s -> %s limit=%d in_use=%d slots=%d", in.Client, in.Name, out.Outcome, out.Limit, out.InUse, len(out.Slots))
	}
	return fmt.Sprintf("c%d %v %s/%s -> %s tok=%d", in.Client, in.Kind, in.Name, in.Slot, out.Outcome, out.Slot.Token)
}
