package etcd

import (
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/locklock/locklock/locklock"
)

// heldCacheSize bounds the cache; beyond it an arbitrary entry makes room
// (locks acquired for good, never released, would otherwise pile up).
const heldCacheSize = 1 << 16

// heldCache remembers, for locks (or slots) this engine wrote — acquired or
// refreshed — the record as stored after that write. Release and refresh
// then commit in one round trip — compare the mod revision, write —
// instead of reading first. An entry is only a guess: the compare proves
// it, and a stale one costs a failed compare and then the usual read.
type heldCache[K comparable, V any] struct {
	mu sync.Mutex
	m  map[K]V
}

// stored is a lock as the engine read or wrote it, with what a later write
// of it compares and must know: its key's mod revision, the lease the key
// is on, and the lease of its delay record (zero without a lock-delay).
type stored struct {
	lock       locklock.Lock
	modRev     int64
	lease      clientv3.LeaseID
	delayLease clientv3.LeaseID
}

func newHeldCache[K comparable, V any]() *heldCache[K, V] { return &heldCache[K, V]{m: make(map[K]V)} }

func (c *heldCache[K, V]) get(id K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[id]
	return e, ok
}

func (c *heldCache[K, V]) set(id K, e V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[id]; !ok && len(c.m) >= heldCacheSize {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[id] = e
}

func (c *heldCache[K, V]) forget(id K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, id)
}
