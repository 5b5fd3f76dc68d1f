package client_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Hold's refresher, waiting acquires and retry loops all run in goroutines;
// none may outlive the tests. Idle keep-alive connections of the clients'
// transports end when their test server closes, so they are waited for
// (goleak retries) rather than ignored.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
