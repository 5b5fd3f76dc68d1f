package etcd_test

import (
	"testing"

	"go.uber.org/goleak"
)

// The engine must leave no goroutine behind. An embedded etcd member,
// though, leaves its peers' HTTP connections to wind down after Close (seen
// after a member is stopped and restarted): those net/http goroutines are
// etcd's, not the engine's.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreAnyFunction("net/http.(*conn).serve"),
		goleak.IgnoreAnyFunction("net/http.(*connReader).backgroundRead"),
	)
}
