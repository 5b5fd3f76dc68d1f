package keys

import (
	"crypto/sha256"
	"encoding/hex"
	"sync/atomic"
)

// Index is a compiled, immutable view of a [File] for the request path.
// A nil *Index knows no keys and no plans, and anonymous access is off.
type Index struct {
	plans     map[string]Plan
	anonymous Plan
	anonPlan  string // its name
	anonOK    bool
	byHash    map[[sha256.Size]byte]entry
}

type entry struct {
	key  Key
	plan Plan
}

// NewIndex compiles f, which should be valid (as [Parse], [Load] and
// [Default] return it). It fails closed on what Validate would refuse: a key
// whose plan does not exist or whose sha256 is not a hash is left out, an
// anonymous policy on a missing plan means anonymous access is off, and of
// two keys with the same hash the first wins.
func NewIndex(f File) *Index {
	idx := &Index{
		plans:  make(map[string]Plan, len(f.Plans)),
		byHash: make(map[[sha256.Size]byte]entry, len(f.Keys)),
	}
	for name, p := range f.Plans {
		idx.plans[name] = p
	}
	if f.Anonymous != nil {
		idx.anonymous, idx.anonOK = idx.plans[f.Anonymous.Plan]
		idx.anonPlan = f.Anonymous.Plan
		// Fail closed, as Validate refuses it: anonymous callers are
		// never operators.
		idx.anonymous.Operator = false
	}
	for _, k := range f.Keys {
		p, ok := idx.plans[k.Plan]
		if !ok || !isHash(k.SHA256) || k.SHA256 == emptyHash {
			continue
		}
		var h [sha256.Size]byte
		if _, err := hex.Decode(h[:], []byte(k.SHA256)); err != nil {
			continue
		}
		if _, dup := idx.byHash[h]; !dup {
			idx.byHash[h] = entry{key: k, plan: p}
		}
	}
	return idx
}

// Lookup finds the key presented by a client and its plan.
//
// It looks the key up by its SHA-256 in a map, not by comparing secrets,
// so there is no secret-dependent comparison to make constant-time: the
// timing of the map lookup depends only on the hash of what the client
// sent, which the client can compute itself. At most it could learn about
// the stored hashes, and a hash of a 256-bit random key does not lead back
// to the key.
func (x *Index) Lookup(key string) (Key, Plan, bool) {
	if x == nil || key == "" {
		return Key{}, Plan{}, false
	}
	e, ok := x.byHash[sha256.Sum256([]byte(key))]
	if !ok {
		return Key{}, Plan{}, false
	}
	return e.key, e.plan, true
}

// Anonymous is the plan of callers without a key; false when anonymous
// access is off.
func (x *Index) Anonymous() (Plan, bool) {
	if x == nil {
		return Plan{}, false
	}
	return x.anonymous, x.anonOK
}

// AnonymousPlan is the name of the anonymous callers' plan ("" when
// anonymous access is off).
func (x *Index) AnonymousPlan() string {
	if x == nil || !x.anonOK {
		return ""
	}
	return x.anonPlan
}

// Plan returns the plan called name.
func (x *Index) Plan(name string) (Plan, bool) {
	if x == nil {
		return Plan{}, false
	}
	p, ok := x.plans[name]
	return p, ok
}

// NumKeys is the number of keys the index knows, for log lines.
func (x *Index) NumKeys() int {
	if x == nil {
		return 0
	}
	return len(x.byHash)
}

// Store holds the Index in force and lets a reload swap it atomically: a
// request that took Current keeps one consistent view even if a reload
// happens meanwhile. The zero Store holds a nil Index (no keys, anonymous
// access off).
type Store struct {
	current atomic.Pointer[Index]
}

// NewStore returns a Store holding idx.
func NewStore(idx *Index) *Store {
	s := &Store{}
	s.current.Store(idx)
	return s
}

// Current is the Index in force. Call it once per request.
func (s *Store) Current() *Index { return s.current.Load() }

// Replace puts idx in force.
func (s *Store) Replace(idx *Index) { s.current.Store(idx) }

// Reload loads the keys file at path and puts it in force. On any error the
// Index in force stays and the error, naming the file and the problem, is
// returned for the caller to log.
func (s *Store) Reload(path string) error {
	f, err := Load(path)
	if err != nil {
		return err
	}
	s.Replace(NewIndex(f))
	return nil
}
