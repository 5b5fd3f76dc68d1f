package lockmodel

import (
	"fmt"
	"math"
	"os"
	"slices"
	"time"

	"github.com/anishathalye/porcupine"
)

// HistoryOp is one operation of a history recorded elsewhere, as the
// cluster fault suite records what each HTTP call answered.
type HistoryOp struct {
	// Client is the secret the operation used: the model's identity of a
	// holder. Two clients never share a secret.
	Client int
	Kind   Kind
	// Name is the lock; histories are checked one lock name at a time.
	Name string
	// Protected: an acquire with the client's secret (false: without one).
	Protected bool
	// TTL is the expires_in of an acquire or refresh.
	TTL time.Duration
	// CallAt and ReturnAt are the clock before the request and after its
	// answer, read from the same clock as the servers' (one machine).
	// ReturnAt is ignored for Unknown.
	CallAt, ReturnAt time.Time
	Outcome          Outcome
	// Token and ExpiresAt are the answer's fencing_token and expires_at
	// (Token for created, reacquired, released and refreshed; ExpiresAt for
	// created, reacquired and refreshed).
	Token     uint64
	ExpiresAt time.Time
}

// Operations turns a recorded history into porcupine operations of the
// lock model (Model). slack is how long past expires_at the store may still
// hold a lock (Input.Slack).
func Operations(ops []HistoryOp, slack time.Duration) []porcupine.Operation {
	var epoch time.Time
	for i, op := range ops {
		if i == 0 || op.CallAt.Before(epoch) {
			epoch = op.CallAt
		}
	}
	out := make([]porcupine.Operation, 0, len(ops))
	for _, op := range ops {
		in := Input{
			Kind:      op.Kind,
			Client:    op.Client,
			Name:      op.Name,
			Protected: op.Protected,
			TTL:       op.TTL,
			CallAt:    op.CallAt,
			ReturnAt:  op.ReturnAt,
			Slack:     slack,
		}
		call, ret := op.CallAt.Sub(epoch).Nanoseconds(), op.ReturnAt.Sub(epoch).Nanoseconds()
		if op.Outcome == Unknown {
			// It may take effect at any later time, or never.
			in.ReturnAt, ret = FarFuture, math.MaxInt64
		}
		out = append(out, porcupine.Operation{
			ClientId: op.Client,
			Input:    in,
			Call:     call,
			Output:   Output{Outcome: op.Outcome, Token: op.Token, ExpiresAt: op.ExpiresAt},
			Return:   ret,
		})
	}
	return out
}

// Check asks porcupine whether the history is linearizable under the lock
// model, giving up after timeout (porcupine.Unknown).
func Check(ops []HistoryOp, slack, timeout time.Duration) (porcupine.CheckResult, porcupine.LinearizationInfo) {
	return porcupine.CheckOperationsVerbose(Model(), Operations(ops, slack), timeout)
}

// Dump writes the partitions of a history that failed Check to path, as
// DumpOperations does.
func Dump(path string, ops []HistoryOp, slack time.Duration, info porcupine.LinearizationInfo) error {
	return DumpOperations(path, Operations(ops, slack), info)
}

// DumpOperations writes each partition's operations in call order, marking
// those in the longest linearizable prefix with L, for reading a failure.
func DumpOperations(path string, history []porcupine.Operation, info porcupine.LinearizationInfo) error {
	return DumpPartitions(path, history, info, func(op porcupine.Operation) string { return op.Input.(Input).Name },
		func(op porcupine.Operation) string {
			in, out := op.Input.(Input), op.Output.(Output)
			return fmt.Sprintf("c%-2d %-8v protected=%-5v ttl=%v clock=[%s,%s] -> %-10s token=%d expires=%s",
				in.Client, in.Kind, in.Protected, in.TTL,
				in.CallAt.Format("05.000"), in.ReturnAt.Format("05.000"), out.Outcome, out.Token, out.ExpiresAt.Format("05.000"))
		})
}

// DumpPartitions writes each partition porcupine found no linearization
// for (partitions are named by name), its operations in call order as line
// describes them, marking those in the longest linearizable prefix with L.
// Models of other histories (semaphores) share it.
func DumpPartitions(path string, history []porcupine.Operation, info porcupine.LinearizationInfo,
	name func(porcupine.Operation) string, line func(porcupine.Operation) string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, part := range info.PartialLinearizationsOperations() {
		longest := slices.MaxFunc(part, func(a, b []porcupine.Operation) int { return len(a) - len(b) })
		if len(longest) == 0 {
			continue
		}
		partition := name(longest[0])
		inPrefix := map[int64]bool{}
		for _, op := range longest {
			inPrefix[op.Call] = true
		}
		fmt.Fprintf(f, "== %s: linearizable prefix of %d operations\n", partition, len(longest))
		var ops []porcupine.Operation
		for _, op := range history {
			if name(op) == partition {
				ops = append(ops, op)
			}
		}
		slices.SortFunc(ops, func(a, b porcupine.Operation) int { return int(a.Call - b.Call) })
		for _, op := range ops {
			mark := " "
			if inPrefix[op.Call] {
				mark = "L"
			}
			fmt.Fprintf(f, "%s [%5d,%5d] %s\n", mark, op.Call, op.Return, line(op))
		}
	}
	return f.Close()
}
