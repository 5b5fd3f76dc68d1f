package etcd

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/locklock/locklock/internal/etcdtest"
	"github.com/locklock/locklock/locklock"
)

func testSlot(name string, limit, weight int) locklock.Slot {
	now := time.Now().UTC().Truncate(time.Millisecond)
	return locklock.Slot{
		Semaphore: locklock.ID{Namespace: "public", Kind: locklock.KindKey, Name: name},
		ID:        locklock.NewSlotID(), Limit: limit, Weight: weight,
		AcquiredAt: now, ExpiresAt: now.Add(time.Hour),
	}
}

// TestListSemaphoresReadsInPages: a listing reads slot keys a page at a
// time; semaphores whose slots span pages are counted whole, and the
// listing stops once it has its limit of semaphores whole.
func TestListSemaphoresReadsInPages(t *testing.T) {
	e := New(etcdtest.Client(t, etcdtest.Endpoints(t)...), WithPrefix(uniqueTestPrefix("sem-pages")))
	t.Cleanup(func() { _ = e.Close() })
	e.listPage = 2
	slots := map[string]int{"a": 3, "b": 1, "c": 2, "c-d": 5, "d": 1}
	for name, n := range slots {
		for range n {
			if _, created, err := e.TryAcquireSlot(t.Context(), testSlot(name, 10, 2), time.Now(), nil); err != nil || !created {
				t.Fatalf("%s: %v %v", name, created, err)
			}
		}
	}
	list := func(after string, limit int) []string {
		t.Helper()
		q := locklock.ListQuery{Namespace: "public", Kind: locklock.KindKey, After: after, Limit: limit}
		got, err := e.ListSemaphores(t.Context(), q, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, s := range got {
			if s.Slots != slots[s.Name] || s.InUse != 2*slots[s.Name] || s.Limit != 10 {
				t.Errorf("%s: %+v, want %d slots of weight 2 under limit 10", s.Name, s, slots[s.Name])
			}
			names = append(names, s.Name)
		}
		return names
	}
	for _, c := range []struct {
		after string
		limit int
		want  []string
	}{
		{"", 2, []string{"a", "b"}},
		{"", 3, []string{"a", "b", "c"}},
		{"a", 2, []string{"b", "c"}},
		{"b", 10, []string{"c", "c-d", "d"}},
		{"c", 1, []string{"c-d"}},
		{"d", 10, nil},
		// Nothing a separator in After or Prefix can make of the keys.
		{"a#", 1, []string{"b"}},
		{"c-d#", 10, []string{"d"}},
	} {
		if got := list(c.after, c.limit); !slices.Equal(got, c.want) {
			t.Errorf("after %q, limit %d: %v, want %v", c.after, c.limit, got, c.want)
		}
	}
	got, err := e.ListSemaphores(t.Context(), locklock.ListQuery{Namespace: "public", Kind: locklock.KindKey, Prefix: "a#", Limit: 10}, time.Now())
	if err != nil || len(got) != 0 {
		t.Errorf("prefix a#: %+v %v, want nothing", got, err)
	}
}

// TestOneSlotStepPerSemaphorePerBatch: etcd judges all the compares of a
// transaction before it applies any write, nested transactions included.
// Two acquires of one semaphore, judged at the same revision, that went to
// etcd in one batch would both get in — which is why the batcher keeps
// slot steps apart by semaphore, and why, given that key, only one does.
func TestOneSlotStepPerSemaphorePerBatch(t *testing.T) {
	client := etcdtest.Client(t, etcdtest.Endpoints(t)...)
	e := New(client, WithPrefix(uniqueTestPrefix("sem-batch")))
	t.Cleanup(func() { _ = e.Close() })
	sem := e.semKey(locklock.ID{Namespace: "public", Kind: locklock.KindKey, Name: "batch"})
	rev := func() int64 {
		resp, err := client.Get(t.Context(), sem, clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		return resp.Header.Revision
	}
	r := rev()
	nested := func(txn *pb.TxnRequest) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: txn}}
	}
	resp, err := e.batch.txn(t.Context(), &pb.TxnRequest{Success: []*pb.RequestOp{
		nested(slotAcquireTxn(sem, sem+"one", []byte("{}"), 0, r)),
		nested(slotAcquireTxn(sem, sem+"two", []byte("{}"), 0, r)),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Responses[0].GetResponseTxn().Succeeded || !resp.Responses[1].GetResponseTxn().Succeeded {
		t.Fatal("nested compares saw an earlier nested write: the batcher's separation would be needless")
	}

	// Through the batcher, under the semaphore's key: never in one batch.
	r = rev()
	var wg sync.WaitGroup
	results := make([]txnResult, 8)
	for i := range results {
		wg.Go(func() {
			res, err := e.batch.commit(t.Context(), sem, slotAcquireTxn(sem, sem+string(rune('a'+i)), []byte("{}"), 0, r))
			if err != nil {
				t.Error(err)
			}
			results[i] = res
		})
	}
	wg.Wait()
	won := 0
	for _, res := range results {
		if res.succeeded {
			won++
		}
	}
	if won != 1 {
		t.Fatalf("%d of %d acquires judged at one revision got in, want 1", won, len(results))
	}
}

// TestTurns: turns of one key go one at a time; a wait ends with
// the context or the deadline; entries go when nobody uses them.
func TestTurns(t *testing.T) {
	tr := newTurns()
	leave, err := tr.take(t.Context(), "k", time.Now().Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	// Another key is not held up.
	other, err := tr.take(t.Context(), "other", time.Now().Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	other()
	if _, err := tr.take(t.Context(), "k", time.Now().Add(20*time.Millisecond)); !errors.Is(err, locklock.ErrUnavailable) {
		t.Fatalf("past the deadline: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := tr.take(ctx, "k", time.Now().Add(time.Second)); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	var (
		inside, most atomic.Int32
		wg           sync.WaitGroup
	)
	for range 8 {
		wg.Go(func() {
			end, err := tr.take(t.Context(), "k", time.Now().Add(5*time.Second))
			if err != nil {
				t.Error(err)
				return
			}
			n := inside.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			time.Sleep(time.Millisecond)
			inside.Add(-1)
			end()
		})
	}
	time.Sleep(10 * time.Millisecond)
	if most.Load() != 0 {
		t.Fatal("a turn was taken while the first was held")
	}
	leave()
	wg.Wait()
	if most.Load() != 1 {
		t.Errorf("up to %d turns at once", most.Load())
	}
	if len(tr.m) != 0 {
		t.Errorf("%d entries left", len(tr.m))
	}
}
