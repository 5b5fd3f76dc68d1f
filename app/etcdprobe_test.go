package app_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/locklock/locklock/app"
	"github.com/locklock/locklock/internal/etcdtest"
	"github.com/locklock/locklock/transport/client"
)

// TestFrozenEtcdMemberIsLeftOut: a server given three etcd endpoints, one
// of which freezes (a proxy that accepts and answers nothing, as a
// SIGSTOPped member does), answers the requests caught by the freeze within
// about a second and every later acquire and release at once. Without the
// probe, the etcd client keeps sending a share of its requests to the
// frozen member, where they wait out --etcd-request-timeout and end as
// 503s.
func TestFrozenEtcdMemberIsLeftOut(t *testing.T) {
	target := etcdtest.Endpoints(t)[0]
	var proxies []*etcdtest.Proxy
	cfg := testConfig(t, app.EngineEtcd)
	for range 3 {
		p := etcdtest.NewProxy(t, target)
		proxies = append(proxies, p)
		cfg.EtcdEndpoints = append(cfg.EtcdEndpoints, p.URL())
	}
	cfg.Etcd.Prefix = fmt.Sprintf("/locklock-app-test/%d/", time.Now().UnixNano())
	// Long enough that a request stuck on the frozen member cannot pass
	// for a slow answer.
	cfg.Etcd.RequestTimeout = 10 * time.Second
	s := startApp(t, cfg)
	base := s.srv.URL()
	if resp, _ := do(t, "GET", base+"/readyz", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("readyz: %d", resp.StatusCode)
	}

	proxies[0].Freeze()
	// Requests sent as it froze: some wait on the frozen member until the
	// probe (every 500 ms, 500 ms to answer) leaves it out and cuts its
	// connections, within a second; then they are answered — 201, or 503
	// for a write that was on the frozen member — not at the 10 s timeout.
	var wg sync.WaitGroup
	for i := range 20 {
		path := fmt.Sprintf("%s/lock/uuid/280da65c-cf80-4997-8574-%012d", client.APIPrefix, i)
		wg.Go(func() {
			begin := time.Now()
			resp, body := do(t, "POST", base+path, `{"secret":"s"}`)
			took := time.Since(begin)
			if (resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusServiceUnavailable) || took > 4*time.Second {
				t.Errorf("POST %s as an etcd member froze: %d %v after %v, want 201 or 503 within 4s",
					path, resp.StatusCode, body, took.Round(time.Millisecond))
			}
		})
	}
	wg.Wait()
	// Once it is left out, every request answers at once.
	time.Sleep(time.Second)
	const bound = 2 * time.Second
	for i := range 20 {
		path := fmt.Sprintf("%s/lock/uuid/180da65c-cf80-4997-8574-%012d", client.APIPrefix, i)
		for _, step := range []struct {
			method string
			want   int
		}{{"POST", http.StatusCreated}, {"DELETE", http.StatusOK}} {
			begin := time.Now()
			resp, body := do(t, step.method, base+path, `{"secret":"s"}`)
			took := time.Since(begin)
			if resp.StatusCode != step.want || took > bound {
				t.Fatalf("%s %s with a frozen etcd member: %d %v after %v, want %d within %v",
					step.method, path, resp.StatusCode, body, took.Round(time.Millisecond), step.want, bound)
			}
		}
	}
	proxies[0].Thaw()
	s.app.RequireStop()
}

func TestNegativeProbeIntervalIsRefused(t *testing.T) {
	cfg := testConfig(t, app.EngineEtcd)
	cfg.EtcdEndpoints = []string{"http://127.0.0.1:2379"}
	cfg.Etcd.ProbeInterval = -time.Second
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "--etcd-probe-interval") {
		t.Fatalf("Validate with a negative probe interval: %v, want an error naming --etcd-probe-interval", err)
	}
}
