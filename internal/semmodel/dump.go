package semmodel

import (
	"fmt"
	"os"
	"slices"

	"github.com/anishathalye/porcupine"
)

// DumpOperations writes each partition (semaphore) that porcupine found no
// linearization for, its operations in call order, marking those in the
// longest linearizable prefix with L, for reading a failure.
func DumpOperations(path string, history []porcupine.Operation, info porcupine.LinearizationInfo) error {
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
		name := longest[0].Input.(Input).Name
		inPrefix := map[int64]bool{}
		for _, op := range longest {
			inPrefix[op.Call] = true
		}
		fmt.Fprintf(f, "== %s: linearizable prefix of %d operations\n", name, len(longest))
		var ops []porcupine.Operation
		for _, op := range history {
			if op.Input.(Input).Name == name {
				ops = append(ops, op)
			}
		}
		slices.SortFunc(ops, func(a, b porcupine.Operation) int { return int(a.Call - b.Call) })
		for _, op := range ops {
			in, out := op.Input.(Input), op.Output.(Output)
			mark := " "
			if inPrefix[op.Call] {
				mark = "L"
			}
			fmt.Fprintf(f, "%s [%5d,%5d] clock=[%s,%s] %s exp=%s\n", mark, op.Call, op.Return,
				in.CallAt.Format("05.000"), in.ReturnAt.Format("05.000"), describe(in, out), out.Slot.ExpiresAt.Format("05.000"))
		}
	}
	return nil
}
