package etcd

import (
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/locklock/locklock/locklock"
)

// heldCacheSize bounds the cache; beyond it an arbitrary entry makes room
// (locks acquired for good, never released, would otherwise pile up).
const heldCacheSize = 1 << 16

// heldCache remembers, for locks this engine wrote (acquired or refreshed),
// the lock as stored after that write. Release and refresh then commit in
// one round trip — compare the mod revision, write — instead of reading
// first. An entry is only a guess: the compare proves it, and a
// stale one costs a failed compare and then the usual read.
type heldCache struct {
	mu sync.Mutex
	m  map[locklock.ID]stored
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

func newHeldCache() *heldCache { return &heldCache{m: make(map[locklock.ID]stored)} }

func (c *heldCache) get(id locklock.ID) (stored, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[id]
	return e, ok
}

func (c *heldCache) set(id locklock.ID, e stored) {
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

func (c *heldCache) forget(id locklock.ID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, id)
}
