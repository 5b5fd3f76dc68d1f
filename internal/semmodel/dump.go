package semmodel

import (
	"fmt"

	"github.com/anishathalye/porcupine"

	"github.com/locklock/locklock/internal/lockmodel"
)

// DumpOperations writes each partition (semaphore) that porcupine found no
// linearization for, its operations in call order, marking those in the
// longest linearizable prefix with L, for reading a failure.
func DumpOperations(path string, history []porcupine.Operation, info porcupine.LinearizationInfo) error {
	return lockmodel.DumpPartitions(path, history, info, func(op porcupine.Operation) string { return op.Input.(Input).Name },
		func(op porcupine.Operation) string {
			in, out := op.Input.(Input), op.Output.(Output)
			return fmt.Sprintf("clock=[%s,%s] %s exp=%s", in.CallAt.Format("05.000"), in.ReturnAt.Format("05.000"),
				describe(in, out), out.Slot.ExpiresAt.Format("05.000"))
		})
}
