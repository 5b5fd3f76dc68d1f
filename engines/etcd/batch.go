package etcd

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	"github.com/locklock/locklock/locklock"
)

// maxBatch bounds one batched transaction; etcd refuses more than
// --max-txn-ops (128 by default) operations in one branch.
const maxBatch = 64

// errNotSent marks a transaction that never went to etcd — its caller gave
// up before it was taken into a batch, or the engine closed: its outcome is
// known (not applied), unlike that of one that was sent and timed out.
var errNotSent = errors.New("etcd engine: transaction not sent")

// txnResult is one transaction's outcome within a batch.
type txnResult struct {
	succeeded bool
	responses []*pb.ResponseOp
	revision  int64 // the revision of the whole batch: every write in it has this create/mod revision
}

// batcher sends the single-key transactions (acquire, release, refresh)
// that arrive while one is in flight to etcd together, as one transaction of
// nested transactions. Each nested one keeps its own compare and branches,
// so each lock's step stays atomic on its own; together they cost one raft
// entry, one apply and one round trip instead of one each — the engine's
// group commit. A lone transaction is sent as it is, with no wait.
//
// The writes of a batch share one revision, so two different locks granted
// in one batch get the same fencing token: tokens rise per lock name, as
// promised, not across names. One batch never holds two transactions on the
// same key (etcd refuses that); the later one waits for the next batch.
//
// A transaction is sent only for a caller that still waits: one whose
// context is done before it is taken into a batch is dropped (errNotSent),
// and a batch is sent with the latest of its callers' deadlines, so that a
// step never goes to etcd after its caller was told it failed — which also
// bounds how late a step whose outcome was reported unknown can land. close
// stops it: nothing is sent after close returns.
type batcher struct {
	kv       pb.KVClient // the client's own gRPC KV client (see txn)
	callOpts []grpc.CallOption
	timeout  time.Duration
	stopped  context.Context // done: cancel sends in flight
	stop     context.CancelFunc

	mu       sync.Mutex
	pending  []*batchedTxn
	inFlight bool
	closed   bool
	running  sync.WaitGroup // the run goroutine

	lastWrite atomic.Int64 // the revision of the last batch that wrote
}

type batchedTxn struct {
	ctx  context.Context
	key  string
	req  *pb.TxnRequest
	done chan struct{}
	res  txnResult
	err  error
}

func newBatcher(client *clientv3.Client, timeout time.Duration) *batcher {
	stopped, stop := context.WithCancel(context.Background())
	return &batcher{
		timeout: timeout, stopped: stopped, stop: stop,
		kv: clientv3.RetryKVClient(client),
		// clientv3's defaults for a client whose Config sets no message
		// size limits (app/etcd.go sets none): wait for a connection
		// instead of failing fast, and no limit on answers.
		callOpts: []grpc.CallOption{grpc.WaitForReady(true), grpc.MaxCallSendMsgSize(2 << 20), grpc.MaxCallRecvMsgSize(math.MaxInt32)},
	}
}

// commit runs req, a transaction on key alone, batched with others. ctx
// bounds the wait. An error wrapping errNotSent means the transaction was
// not sent (not applied); any other error leaves its outcome unknown.
func (b *batcher) commit(ctx context.Context, key string, req *pb.TxnRequest) (txnResult, error) {
	t := &batchedTxn{ctx: ctx, key: key, req: req, done: make(chan struct{})}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return txnResult{}, fmt.Errorf("%w: %w", errNotSent, locklock.ErrClosed)
	}
	b.pending = append(b.pending, t)
	if !b.inFlight {
		b.inFlight = true
		b.running.Add(1)
		go b.run()
	}
	b.mu.Unlock()
	select {
	case <-t.done:
		return t.res, t.err
	case <-ctx.Done():
	}
	if b.withdraw(t) {
		return txnResult{}, fmt.Errorf("%w: %w", errNotSent, ctx.Err())
	}
	select {
	case <-t.done: // answered (or dropped) just now
		return t.res, t.err
	default:
		// Sent and not answered: it may still take effect, and the
		// caller reports an unknown outcome.
		return txnResult{}, ctx.Err()
	}
}

// withdraw removes t if it is still pending, and reports whether it was.
func (b *batcher) withdraw(t *batchedTxn) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	i := slices.Index(b.pending, t)
	if i < 0 {
		return false
	}
	b.pending = slices.Delete(b.pending, i, i+1)
	return true
}

// run sends batches until nothing is pending.
func (b *batcher) run() {
	defer b.running.Done()
	for {
		b.mu.Lock()
		batch := b.takeLocked()
		if len(batch) == 0 {
			b.inFlight = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		b.send(batch)
	}
}

// takeLocked removes up to maxBatch pending transactions on distinct keys,
// in arrival order; a second one on a key stays for a later batch. Those
// whose caller has given up are dropped, unsent.
func (b *batcher) takeLocked() []*batchedTxn {
	var batch, rest []*batchedTxn
	seen := make(map[string]bool)
	for _, t := range b.pending {
		switch {
		case t.ctx.Err() != nil:
			t.err = fmt.Errorf("%w: %w", errNotSent, t.ctx.Err())
			close(t.done)
		case len(batch) < maxBatch && !seen[t.key]:
			seen[t.key] = true
			batch = append(batch, t)
		default:
			rest = append(rest, t)
		}
	}
	b.pending = rest
	return batch
}

// sendContext bounds a batch by the latest deadline of its callers (and
// the request timeout), and by close.
func (b *batcher) sendContext(batch []*batchedTxn) (context.Context, context.CancelFunc) {
	deadline := time.Now().Add(b.timeout)
	latest := time.Time{}
	for _, t := range batch {
		d, ok := t.ctx.Deadline()
		if !ok {
			latest = deadline
			break
		}
		if d.After(latest) {
			latest = d
		}
	}
	if latest.After(deadline) {
		latest = deadline
	}
	return context.WithDeadline(b.stopped, latest)
}

func (b *batcher) send(batch []*batchedTxn) {
	ctx, cancel := b.sendContext(batch)
	defer cancel()
	if len(batch) == 1 {
		t := batch[0]
		resp, err := b.txn(ctx, t.req)
		if err == nil {
			t.res = txnResult{succeeded: resp.Succeeded, responses: resp.Responses, revision: resp.Header.Revision}
			if resp.Succeeded {
				b.wrote(resp.Header.Revision)
			}
		}
		t.err = err
		close(t.done)
		return
	}
	ops := make([]*pb.RequestOp, len(batch))
	nested := make([]pb.RequestOp_RequestTxn, len(batch)) // one allocation for all
	for i, t := range batch {
		nested[i].RequestTxn = t.req
		ops[i] = &pb.RequestOp{Request: &nested[i]}
	}
	resp, err := b.txn(ctx, &pb.TxnRequest{Success: ops})
	for i, t := range batch {
		switch {
		case err != nil:
			t.err = err
		case i >= len(resp.Responses) || resp.Responses[i].GetResponseTxn() == nil:
			t.err = fmt.Errorf("etcd engine: batched transaction %d of %d has no answer", i, len(batch))
		default:
			nested := resp.Responses[i].GetResponseTxn()
			t.res = txnResult{succeeded: nested.Succeeded, responses: nested.Responses, revision: resp.Header.Revision}
			if nested.Succeeded {
				b.wrote(resp.Header.Revision)
			}
		}
		close(t.done)
	}
}

// txn sends req as clientv3's KV.Txn does — through the client's gRPC
// connection, its interceptors (retries of requests that were never sent,
// auth) and its default call options, with its error mapping — but as the
// request the engine built itself. clientv3's Cmp and Op deep-copy every
// compare with proto.Clone (reflection) two or three times on the way: a
// fifth of the batch's cost in the engine's server.
func (b *batcher) txn(ctx context.Context, req *pb.TxnRequest) (*pb.TxnResponse, error) {
	resp, err := b.kv.Txn(ctx, req, b.callOpts...)
	if err != nil {
		return nil, clientv3.ContextError(ctx, err)
	}
	return resp, nil
}

// wrote records the revision of a write (for Close's catch-up: the
// engine's steps that succeeded all write).
func (b *batcher) wrote(rev int64) {
	for {
		cur := b.lastWrite.Load()
		if rev <= cur || b.lastWrite.CompareAndSwap(cur, rev) {
			return
		}
	}
}

// close stops the batcher: later commits fail with ErrClosed, pending
// transactions are dropped (their callers get ErrClosed), and a batch in
// flight gets until deadline before it is cancelled. When close returns,
// nothing more is sent.
func (b *batcher) close(deadline time.Time) {
	b.mu.Lock()
	b.closed = true
	dropped := b.pending
	b.pending = nil
	b.mu.Unlock()
	for _, t := range dropped {
		t.err = fmt.Errorf("%w: %w", errNotSent, locklock.ErrClosed)
		close(t.done)
	}
	finished := make(chan struct{})
	go func() { b.running.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(time.Until(deadline)):
		b.stop()
		<-finished
	}
	b.stop()
}
