package memory

import (
	"strings"
	"time"

	"github.com/locklock/locklock/locklock"
)

// store holds one shard's locks so that a million of them cost little
// memory and almost nothing to the garbage collector, which otherwise
// spends most of a second marking them in every cycle:
//
//   - entries live in fixed pages of a slab and are addressed by slot
//     number; they hold no pointers, so the collector does not scan them;
//   - UUID locks (the common case) are found through a map keyed by the
//     UUID's 16 bytes and a namespace number — no pointers either;
//   - other locks (custom names) through a map keyed by a string; their
//     keys, and the guards of protected locks, sit in side maps by slot.
//
// A UUID lock costs about 100 bytes. The slab and the maps keep their size
// after the locks go (later locks reuse it).
type store struct {
	uuids      map[uuidKey]slot
	names      map[string]slot // genericKey
	nameOf     map[slot]string // the key of every entry in names
	guards     map[slot]locklock.Guard
	labels     map[slot]labels   // holder and metadata, for entries that have them
	revoked    map[slot]struct{} // ended entries an operator revoked (rare: not in entry, kept at 56 bytes)
	namespaces map[string]uint32 // namespace numbers of UUID keys; never forgotten
	nsNames    []string          // namespace by number
	pages      []*page
	free       []slot // unused slots below next
	next       slot   // slots from here up were never used
	expiry     expiry // every entry, soonest end first
	ended      int    // entries kept only for their lock-delay
}

// labels are the parts of a lock for people (API.md §8), kept apart from
// the entries because most locks have none.
type labels struct {
	holder   string
	metadata map[string]string
}

type slot int32

const (
	pageBits = 8
	pageSize = 1 << pageBits
)

type page [pageSize]entry

// entry is one held lock, in 56 bytes. Times are Unix milliseconds, the
// precision the Service works in (and Badger and etcd store).
type entry struct {
	acquired  int64 // Unix ms
	expires   int64 // Unix ms
	token     uint64
	index     int32   // position in the expiry heap
	uuid      uuidKey // when byUUID
	byUUID    bool    // found through uuids (else names)
	protected bool    // has a guard in guards
	labeled   bool    // has labels
	ended     bool    // kept only for its lock-delay (locklock.Lock.Ended)
	delay     int32   // lock-delay in seconds
}

// uuidKey identifies a UUID lock with a canonical name.
type uuidKey struct {
	ns   uint32
	uuid [16]byte
}

func newStore() *store {
	s := &store{
		uuids:      make(map[uuidKey]slot),
		names:      make(map[string]slot),
		nameOf:     make(map[slot]string),
		guards:     make(map[slot]locklock.Guard),
		labels:     make(map[slot]labels),
		revoked:    make(map[slot]struct{}),
		namespaces: make(map[string]uint32),
	}
	s.expiry.s = s
	return s
}

func (s *store) at(i slot) *entry { return &s.pages[i>>pageBits][i&(pageSize-1)] }

func (s *store) len() int { return len(s.expiry.slots) }

// find returns the slot of id's entry.
func (s *store) find(id locklock.ID) (slot, bool) {
	if raw, ok := canonicalUUID(id); ok {
		ns, ok := s.namespaces[id.Namespace]
		if !ok {
			return 0, false
		}
		i, ok := s.uuids[uuidKey{ns, raw}]
		return i, ok
	}
	var buf [96]byte
	i, ok := s.names[string(appendGenericKey(buf[:0], id))] // no allocation for a lookup
	return i, ok
}

// add stores a new entry for l, which must not be in the store.
func (s *store) add(l locklock.Lock) slot {
	i := s.alloc()
	ent := s.at(i)
	if raw, ok := canonicalUUID(l.ID); ok {
		ent.byUUID, ent.uuid = true, uuidKey{s.namespace(l.Namespace), raw}
		s.uuids[ent.uuid] = i
	} else {
		key := string(appendGenericKey(nil, l.ID))
		s.names[key] = i
		s.nameOf[i] = key
	}
	s.set(i, l)
	s.expiry.push(i)
	return i
}

// set records l in entry i.
func (s *store) set(i slot, l locklock.Lock) {
	ent := s.at(i)
	ent.acquired = l.AcquiredAt.UnixMilli()
	ent.expires = l.ExpiresAt.UnixMilli()
	ent.token = l.Token
	ent.delay = int32(l.LockDelay / time.Second)
	s.setEnded(i, l.Ended)
	ent.protected = l.Guard.Protected()
	if ent.protected {
		s.guards[i] = l.Guard
	} else {
		delete(s.guards, i)
	}
	ent.labeled = l.Holder != "" || len(l.Metadata) > 0
	if ent.labeled {
		s.labels[i] = labels{holder: l.Holder, metadata: l.Metadata}
	} else {
		delete(s.labels, i)
	}
	if l.Revoked {
		s.revoked[i] = struct{}{}
	} else {
		delete(s.revoked, i)
	}
}

// setEnded marks entry i as kept for its lock-delay, or not.
func (s *store) setEnded(i slot, ended bool) {
	ent := s.at(i)
	switch {
	case ended && !ent.ended:
		s.ended++
	case !ended && ent.ended:
		s.ended--
	}
	ent.ended = ended
}

// moved re-sorts entry i after its expiry changed.
func (s *store) moved(i slot) { s.expiry.fix(int(s.at(i).index)) }

func (s *store) remove(i slot) {
	ent := s.at(i)
	s.expiry.remove(int(ent.index))
	if ent.byUUID {
		delete(s.uuids, ent.uuid)
	} else {
		delete(s.names, s.nameOf[i])
		delete(s.nameOf, i)
	}
	if ent.protected {
		delete(s.guards, i)
	}
	if ent.labeled {
		delete(s.labels, i)
	}
	delete(s.revoked, i)
	s.setEnded(i, false)
	*ent = entry{}
	s.free = append(s.free, i)
}

func (s *store) alloc() slot {
	if n := len(s.free); n > 0 {
		i := s.free[n-1]
		s.free = s.free[:n-1]
		return i
	}
	if int(s.next) == len(s.pages)*pageSize {
		s.pages = append(s.pages, new(page))
	}
	s.next++
	return s.next - 1
}

// namespace numbers ns, adding it if new. Namespaces are few (one per
// tenant), so they are kept for good.
func (s *store) namespace(ns string) uint32 {
	n, ok := s.namespaces[ns]
	if !ok {
		n = uint32(len(s.nsNames))
		s.namespaces[ns] = n
		s.nsNames = append(s.nsNames, strings.Clone(ns))
	}
	return n
}

// lock rebuilds entry i's lock; id is the ID it was found by.
func (s *store) lock(i slot, id locklock.ID) locklock.Lock {
	ent := s.at(i)
	l := locklock.Lock{
		ID:         id,
		AcquiredAt: unixMilli(ent.acquired),
		ExpiresAt:  unixMilli(ent.expires),
		Token:      ent.token,
		LockDelay:  time.Duration(ent.delay) * time.Second,
		Ended:      ent.ended,
	}
	if ent.protected {
		l.Guard = s.guards[i]
	}
	if ent.labeled {
		lb := s.labels[i]
		l.Holder, l.Metadata = lb.holder, lb.metadata
	}
	if ent.ended {
		_, l.Revoked = s.revoked[i]
	}
	return l
}

// id gives back the ID of entry i.
func (s *store) id(i slot) locklock.ID {
	ent := s.at(i)
	if ent.byUUID {
		return locklock.ID{Namespace: s.nsNames[ent.uuid.ns], Kind: locklock.KindUUID, Name: uuidText(ent.uuid.uuid)}
	}
	return parseGenericKey(s.nameOf[i])
}

// each calls f for every entry of namespace ns and kind k.
func (s *store) each(ns string, k locklock.Kind, f func(slot)) {
	if k == locklock.KindUUID {
		if n, ok := s.namespaces[ns]; ok {
			for key, i := range s.uuids {
				if key.ns == n {
					f(i)
				}
			}
		}
	}
	for key, i := range s.names {
		if genericKeyMatches(key, ns, k) {
			f(i)
		}
	}
}

// expiry is a min-heap of slots by their entries' expiry. It is written out
// rather than built on container/heap, whose interface would box every
// slot it moves.
type expiry struct {
	s     *store
	slots []slot
}

func (h *expiry) less(i, j int) bool { return h.s.at(h.slots[i]).end() < h.s.at(h.slots[j]).end() }

func (h *expiry) swap(i, j int) {
	h.slots[i], h.slots[j] = h.slots[j], h.slots[i]
	h.s.at(h.slots[i]).index = int32(i)
	h.s.at(h.slots[j]).index = int32(j)
}

func (h *expiry) push(i slot) {
	h.s.at(i).index = int32(len(h.slots))
	h.slots = append(h.slots, i)
	h.up(len(h.slots) - 1)
}

// remove takes out the slot at heap position i.
func (h *expiry) remove(i int) {
	last := len(h.slots) - 1
	if i != last {
		h.swap(i, last)
	}
	h.slots = h.slots[:last]
	if i != last {
		h.fix(i)
	}
}

// fix restores the order after the entry at heap position i changed.
func (h *expiry) fix(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h *expiry) up(j int) {
	for j > 0 {
		parent := (j - 1) / 2
		if !h.less(j, parent) {
			return
		}
		h.swap(parent, j)
		j = parent
	}
}

// down sinks position i and reports whether it moved.
func (h *expiry) down(i int) bool {
	start, n := i, len(h.slots)
	for {
		child := 2*i + 1
		if child >= n {
			break
		}
		if r := child + 1; r < n && h.less(r, child) {
			child = r
		}
		if !h.less(child, i) {
			break
		}
		h.swap(i, child)
		i = child
	}
	return i > start
}

// first is the slot that expires soonest; the heap must not be empty.
func (h *expiry) first() slot { return h.slots[0] }

// countExpired counts the entries at or below heap position i that have
// expired at now and are not yet marked ended (those the store counts in
// ended). A heap's children never end before their parent, so the walk
// stops at the first entry of each branch whose end is still to come.
func (h *expiry) countExpired(i int, now int64) int {
	if i >= len(h.slots) {
		return 0
	}
	ent := h.s.at(h.slots[i])
	if now < ent.end() {
		return 0
	}
	n := 0
	if !ent.ended {
		n = 1
	}
	return n + h.countExpired(2*i+1, now) + h.countExpired(2*i+2, now)
}

// live says whether the lock is held at now: not ended and before its
// expiry (both in whole milliseconds; a time within the expiry's
// millisecond is not).
func (ent *entry) live(now int64) bool { return !ent.ended && now < ent.expires }

// end is when the entry stops mattering: its expiry while the lock is held,
// the end of its lock-delay once it is marked ended. The expiry heap orders
// by it.
func (ent *entry) end() int64 {
	if ent.ended {
		return ent.expires + int64(ent.delay)*1000
	}
	return ent.expires
}

// delaying says whether an entry that is not live still bars acquires at now.
func (ent *entry) delaying(now int64) bool {
	return !ent.live(now) && ent.delay > 0 && now < ent.expires+int64(ent.delay)*1000
}
