package memory_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/locklock/locklock/conformance"
	"github.com/locklock/locklock/engines/memory"
	"github.com/locklock/locklock/locklock"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	conformance.Run(t, conformance.Harness{
		NewEngine: func(t *testing.T) locklock.Engine { return memory.New() },
	})
}
