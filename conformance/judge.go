package conformance

import (
	"os"
	"slices"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// judge asks porcupine whether history is linearizable under model (the
// what model) and, when not, says where: the end of the longest
// linearizable prefix of each failing partition, and every failing
// partition written by dump to the file LOCKLOCK_LIN_DUMP names.
func judge(t *testing.T, model porcupine.Model, history []porcupine.Operation, what string,
	dump func(path string, history []porcupine.Operation, info porcupine.LinearizationInfo) error) {
	t.Helper()
	res, info := porcupine.CheckOperationsVerbose(model, history, time.Minute)
	switch res {
	case porcupine.Ok:
	case porcupine.Unknown:
		t.Fatal("porcupine timed out before deciding")
	default:
		t.Errorf("history is not linearizable under the %s model (set LOCKLOCK_LIN_DUMP=<file> to write the failing partitions)", what)
		for _, part := range info.PartialLinearizationsOperations() {
			if len(part) == 0 {
				continue // a partition porcupine found nothing linearizable in
			}
			longest := slices.MaxFunc(part, func(a, b []porcupine.Operation) int { return len(a) - len(b) })
			for _, op := range longest[max(0, len(longest)-3):] {
				t.Logf("  end of the longest linearizable prefix: %s", model.DescribeOperation(op.Input, op.Output))
			}
		}
		if f := os.Getenv("LOCKLOCK_LIN_DUMP"); f != "" {
			if err := dump(f, history, info); err != nil {
				t.Logf("dump history: %v", err)
			}
		}
	}
}
