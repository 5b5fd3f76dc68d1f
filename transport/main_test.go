package transport

import (
	"testing"

	"go.uber.org/goleak"
)

// Waiting acquires run in request goroutines; none may outlive its test.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
