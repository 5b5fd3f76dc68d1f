package clustertest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/locklock/locklock/internal/lockmodel"
	"github.com/locklock/locklock/locklock"
	"github.com/locklock/locklock/transport/client"
)

// The workload's shape. TTLs are short, so that locks expire all the time
// and a pause outlasts them; etcd's minimum lease TTL is 2 s here.
const (
	Workers     = 10 // clients that act like real ones
	SlowHolders = 2  // clients that pause past their TTL while holding a lock
	LockNames   = 8

	// MaxTTL is the longest expires_in in the history.
	MaxTTL = 3 * time.Second

	// opTimeout bounds a request beyond its wait. The servers give up on
	// etcd after ServerRequestTimeout (twice, for the steps that make two
	// requests); past this the outcome is recorded as unknown.
	opTimeout = 2*ServerRequestTimeout + time.Second

	// believeMargin: a holder stops treating a lock as its own this long
	// before its TTL, counted from when its request was sent, runs out.
	believeMargin = 200 * time.Millisecond
)

var (
	ttls  = []time.Duration{2 * time.Second, MaxTTL}
	waits = []time.Duration{time.Second, 2 * time.Second}
)

// Workload drives the history: Workers honest clients and SlowHolders
// paused ones, each request to a server picked at random, every outcome
// recorded.
type Workload struct {
	Names    []string // the lock UUIDs
	Resource *Resource
	clients  []*client.Client // one per locklock server
	nonce    string           // makes secrets unique to the run

	mu       sync.Mutex
	ops      []Op
	notSent  int      // refused connections (a killed server): certainly no effect, not recorded
	internal []string // 500s: recorded as unknown, reported
	bad      []string // answers that mean the test itself is wrong (400, 401, 429)
}

// NewWorkload returns a workload on the servers at urls.
func NewWorkload(urls []string) (*Workload, error) {
	wl := &Workload{Resource: NewResource(), nonce: rand.Text()[:8]}
	for _, u := range urls {
		// No retries: a retry would hide the outcome the history needs.
		c, err := client.New(u, client.WithRetries(0))
		if err != nil {
			return nil, err
		}
		wl.clients = append(wl.clients, c)
	}
	for range LockNames {
		wl.Names = append(wl.Names, newUUID())
	}
	return wl, nil
}

func newUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Run runs the clients until stop is closed, then waits for their last
// requests (ctx aborts them: the run is being torn down).
func (wl *Workload) Run(ctx context.Context, stop <-chan struct{}) {
	var wg sync.WaitGroup
	for id := range Workers + SlowHolders {
		k := &worker{id: id, wl: wl, rng: mrand.New(mrand.NewPCG(uint64(id), uint64(time.Now().UnixNano()))),
			epoch: map[string]int{}, holds: map[string]*belief{}}
		slow := id >= Workers
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				if slow {
					k.slowStep(ctx, stop)
				} else {
					k.step(ctx)
				}
				// Think time: keeps the history to a size porcupine
				// checks in seconds, and the machine's two cores free
				// for the six servers.
				sleep(stop, time.Duration(40+k.rng.IntN(120))*time.Millisecond)
			}
		})
	}
	wg.Wait()
}

func sleep(stop <-chan struct{}, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-stop:
	}
}

// Ops returns the history recorded so far.
func (wl *Workload) Ops() []Op {
	wl.mu.Lock()
	defer wl.mu.Unlock()
	return slices.Clone(wl.ops)
}

// Stats: requests refused at connect (not in the history), 500 answers,
// and answers that mean the test is wrong.
func (wl *Workload) Stats() (notSent int, internal, bad []string) {
	wl.mu.Lock()
	defer wl.mu.Unlock()
	return wl.notSent, slices.Clone(wl.internal), slices.Clone(wl.bad)
}

type worker struct {
	id    int
	wl    *Workload
	rng   *mrand.Rand
	epoch map[string]int     // per lock: bumped after an unknown outcome
	holds map[string]*belief // the locks this client believes it holds
}

type belief struct {
	token uint64
	until time.Time // zero: an unprotected lock, never written under
}

// client is the model's identity of the worker's current secret for name.
// A worker takes a new secret for a lock after an unknown outcome, so that
// a request of the old one still in flight can never act on a later grant.
func (k *worker) client(name string) int {
	return (k.id*LockNames+slices.Index(k.wl.Names, name))*100_000 + k.epoch[name]
}

func (k *worker) secret(name string) string {
	return fmt.Sprintf("%s-c%d", k.wl.nonce, k.client(name))
}

func (k *worker) newOp(kind lockmodel.Kind, name string) Op {
	return Op{Worker: k.id, Server: k.rng.IntN(len(k.wl.clients)),
		HistoryOp: lockmodel.HistoryOp{Kind: kind, Name: name, Client: k.client(name), Protected: true}}
}

// write does the work the lock protects, if the worker still holds it by
// its own reckoning.
func (k *worker) write(name string) {
	if b := k.holds[name]; b != nil && time.Now().Before(b.until) {
		k.wl.Resource.Write(name, b.token, k.id, b.until)
	}
}

// step is one move of an honest client: mostly what a real one does
// (release or refresh what it holds, acquire what it does not, sometimes
// walk away and let a lock expire), with strays mixed in so that every
// answer shows up.
func (k *worker) step(ctx context.Context) {
	name := k.wl.Names[k.rng.IntN(len(k.wl.Names))]
	k.write(name)
	held := k.holds[name] != nil
	p := k.rng.IntN(20)
	var op Op
	switch {
	case held && p < 9, !held && p < 1:
		op = k.newOp(lockmodel.Release, name)
	case held && p < 15, !held && p < 2:
		op = k.newOp(lockmodel.Refresh, name)
		op.TTL = ttls[k.rng.IntN(len(ttls))]
	case held && p < 17, !held:
		op = k.newOp(lockmodel.Acquire, name)
		op.TTL = ttls[k.rng.IntN(len(ttls))]
		op.Protected = k.rng.IntN(5) != 0
		if k.rng.IntN(5) == 0 {
			op.Wait = waits[k.rng.IntN(len(waits))]
		}
	default:
		delete(k.holds, name) // walk away: the lock expires by itself
		return
	}
	op, ok := k.wl.do(ctx, op, k.secret(name))
	if ok {
		k.learn(op)
	}
}

// learn updates what the worker believes from an answer, and writes at once
// under a lock it just got or extended.
func (k *worker) learn(op Op) {
	name := op.Name
	switch op.Outcome {
	case lockmodel.Created, lockmodel.Reacquired:
		b := &belief{token: op.Token}
		if op.Protected {
			// A new grant lasts its TTL from when the request was sent at
			// least; one found held (a retry's 200) until its expires_at.
			b.until = op.CallAt.Add(op.TTL)
			if op.Outcome == lockmodel.Reacquired {
				b.until = op.ExpiresAt
			}
			b.until = b.until.Add(-believeMargin)
		}
		k.holds[name] = b
		k.write(name)
	case lockmodel.Refreshed:
		// Anyone may refresh an unprotected lock: a refresh extends this
		// client's grant only if it answers with this grant's token.
		b := k.holds[name]
		if b == nil || b.token != op.Token {
			delete(k.holds, name)
			return
		}
		if !b.until.IsZero() {
			b.until = op.CallAt.Add(op.TTL - believeMargin)
			k.write(name)
		}
	case lockmodel.Released, lockmodel.NotFound, lockmodel.Mismatch:
		delete(k.holds, name)
	case lockmodel.Unknown:
		delete(k.holds, name)
		k.epoch[name]++
	}
}

// slowStep is a holder that stops the world: it takes a lock with the
// shortest TTL, writes, pauses (a GC pause, a stopped VM) well past the
// TTL, wakes up and writes again with its old token without looking at the
// clock, then releases. Meanwhile others take the lock; only fencing keeps
// the late write out.
func (k *worker) slowStep(ctx context.Context, stop <-chan struct{}) {
	name := k.wl.Names[k.rng.IntN(len(k.wl.Names))]
	op := k.newOp(lockmodel.Acquire, name)
	op.TTL = ttls[0]
	op, ok := k.wl.do(ctx, op, k.secret(name))
	if !ok {
		return
	}
	k.learn(op)
	b := k.holds[name]
	if b == nil {
		return
	}
	sleep(stop, op.TTL+500*time.Millisecond+time.Duration(k.rng.IntN(1500))*time.Millisecond)
	// Wakes up believing it still holds the lock.
	k.wl.Resource.Write(name, b.token, k.id, b.until)
	rel := k.newOp(lockmodel.Release, name)
	if rel, ok = k.wl.do(ctx, rel, k.secret(name)); ok {
		k.learn(rel)
	}
	delete(k.holds, name)
}

// do sends op to its server and records the outcome. ok is false when the
// request certainly had no effect and is left out of the history (the
// connection was refused: a killed server).
func (wl *Workload) do(ctx context.Context, op Op, secret string) (Op, bool) {
	c := wl.clients[op.Server]
	rctx, cancel := context.WithTimeout(ctx, op.Wait+opTimeout)
	defer cancel()
	target := client.UUID(op.Name)
	var (
		l   client.Lock
		err error
	)
	op.CallAt = time.Now()
	switch op.Kind {
	case lockmodel.Acquire:
		opts := []client.LockOption{client.WithTTL(op.TTL), client.WithWait(op.Wait), client.WithSecret(secret)}
		if !op.Protected {
			opts[2] = client.Unprotected()
		}
		l, err = c.Acquire(rctx, target, opts...)
		op.Outcome = lockmodel.Reacquired
		if l.Created {
			op.Outcome = lockmodel.Created
		}
	case lockmodel.Release:
		l, err = c.Release(rctx, target, client.WithSecret(secret))
		op.Outcome = lockmodel.Released
	case lockmodel.Refresh:
		l, err = c.Refresh(rctx, target, client.WithSecret(secret), client.WithTTL(op.TTL))
		op.Outcome = lockmodel.Refreshed
	}
	op.ReturnAt = time.Now()
	if err == nil {
		op.Token = l.FencingToken
		if op.Kind != lockmodel.Release {
			op.ExpiresAt = l.ExpiresAt
		}
	}
	var apiErr *client.Error
	if errors.As(err, &apiErr) {
		op.Status = apiErr.Status
	}
	switch {
	case err == nil:
	case errors.Is(err, locklock.ErrHeld):
		op.Outcome = lockmodel.Held
	case errors.Is(err, locklock.ErrNotFound):
		op.Outcome = lockmodel.NotFound
	case errors.Is(err, locklock.ErrSecretMismatch):
		op.Outcome = lockmodel.Mismatch
	case refused(err):
		wl.mu.Lock()
		wl.notSent++
		wl.mu.Unlock()
		return op, false
	case errors.As(err, &apiErr) && apiErr.Status < 500:
		wl.mu.Lock()
		wl.bad = append(wl.bad, fmt.Sprintf("%s: %v (%d %s)", op, err, apiErr.Status, apiErr.Code))
		wl.mu.Unlock()
		return op, false // a refused request changes no lock (API.md)
	default:
		// 503, a timeout, a connection cut mid-request: it may or may
		// not have taken effect, and may still.
		op.Outcome, op.Token, op.ExpiresAt, op.Err = lockmodel.Unknown, 0, time.Time{}, err.Error()
		if apiErr != nil && apiErr.Status == 500 {
			wl.mu.Lock()
			wl.internal = append(wl.internal, fmt.Sprintf("%s: %v", op, err))
			wl.mu.Unlock()
		}
	}
	wl.mu.Lock()
	wl.ops = append(wl.ops, op)
	wl.mu.Unlock()
	return op, true
}

// refused: the connection could not be made, so the request never left.
func refused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
