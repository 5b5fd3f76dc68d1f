package etcd_test

import (
	"testing"

	"github.com/locklock/locklock/conformance"
)

// TestThreeServersSemaphoresLinearizable: porcupine, with the semaphore
// model, over a history of slot acquires, releases, refreshes and reads
// recorded through all three servers on one etcd.
func TestThreeServersSemaphoresLinearizable(t *testing.T) {
	svcs, _ := threeServers(t)
	conformance.CheckSemaphoresLinearizable(t, svcs, nil, 0)
}
