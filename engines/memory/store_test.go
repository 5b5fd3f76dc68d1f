package memory

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/locklock/locklock/locklock"
)

func TestKeyRoundTrip(t *testing.T) {
	ids := []locklock.ID{
		{Namespace: "public", Kind: locklock.KindUUID, Name: "180da65c-cf80-4997-8574-0c0801817d6f"},
		{Namespace: "acme", Kind: locklock.KindUUID, Name: "ffffffff-ffff-ffff-ffff-ffffffffffff"},
		{Namespace: "public", Kind: locklock.KindUUID, Name: "180DA65C-CF80-4997-8574-0C0801817D6F"}, // not canonical: kept as text
		{Namespace: "public", Kind: locklock.KindUUID, Name: "180da65c-cf80-4997-8574-0c0801817d6"},  // too short
		{Namespace: "public", Kind: locklock.KindUUID, Name: "180da65cxcf80-4997-8574-0c0801817d6f"}, // misplaced dash
		{Namespace: "acme", Kind: locklock.KindKey, Name: "job:1/a b"},
		{Namespace: "acme", Kind: locklock.KindKey, Name: "180da65c-cf80-4997-8574-0c0801817d6f"},
		{Namespace: "", Kind: locklock.KindKey, Name: ""},
	}
	st := newStore()
	slots := map[slot]locklock.ID{}
	for _, id := range ids {
		if _, ok := st.find(id); ok {
			t.Errorf("%v found before it was added", id)
		}
		i := st.add(locklock.Lock{ID: id})
		slots[i] = id
	}
	for i, id := range slots {
		if got := st.id(i); got != id {
			t.Errorf("slot %d: id %v, want %v", i, got, id)
		}
		if j, ok := st.find(id); !ok || j != i {
			t.Errorf("find(%v) = %d, %v; want %d", id, j, ok, i)
		}
		var listed []locklock.ID
		st.each(id.Namespace, id.Kind, func(j slot) { listed = append(listed, st.id(j)) })
		for _, other := range ids {
			want := other.Namespace == id.Namespace && other.Kind == id.Kind
			if got := slices.Contains(listed, other); got != want {
				t.Errorf("each(%q, %q) lists %v: %v, want %v", id.Namespace, id.Kind, other, got, want)
			}
		}
	}
	if len(st.uuids) != 2 || len(st.names) != len(ids)-2 {
		t.Errorf("%d UUID keys and %d generic keys, want 2 and %d", len(st.uuids), len(st.names), len(ids)-2)
	}
	for i := range slots {
		st.remove(i)
	}
	if st.len() != 0 || len(st.uuids)+len(st.names)+len(st.nameOf)+len(st.guards) != 0 || len(st.free) != len(ids) {
		t.Errorf("after removing everything: %d entries, maps %d/%d/%d/%d, %d free slots",
			st.len(), len(st.uuids), len(st.names), len(st.nameOf), len(st.guards), len(st.free))
	}
}

// TestMemoryPerLock: the heap a held UUID lock costs (entry, key, map slot,
// expiry heap slot) stays within the budget that keeps a million locks
// under 400 MB of RSS with the collector's headroom (BENCHMARKS.md).
func TestMemoryPerLock(t *testing.T) {
	if size := unsafe.Sizeof(entry{}); size != 56 {
		t.Errorf("entry is %d bytes, want 56", size)
	}
	const n = 200_000
	e := New()
	defer e.Close()
	now := time.Now()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range n {
		id := locklock.ID{Namespace: locklock.DefaultNamespace, Kind: locklock.KindUUID,
			Name: fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)}
		l := locklock.Lock{ID: id, AcquiredAt: now, ExpiresAt: now.Add(time.Hour)}
		if _, err := e.TryAcquire(context.Background(), l, now); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perLock := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("%.0f bytes of heap per held lock", perLock)
	if perLock > 130 {
		t.Errorf("%.0f bytes of heap per held lock, want at most 130", perLock)
	}
	runtime.KeepAlive(e)
}

// TestExpiryHeap: after random adds, refreshes and removals the heap is
// ordered, every entry knows its position, and sweeping takes the expired
// entries soonest first.
func TestExpiryHeap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	st := newStore()
	var held []slot
	for n := range 5000 {
		switch op := rng.IntN(10); {
		case op < 5 || len(held) == 0:
			exp := time.UnixMilli(rng.Int64N(1000))
			id := locklock.ID{Namespace: "ns", Kind: locklock.KindKey, Name: fmt.Sprint(n)}
			held = append(held, st.add(locklock.Lock{ID: id, ExpiresAt: exp}))
		case op < 8:
			i := held[rng.IntN(len(held))]
			st.at(i).expires = rng.Int64N(1000)
			st.moved(i)
		default:
			k := rng.IntN(len(held))
			st.remove(held[k])
			held = slices.Delete(held, k, k+1)
		}
	}
	h := &st.expiry
	for pos, i := range h.slots {
		if int(st.at(i).index) != pos {
			t.Fatalf("slot %d at heap position %d thinks it is at %d", i, pos, st.at(i).index)
		}
		if pos > 0 && h.less(pos, (pos-1)/2) {
			t.Fatalf("heap position %d expires before its parent", pos)
		}
	}
	if st.len() != len(held) {
		t.Fatalf("%d entries in the heap, %d held", st.len(), len(held))
	}
	last := int64(-1)
	for st.len() > 0 {
		ent := st.at(h.first())
		if ent.expires < last {
			t.Fatalf("expiry %d came after %d", ent.expires, last)
		}
		last = ent.expires
		st.remove(h.first())
	}
}

// TestCloseRacingAcquires: acquires racing Close either finish before it or
// fail with ErrClosed; none lands in the emptied store Close leaves behind.
func TestCloseRacingAcquires(t *testing.T) {
	for round := range 200 {
		e := New()
		start := make(chan struct{})
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				<-start
				for i := 0; ; i++ {
					id := locklock.ID{Namespace: "public", Kind: locklock.KindKey, Name: fmt.Sprintf("r%d-g%d-%d", round, g, i)}
					now := time.Now()
					_, err := e.TryAcquire(context.Background(), locklock.Lock{ID: id, AcquiredAt: now, ExpiresAt: now.Add(time.Minute)}, now)
					if errors.Is(err, locklock.ErrClosed) {
						return
					}
					if err != nil {
						t.Errorf("acquire: %v", err)
						return
					}
				}
			})
		}
		close(start)
		time.Sleep(50 * time.Microsecond)
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		for i := range e.shards {
			if n := e.shards[i].locks.len(); n != 0 {
				t.Fatalf("round %d: shard %d holds %d locks after Close: an acquire landed in the emptied store", round, i, n)
			}
		}
	}
}
