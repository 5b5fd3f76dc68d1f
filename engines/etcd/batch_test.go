package etcd

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/locklock/locklock/internal/etcdtest"
	"github.com/locklock/locklock/locklock"
)

// batcherBehindProxy is a batcher whose client talks to etcd through a
// proxy the test can freeze, and a client that talks to etcd directly.
func batcherBehindProxy(t *testing.T) (*batcher, *etcdtest.Proxy, *clientv3.Client, func(ctx context.Context, name string) error, string) {
	t.Helper()
	endpoints := etcdtest.Endpoints(t)
	direct := etcdtest.Client(t, endpoints...)
	proxy := etcdtest.NewProxy(t, endpoints[0])
	b := newBatcher(etcdtest.Client(t, proxy.URL()), 10*time.Second)
	t.Cleanup(func() { proxy.Thaw(); b.close(time.Now()) })
	prefix := fmt.Sprintf("/locklock-test/batcher-%d/", time.Now().UnixNano())
	put := func(ctx context.Context, name string) error {
		key := prefix + name
		_, err := b.commit(ctx, key, &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(key), Value: []byte("x")}}}}})
		return err
	}
	if err := put(t.Context(), "warm-up"); err != nil { // the connection is up
		t.Fatal(err)
	}
	// Idle again, so that "in flight" in a test means its own transaction.
	waitUntil(t, "the batcher is idle", func() bool { f, _ := b.state(); return !f })
	return b, proxy, direct, put, prefix
}

// waitUntil polls cond for up to 10 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (b *batcher) state() (inFlight bool, pending int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.inFlight, len(b.pending)
}

// keyExists asks etcd directly, after giving anything still on its way
// through the proxy time to arrive.
func keyExists(t *testing.T, direct *clientv3.Client, key string) bool {
	t.Helper()
	time.Sleep(500 * time.Millisecond)
	resp, err := direct.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	return len(resp.Kvs) > 0
}

// TestBatcherDropsGivenUpCallers: a transaction waiting behind a batch in
// flight whose caller gives up is never sent — the caller learns it was not
// (errNotSent, a known outcome) — and a batch in flight is cancelled when
// its last caller's deadline passes. Before, the waiting transaction was
// sent once the batch ahead of it returned, long after its caller had been
// told it failed.
func TestBatcherDropsGivenUpCallers(t *testing.T) {
	b, proxy, direct, put, prefix := batcherBehindProxy(t)
	proxy.Freeze() // etcd stops answering this client
	ahead := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		ahead <- put(ctx, "ahead")
	}()
	waitUntil(t, "the first transaction is sent", func() bool { f, p := b.state(); return f && p == 0 })

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	err := put(ctx, "given-up")
	cancel()
	if !errors.Is(err, errNotSent) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("caller that gave up while waiting: %v, want errNotSent and its deadline", err)
	}
	start := time.Now()
	if err := <-ahead; err == nil || errors.Is(err, errNotSent) {
		t.Errorf("transaction in flight when etcd stopped answering: %v, want an unknown outcome", err)
	}
	waitUntil(t, "the batcher is idle", func() bool { f, _ := b.state(); return !f })
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the batch in flight went on %v after its caller's deadline", d)
	}
	proxy.Thaw()
	if keyExists(t, direct, prefix+"given-up") {
		t.Error("the transaction of a caller that had given up was applied")
	}
}

// TestBatcherClose: close drops what is pending (its callers get
// ErrClosed, not sent), cuts a batch in flight short at the deadline, and
// refuses later commits; nothing is sent after close returns.
func TestBatcherClose(t *testing.T) {
	b, proxy, direct, put, prefix := batcherBehindProxy(t)
	proxy.Freeze()
	inFlight, pending := make(chan error, 1), make(chan error, 1)
	go func() { inFlight <- put(context.Background(), "in-flight") }()
	waitUntil(t, "the first transaction is sent", func() bool { f, p := b.state(); return f && p == 0 })
	go func() { pending <- put(context.Background(), "pending") }()
	waitUntil(t, "the second transaction waits", func() bool { _, p := b.state(); return p == 1 })

	start := time.Now()
	b.close(time.Now().Add(300 * time.Millisecond))
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("close took %v with a batch in flight and a 300ms deadline", d)
	}
	if err := <-pending; !errors.Is(err, locklock.ErrClosed) || !errors.Is(err, errNotSent) {
		t.Errorf("pending transaction at close: %v, want ErrClosed, not sent", err)
	}
	select {
	case err := <-inFlight:
		if err == nil {
			t.Error("the batch in flight succeeded although etcd never answered")
		}
	case <-time.After(time.Second):
		t.Error("the caller of the batch in flight still waits after close")
	}
	if err := put(t.Context(), "after"); !errors.Is(err, locklock.ErrClosed) {
		t.Errorf("commit after close: %v, want ErrClosed", err)
	}
	proxy.Thaw()
	for _, name := range []string{"pending", "after"} {
		if keyExists(t, direct, prefix+name) {
			t.Errorf("%q was sent, although the batcher was closed before", name)
		}
	}
}
