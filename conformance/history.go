package conformance

import (
	"math"
	"time"

	"github.com/anishathalye/porcupine"
)

// The lock model of the Linearizable sub-test, for histories recorded
// elsewhere: the cluster fault suite (package cluster) drives real
// locklock servers over HTTP while it kills, freezes and cuts off
// processes, records what each call answered, and checks the history here
// against the same model. Nothing of the model changes; these are exported
// names for what the sub-test already uses.

// OpKind is what a recorded operation asked for.
type OpKind = opKind

// The operations of the model.
const (
	OpAcquire OpKind = opAcquire
	OpRelease OpKind = opRelease
	OpRefresh OpKind = opRefresh
)

// Outcome is what a recorded operation answered.
type Outcome = outcome

// The outcomes of the model. OutcomeUnknown is a call whose effect is not
// known (a timeout, a dropped connection, a 503): it may have taken effect
// at any time after its call, or never.
const (
	OutcomeCreated    Outcome = outCreated    // acquire: 201
	OutcomeReacquired Outcome = outReacquired // acquire: 200, already held with this secret
	OutcomeHeld       Outcome = outHeld       // acquire: 409
	OutcomeReleased   Outcome = outReleased   // release: 200
	OutcomeRefreshed  Outcome = outRefreshed  // refresh: 200
	OutcomeNotFound   Outcome = outNotFound   // release, refresh: 404
	OutcomeMismatch   Outcome = outMismatch   // release, refresh: 403
	OutcomeUnknown    Outcome = outUnknown
)

// OutcomeName is the outcome's name for logs ("created", "unknown", …).
func OutcomeName(o Outcome) string { return outcomeNames[o] }

// HistoryOp is one operation of a recorded history.
type HistoryOp struct {
	// Client is the secret the operation used: the model's identity of a
	// holder. Two clients never share a secret.
	Client int
	Kind   OpKind
	// Name is the lock; histories are checked one lock name at a time.
	Name string
	// Protected: an acquire with the client's secret (false: without one).
	Protected bool
	// TTL is the expires_in of an acquire or refresh.
	TTL time.Duration
	// CallAt and ReturnAt are the clock before the request and after its
	// answer, read from the same clock as the servers' (one machine).
	// ReturnAt is ignored for OutcomeUnknown.
	CallAt, ReturnAt time.Time
	Outcome          Outcome
	// Token and ExpiresAt are the answer's fencing_token and expires_at
	// (Token for created, reacquired, released and refreshed; ExpiresAt for
	// created, reacquired and refreshed).
	Token     uint64
	ExpiresAt time.Time
}

// HistoryOperations turns a recorded history into porcupine operations of
// the lock model (LockModel). slack is how long past expires_at the store
// may still hold a lock, as for CheckLinearizable.
func HistoryOperations(ops []HistoryOp, slack time.Duration) []porcupine.Operation {
	var epoch time.Time
	for i, op := range ops {
		if i == 0 || op.CallAt.Before(epoch) {
			epoch = op.CallAt
		}
	}
	out := make([]porcupine.Operation, 0, len(ops))
	for _, op := range ops {
		in := linInput{
			op:        op.Kind,
			client:    op.Client,
			name:      op.Name,
			protected: op.Protected,
			ttl:       op.TTL,
			callAt:    op.CallAt,
			returnAt:  op.ReturnAt,
			slack:     slack,
		}
		call, ret := op.CallAt.Sub(epoch).Nanoseconds(), op.ReturnAt.Sub(epoch).Nanoseconds()
		if op.Outcome == outUnknown {
			// It may take effect at any later time, or never.
			in.returnAt, ret = farFuture, math.MaxInt64
		}
		out = append(out, porcupine.Operation{
			ClientId: op.Client,
			Input:    in,
			Call:     call,
			Output:   linOutput{outcome: op.Outcome, token: op.Token, expiresAt: op.ExpiresAt},
			Return:   ret,
		})
	}
	return out
}

// LockModel is the lock model of the Linearizable sub-test: TTLs, fencing
// tokens that rise with every grant, unknown outcomes; one partition per
// lock name.
func LockModel() porcupine.Model { return lockModel() }

// CheckHistory asks porcupine whether the history is linearizable under
// the lock model, giving up after timeout (porcupine.Unknown).
func CheckHistory(ops []HistoryOp, slack, timeout time.Duration) (porcupine.CheckResult, porcupine.LinearizationInfo) {
	return porcupine.CheckOperationsVerbose(lockModel(), HistoryOperations(ops, slack), timeout)
}

// DumpHistory writes the partitions of a history that failed CheckHistory
// to path, each operation marked L if it is in the longest linearizable
// prefix, for reading a failure.
func DumpHistory(path string, ops []HistoryOp, slack time.Duration, info porcupine.LinearizationInfo) error {
	return dumpHistory(path, HistoryOperations(ops, slack), info)
}
