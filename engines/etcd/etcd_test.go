package etcd_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/locklock/locklock/conformance"
	"github.com/locklock/locklock/engines/etcd"
	"github.com/locklock/locklock/internal/etcdtest"
	"github.com/locklock/locklock/locklock"
)

// TestConformance runs the shared suite on one etcd; each sub-test gets its
// own key prefix, so they never see each other's locks.
func TestConformance(t *testing.T) {
	endpoints := etcdtest.Endpoints(t)
	client := etcdtest.Client(t, endpoints...)
	n := 0
	conformance.Run(t, conformance.Harness{
		NewEngine: func(t *testing.T) locklock.Engine {
			n++
			return etcd.New(client, etcd.WithPrefix(fmt.Sprintf("/locklock-test/%d-%d/", time.Now().UnixNano(), n)))
		},
		Reopen: func(t *testing.T, e locklock.Engine) locklock.Engine {
			_ = e.Close()
			// A new client, as a restarted server would have, on the
			// same prefix.
			return etcd.New(etcdtest.Client(t, endpoints...), etcd.WithPrefix(e.(*etcd.Engine).Prefix()))
		},
		RealTime: true,
	})
}
