package etcdprobe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/locklock/locklock/internal/etcdtest"
	"github.com/locklock/locklock/internal/logbuf"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// interval is the tests' probe interval, shorter than the server's default
// (500 ms) to keep the tests short.
const interval = 200 * time.Millisecond

// members returns a client on three endpoints that are proxies to one etcd,
// each of which can be frozen, and the proxies. The client dials through
// conns unless it is nil.
func members(t *testing.T, conns *Conns) (*clientv3.Client, []*etcdtest.Proxy, []string) {
	t.Helper()
	target := etcdtest.Endpoints(t)[0]
	var (
		proxies []*etcdtest.Proxy
		urls    []string
	)
	for range 3 {
		p := etcdtest.NewProxy(t, target)
		proxies = append(proxies, p)
		urls = append(urls, p.URL())
	}
	if conns == nil {
		return etcdtest.Client(t, urls...), proxies, urls
	}
	client, err := clientv3.New(clientv3.Config{
		Endpoints: urls, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(conns.Dial)},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return client, proxies, urls
}

func startProber(t *testing.T, client *clientv3.Client, urls []string, conns *Conns) *logbuf.Buffer {
	t.Helper()
	logs := &logbuf.Buffer{}
	p := New(client, Config{Endpoints: urls, Interval: interval, Conns: conns, Log: slog.New(slog.NewTextHandler(logs, nil))})
	p.Start()
	t.Cleanup(p.Stop)
	return logs
}

// waitFor polls cond until it holds or within has passed, and says how
// long it took.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	begin := time.Now()
	for !cond() {
		if time.Since(begin) > within {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(begin)
}

// quickRequests makes n writes and linearizable reads, one after another,
// each of which must succeed within bound: far less than the 5 s it would
// hang on a frozen member.
func quickRequests(t *testing.T, client *clientv3.Client, n int, bound time.Duration) {
	t.Helper()
	for i := range n {
		for _, req := range []func(context.Context) error{
			func(ctx context.Context) error {
				_, err := client.Put(ctx, "etcdprobe-test", fmt.Sprint(i))
				return err
			},
			func(ctx context.Context) error { _, err := client.Get(ctx, "etcdprobe-test"); return err },
		} {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			begin := time.Now()
			err := req(ctx)
			took := time.Since(begin)
			cancel()
			if err != nil || took > bound {
				t.Fatalf("request %d: err=%v after %v, want an answer within %v", i, err, took.Round(time.Millisecond), bound)
			}
		}
	}
}

// A frozen member is left out within a couple of intervals, every request
// then answers at once, and the member is given back once it answers.
func TestFrozenMemberIsLeftOutAndComesBack(t *testing.T) {
	client, proxies, urls := members(t, nil)
	logs := startProber(t, client, urls, nil)
	quickRequests(t, client, 5, time.Second)

	proxies[1].Freeze()
	took := waitFor(t, 10*interval, "the frozen member left out", func() bool {
		return slices.Equal(client.Endpoints(), []string{urls[0], urls[2]})
	})
	t.Logf("frozen member left out after %v", took.Round(time.Millisecond))
	time.Sleep(interval) // the balancer takes the new list in the background
	quickRequests(t, client, 50, time.Second)
	if l := logs.String(); !strings.Contains(l, "level=WARN msg=\"etcd member does not answer\" endpoint="+urls[1]) {
		t.Errorf("no warning about %s in the log:\n%s", urls[1], l)
	}

	proxies[1].Thaw()
	took = waitFor(t, 10*interval, "the thawed member given back", func() bool {
		return slices.Equal(client.Endpoints(), urls)
	})
	t.Logf("thawed member given back after %v", took.Round(time.Millisecond))
	if l := logs.String(); !strings.Contains(l, "level=INFO msg=\"etcd member answers again\" endpoint="+urls[1]) {
		t.Errorf("no line about %s answering again in the log:\n%s", urls[1], l)
	}
	quickRequests(t, client, 5, time.Second)
}

// The client is never left without endpoints: with two members frozen it
// keeps the third; with all three frozen it keeps all, and serves again as
// soon as they thaw.
func TestNoMemberAnsweringKeepsThemAll(t *testing.T) {
	client, proxies, urls := members(t, nil)
	logs := startProber(t, client, urls, nil)

	proxies[0].Freeze()
	proxies[1].Freeze()
	waitFor(t, 10*interval, "only the third member used", func() bool {
		return slices.Equal(client.Endpoints(), urls[2:])
	})
	time.Sleep(interval)
	quickRequests(t, client, 10, time.Second)

	proxies[2].Freeze()
	waitFor(t, 10*interval, "all members used again", func() bool {
		return slices.Equal(client.Endpoints(), urls)
	})
	// It stays so, round after round.
	for range 5 {
		time.Sleep(interval)
		if got := client.Endpoints(); !slices.Equal(got, urls) {
			t.Fatalf("endpoints with every member frozen: %v, want all of %v", got, urls)
		}
	}
	if l := logs.String(); !strings.Contains(l, "no etcd member answers; requests go to all of them") {
		t.Errorf("no warning that no member answers:\n%s", l)
	}
	for _, p := range proxies {
		p.Thaw()
	}
	waitFor(t, 10*interval, "all members used", func() bool {
		return slices.Equal(client.Endpoints(), urls)
	})
	quickRequests(t, client, 5, 5*time.Second)
}

// Requests already waiting on a member when it froze end as soon as the
// prober leaves it out, when the client dials through Conns: reads are
// asked again of a member that answers and succeed; writes fail at once
// with Unavailable (their outcome unknown, as after a timeout), never
// retried behind the caller's back.
func TestRequestsStuckOnAFrozenMemberEndWhenItIsLeftOut(t *testing.T) {
	conns := NewConns()
	client, proxies, urls := members(t, conns)
	logs := startProber(t, client, urls, conns)
	quickRequests(t, client, 5, time.Second)

	proxies[1].Freeze()
	// Many at once, so that some are routed to the frozen member before
	// the prober leaves it out.
	const n = 30
	type result struct {
		read bool
		err  error
		took time.Duration
	}
	results := make(chan result, 2*n)
	var wg sync.WaitGroup
	for i := range n {
		for _, read := range []bool{true, false} {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				begin := time.Now()
				var err error
				if read {
					_, err = client.Get(ctx, "etcdprobe-test")
				} else {
					_, err = client.Put(ctx, fmt.Sprintf("etcdprobe-test-%d", i), "v")
				}
				results <- result{read, err, time.Since(begin)}
			})
		}
	}
	wg.Wait()
	close(results)
	failedWrites := 0
	for r := range results {
		// The prober leaves the member out within two intervals.
		if r.took > 3*time.Second {
			t.Errorf("a request (read=%v) took %v (err %v): it waited on the frozen member", r.read, r.took.Round(time.Millisecond), r.err)
		}
		switch {
		case r.err == nil:
		case r.read:
			t.Errorf("a read failed: %v", r.err)
		case status.Code(r.err) != codes.Unavailable:
			t.Errorf("a write failed with %v, want Unavailable", r.err)
		default:
			failedWrites++
		}
	}
	t.Logf("%d of %d writes were on the frozen member and failed as Unavailable", failedWrites, n)
	if !strings.Contains(logs.String(), "cut the connections to an etcd member left out") {
		t.Errorf("no line about cutting the connections in the log:\n%s", logs.String())
	}
	proxies[1].Thaw()
	waitFor(t, 10*interval, "the thawed member given back", func() bool {
		return slices.Equal(client.Endpoints(), urls)
	})
	quickRequests(t, client, 5, time.Second)
}

func TestJudge(t *testing.T) {
	down := errors.New("context deadline exceeded")
	for _, tc := range []struct {
		name    string
		answers []answer
		want    []error
	}{
		{"all answer", []answer{{leader: 7}, {leader: 7}, {leader: 7}}, []error{nil, nil, nil}},
		{"one silent", []answer{{leader: 7}, {err: down}, {leader: 7}}, []error{nil, down, nil}},
		{"all silent", []answer{{err: down}, {err: down}}, []error{down, down}},
		// A member cut off from the others answers but knows no leader:
		// it cannot serve what needs one.
		{"one without a leader", []answer{{leader: 7}, {leader: 0}, {leader: 7}}, []error{nil, errNoLeader, nil}},
		// During an election nobody knows a leader: those that answer
		// are still the ones to use.
		{"election", []answer{{leader: 0}, {err: down}, {leader: 0}}, []error{nil, down, nil}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := judge(tc.answers); !slices.Equal(got, tc.want) {
				t.Errorf("judge = %v, want %v", got, tc.want)
			}
		})
	}
}

// Stop without Start, and twice, neither blocks nor panics.
func TestStopWithoutStart(t *testing.T) {
	p := New(nil, Config{Endpoints: []string{"http://127.0.0.1:1", "http://127.0.0.1:2"}, Interval: interval, Log: slog.New(slog.DiscardHandler)})
	p.Stop()
	p.Stop()
	p.Start() // after Stop: does nothing
}
