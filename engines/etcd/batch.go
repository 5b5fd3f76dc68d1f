package etcd

import (
	"context"
	"fmt"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// maxBatch bounds one batched transaction; etcd refuses more than
// --max-txn-ops (128 by default) operations in one branch.
const maxBatch = 64

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
type batcher struct {
	client  *clientv3.Client
	timeout time.Duration

	mu       sync.Mutex
	pending  []*batchedTxn
	inFlight bool
}

type batchedTxn struct {
	key  string
	cmps []clientv3.Cmp
	then []clientv3.Op
	els  []clientv3.Op
	done chan struct{}
	res  txnResult
	err  error
}

func newBatcher(client *clientv3.Client, timeout time.Duration) *batcher {
	return &batcher{client: client, timeout: timeout}
}

// commit runs If(cmps).Then(then).Else(els) on key, batched with others.
// ctx bounds the wait; a transaction that was sent is seen through (its
// outcome reported to whoever still waits), since it may have taken effect.
func (b *batcher) commit(ctx context.Context, key string, cmps []clientv3.Cmp, then, els []clientv3.Op) (txnResult, error) {
	t := &batchedTxn{key: key, cmps: cmps, then: then, els: els, done: make(chan struct{})}
	b.mu.Lock()
	b.pending = append(b.pending, t)
	if !b.inFlight {
		b.inFlight = true
		go b.run()
	}
	b.mu.Unlock()
	select {
	case <-t.done:
		return t.res, t.err
	case <-ctx.Done():
		// The transaction may still be sent, and may take effect: the
		// caller reports an unknown outcome.
		return txnResult{}, ctx.Err()
	}
}

// run sends batches until nothing is pending.
func (b *batcher) run() {
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
// in arrival order; a second one on a key stays for a later batch.
func (b *batcher) takeLocked() []*batchedTxn {
	var batch, rest []*batchedTxn
	seen := make(map[string]bool)
	for _, t := range b.pending {
		if len(batch) < maxBatch && !seen[t.key] {
			seen[t.key] = true
			batch = append(batch, t)
			continue
		}
		rest = append(rest, t)
	}
	b.pending = rest
	return batch
}

func (b *batcher) send(batch []*batchedTxn) {
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	if len(batch) == 1 {
		t := batch[0]
		resp, err := b.client.Txn(ctx).If(t.cmps...).Then(t.then...).Else(t.els...).Commit()
		if err == nil {
			t.res = txnResult{succeeded: resp.Succeeded, responses: resp.Responses, revision: resp.Header.Revision}
		}
		t.err = err
		close(t.done)
		return
	}
	ops := make([]clientv3.Op, len(batch))
	for i, t := range batch {
		ops[i] = clientv3.OpTxn(t.cmps, t.then, t.els)
	}
	resp, err := b.client.Txn(ctx).Then(ops...).Commit()
	for i, t := range batch {
		switch {
		case err != nil:
			t.err = err
		case i >= len(resp.Responses) || resp.Responses[i].GetResponseTxn() == nil:
			t.err = fmt.Errorf("etcd engine: batched transaction %d of %d has no answer", i, len(batch))
		default:
			nested := resp.Responses[i].GetResponseTxn()
			t.res = txnResult{succeeded: nested.Succeeded, responses: nested.Responses, revision: resp.Header.Revision}
		}
		close(t.done)
	}
}
