// Package lockmodel is the porcupine model of a lock: TTLs, fencing tokens
// that rise with every grant, and outcomes that may be unknown. It has two
// users that check histories against the same model — the conformance
// suite's Linearizable sub-test, which drives an engine through a Service,
// and the cluster fault suite (internal/clustertest), which drives real
// servers over HTTP while it injects faults — so it lives here, once, and
// neither exports it.
//
// Time is part of the model: each operation records the clock before its
// call and after its return, and the model lets it take effect at any clock
// reading in between — which is exactly what the Service does (it reads the
// clock once, during the call). Tokens must rise with every grant.
package lockmodel

import (
	"fmt"
	"time"

	"github.com/anishathalye/porcupine"
)

// Kind is what an operation asked for.
type Kind uint8

// The operations of the model.
const (
	Acquire Kind = iota
	Release
	Refresh
)

func (k Kind) String() string { return [...]string{"acquire", "release", "refresh"}[k] }

// Outcome is what an operation answered.
type Outcome uint8

// The outcomes of the model.
const (
	Created    Outcome = iota // acquire: 201
	Reacquired                // acquire: 200, already held with this secret
	Held                      // acquire: 409
	Released                  // release: 200
	Refreshed                 // refresh: 200
	NotFound                  // release, refresh: 404
	Mismatch                  // release, refresh: 403
	// Unknown: the call failed in a way that leaves its effect unknown (a
	// timeout while etcd lost its leader, a dropped connection, a 503). It
	// may have taken effect, at any time after its call, or not at all.
	Unknown
)

// Outcomes is how many outcomes there are, for ranging over them.
const Outcomes = int(Unknown) + 1

var outcomeNames = [Outcomes]string{"created", "reacquired", "held", "released", "refreshed", "not_found", "mismatch", "unknown"}

// String is the outcome's name for logs ("created", "unknown", …).
func (o Outcome) String() string { return outcomeNames[o] }

// Input is a porcupine operation's input: the call and the clock around it.
type Input struct {
	Kind      Kind
	Client    int
	Name      string
	Protected bool          // acquire with the client's secret
	TTL       time.Duration // acquire and refresh
	CallAt    time.Time     // clock before the call
	ReturnAt  time.Time     // clock after the return
	// Slack is how long after expires_at a lock may still be held: zero
	// where the engine judges expiry by the given clock, a little for
	// engines whose storage ends locks on its own cycle (etcd leases).
	Slack time.Duration
}

// Output is a porcupine operation's output: what the call answered.
type Output struct {
	Outcome   Outcome
	Token     uint64
	ExpiresAt time.Time
}

// FarFuture stands for "no bound" on when a lock expires or when an
// operation with an unknown outcome took effect.
var FarFuture = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

// lockState is the model's state for one lock name. It must stay comparable
// with == (porcupine's default equality). The expiry is a range, because a
// lock granted or refreshed by an operation with an unknown outcome expires
// at a time only bounded from below; known outcomes make it exact.
type lockState struct {
	holder       int // -1: nobody
	protected    bool
	token        uint64 // 0: granted by an unknown outcome, not yet seen
	expLo, expHi time.Time
	maxToken     uint64
}

func free(s lockState) lockState { return lockState{holder: -1, maxToken: s.maxToken} }

// mayBeLive: some instant in [call, return] may see the lock held.
func (s lockState) mayBeLive(in Input) bool {
	return s.holder >= 0 && in.CallAt.Before(s.expHi.Add(in.Slack))
}

// mayBeFree: some instant in [call, return] may see the lock free.
func (s lockState) mayBeFree(in Input) bool {
	return s.holder < 0 || !in.ReturnAt.Before(s.expLo)
}

// grantedWithin: expiresAt - ttl is a clock reading inside the call.
func grantedWithin(in Input, expiresAt time.Time) bool {
	at := expiresAt.Add(-in.TTL)
	return !at.Before(in.CallAt.Truncate(time.Millisecond)) && !at.After(in.ReturnAt)
}

func (s lockState) mayRelease(in Input) bool {
	return !s.protected || s.holder == in.Client
}

// sameToken: the state's token is out's, or was unknown.
func (s lockState) sameToken(token uint64) bool { return s.token == 0 || s.token == token }

// step is the lock's sequential specification: the states the lock can be
// in after in produced out from s (none: impossible).
func step(s lockState, in Input, out Output) []any {
	none := []any{}
	one := func(ok bool, next lockState) []any {
		if !ok {
			return none
		}
		return []any{next}
	}
	if in.Kind == Release || in.Kind == Refresh {
		// Answers release and refresh share: nothing to act on, or not
		// the holder's secret.
		switch out.Outcome {
		case NotFound:
			return one(s.mayBeFree(in), free(s))
		case Mismatch:
			return one(s.mayBeLive(in) && !s.mayRelease(in), s)
		}
	}
	switch in.Kind {
	case Acquire:
		switch out.Outcome {
		case Created:
			return one(s.mayBeFree(in) && out.Token > s.maxToken && grantedWithin(in, out.ExpiresAt),
				lockState{holder: in.Client, protected: in.Protected, token: out.Token, expLo: out.ExpiresAt, expHi: out.ExpiresAt, maxToken: out.Token})
		case Reacquired:
			ok := s.mayBeLive(in) && s.holder == in.Client && s.protected && in.Protected && s.sameToken(out.Token) &&
				!out.ExpiresAt.Before(s.expLo) && !out.ExpiresAt.After(s.expHi)
			next := s
			next.token, next.expLo, next.expHi, next.maxToken = out.Token, out.ExpiresAt, out.ExpiresAt, max(s.maxToken, out.Token)
			return one(ok, next)
		case Held:
			return one(s.mayBeLive(in) && !(s.holder == in.Client && s.protected && in.Protected), s)
		case Unknown:
			states := []any{s}
			if s.mayBeFree(in) {
				states = append(states, lockState{holder: in.Client, protected: in.Protected,
					expLo: in.CallAt.Truncate(time.Millisecond).Add(in.TTL), expHi: FarFuture, maxToken: s.maxToken})
			}
			return states
		}
	case Release:
		switch out.Outcome {
		case Released:
			next := free(s)
			next.maxToken = max(s.maxToken, out.Token)
			return one(s.mayBeLive(in) && s.mayRelease(in) && s.sameToken(out.Token), next)
		case Unknown:
			states := []any{s}
			if s.mayBeLive(in) && s.mayRelease(in) {
				states = append(states, free(s))
			}
			return states
		}
	case Refresh:
		switch out.Outcome {
		case Refreshed:
			next := s
			next.token, next.expLo, next.expHi, next.maxToken = out.Token, out.ExpiresAt, out.ExpiresAt, max(s.maxToken, out.Token)
			return one(s.mayBeLive(in) && s.mayRelease(in) && s.sameToken(out.Token) && grantedWithin(in, out.ExpiresAt), next)
		case Unknown:
			states := []any{s}
			if s.mayBeLive(in) && s.mayRelease(in) {
				next := s
				next.expLo, next.expHi = in.CallAt.Truncate(time.Millisecond).Add(in.TTL), FarFuture
				states = append(states, next)
			}
			return states
		}
	}
	return none
}

// Model is the lock model over porcupine operations whose inputs are Input
// and outputs Output: one partition per lock name.
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
		Init: func() []any { return []any{lockState{holder: -1}} },
		Step: func(state, input, output any) []any {
			return step(state.(lockState), input.(Input), output.(Output))
		},
		DescribeOperation: func(input, output any) string {
			in, out := input.(Input), output.(Output)
			return fmt.Sprintf("c%d %v %s -> %s tok=%d", in.Client, in.Kind, in.Name, out.Outcome, out.Token)
		},
		DescribeState: func(state any) string {
			s := state.(lockState)
			return fmt.Sprintf("holder=c%d tok=%d exp=[%s,%s] max=%d", s.holder, s.token, s.expLo.Format("15:04:05.000"), s.expHi.Format("15:04:05.000"), s.maxToken)
		},
	}
	return m.ToModel()
}
