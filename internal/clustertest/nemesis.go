package clustertest

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/locklock/locklock/transport/client"
)

// The nemesis's timing.
const (
	// Quiet is how long traffic runs undisturbed before each fault.
	Quiet = 3 * time.Second
	// Outage is how long an etcd member stays dead, frozen or cut off,
	// and how long a locklock server stays frozen: longer than any lock's
	// TTL, so that locks held through a frozen server expire meanwhile.
	Outage = 5 * time.Second
	// ServerDown is how long a killed locklock server stays down.
	ServerDown = 3 * time.Second

	// AvailabilityBound is how soon after a fault heals an acquire must
	// succeed through every server: a lock's TTL (the most a lock held
	// through the faulty part can linger) plus one etcd election.
	AvailabilityBound = MaxTTL + ElectionTimeout

	// probeTimeout bounds one probe request: an acquire of a free lock
	// takes a few milliseconds, but one that the server sends to an etcd
	// member that does not answer hangs until the server's etcd request
	// timeout, so a probe gives up early and tries again.
	probeTimeout = 500 * time.Millisecond
	probeGiveUp  = 30 * time.Second

	// FreezeFor is how long the frozen-member phase keeps an etcd member
	// frozen, and FrozenQuiet the undisturbed traffic before each freeze,
	// which the figures of the freeze are compared with.
	FreezeFor   = 10 * time.Second
	FrozenQuiet = 5 * time.Second
)

// FaultKind is one kind of fault the nemesis injects.
type FaultKind string

// The faults, each injected and healed in turn.
const (
	KillEtcd      FaultKind = "kill -9 etcd leader, restart"
	KillServer    FaultKind = "kill -9 locklock server, restart"
	PauseServer   FaultKind = "pause locklock server"
	PauseEtcd     FaultKind = "pause etcd leader"
	PartitionEtcd FaultKind = "cut etcd leader off the network"

	FreezeEtcdFollower FaultKind = "freeze etcd follower 10 s"
	FreezeEtcdLeader   FaultKind = "freeze etcd leader 10 s"
)

// Schedule is the order of one cycle of faults.
var Schedule = []FaultKind{KillEtcd, KillServer, PauseServer, PauseEtcd, PartitionEtcd}

// FrozenPhase is the frozen-member phase, after the cycles: one etcd
// member of three frozen for FreezeFor under the usual load, a follower,
// then the leader. Its figures (MeasureFrozen) show what a member that
// keeps its connections open and answers nothing costs the clients.
var FrozenPhase = []FaultKind{FreezeEtcdFollower, FreezeEtcdLeader}

// Role is which etcd member a frozen-member fault froze.
func (k FaultKind) Role() string {
	switch k {
	case FreezeEtcdFollower:
		return "follower"
	case FreezeEtcdLeader:
		return "leader"
	}
	return ""
}

// Fault is one injected fault and what followed.
type Fault struct {
	Kind        FaultKind
	Target      string
	Injected    time.Time
	Healed      time.Time
	Err         error           // injecting or healing failed
	Failover    []time.Duration // from injection to the first acquire through each server not at fault (-1: none)
	Recovery    []time.Duration // from healing to the first acquire through each server (-1: none within probeGiveUp)
	HealthyWait time.Duration   // from healing until every member and server answered again
}

func (f Fault) String() string {
	return fmt.Sprintf("%-32s %-26s failover %s  after heal %s  all healthy after %v",
		f.Kind, f.Target, durations(f.Failover), durations(f.Recovery), f.HealthyWait.Round(10*time.Millisecond))
}

func durations(ds []time.Duration) string {
	var s []string
	for _, d := range ds {
		switch {
		case d < 0:
			s = append(s, "never")
		case d == 0:
			s = append(s, "-")
		default:
			s = append(s, d.Round(time.Millisecond).String())
		}
	}
	return "[" + strings.Join(s, " ") + "]"
}

// Nemesis injects faults into an Env one at a time.
type Nemesis struct {
	env    *Env
	probes []*client.Client
	logf   func(format string, args ...any)
}

// NewNemesis returns a nemesis for env that logs with logf.
func NewNemesis(env *Env, logf func(string, ...any)) (*Nemesis, error) {
	n := &Nemesis{env: env, logf: logf}
	for _, s := range env.Servers {
		c, err := client.New(s.URL(), client.WithRetries(0))
		if err != nil {
			return nil, err
		}
		n.probes = append(n.probes, c)
	}
	return n, nil
}

// Run injects cycles × Schedule faults, each after Quiet, then the
// FrozenPhase faults, each after FrozenQuiet, and returns them.
func (n *Nemesis) Run(ctx context.Context, cycles int) []Fault {
	var faults []Fault
	next := func(quiet time.Duration, kind FaultKind, server int) bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(quiet):
		}
		f := n.inject(ctx, kind, server)
		n.logf("fault %d: %s", len(faults)+1, f)
		if f.Err != nil {
			n.logf("fault %d: %v", len(faults)+1, f.Err)
		}
		faults = append(faults, f)
		return true
	}
	for c := range cycles {
		for i, kind := range Schedule {
			if !next(Quiet, kind, (c+i)%len(n.env.Servers)) {
				return faults
			}
		}
	}
	for _, kind := range FrozenPhase {
		if !next(FrozenQuiet, kind, 0) {
			return faults
		}
	}
	return faults
}

// inject runs one fault: break, wait, heal, then measure how soon each
// server grants a lock again and wait until everything answers.
func (n *Nemesis) inject(ctx context.Context, kind FaultKind, server int) Fault {
	env := n.env
	f := Fault{Kind: kind}
	var (
		target     *Node
		break_     func() error
		heal       func() error
		down       = Outage
		faultyHTTP = -1 // the server at fault, if it is a locklock server
	)
	switch kind {
	case KillEtcd, PauseEtcd, PartitionEtcd, FreezeEtcdLeader, FreezeEtcdFollower:
		leader, err := env.EtcdLeader(ctx)
		if err != nil {
			f.Err = fmt.Errorf("find the etcd leader: %w", err)
			return f
		}
		target = leader
		if kind == FreezeEtcdFollower {
			target = env.Etcd[(slices.Index(env.Etcd, leader)+1)%len(env.Etcd)]
		}
	default:
		target, faultyHTTP = env.Servers[server], server
	}
	f.Target = target.Name
	switch kind {
	case KillEtcd, KillServer:
		break_, heal = target.Kill, target.Restart
		if kind == KillServer {
			down = ServerDown
		}
	case PauseEtcd, PauseServer:
		break_, heal = target.Pause, target.Unpause
	case FreezeEtcdFollower, FreezeEtcdLeader:
		break_, heal, down = target.Pause, target.Unpause, FreezeFor
	case PartitionEtcd:
		break_, heal = target.Disconnect, target.Connect
	}

	f.Injected = time.Now()
	if err := break_(); err != nil {
		f.Err = fmt.Errorf("inject: %w", err)
		return f
	}
	failover := n.probeAll(ctx, f.Injected, faultyHTTP)
	select {
	case <-ctx.Done():
	case <-time.After(down):
	}
	if err := heal(); err != nil {
		f.Err = fmt.Errorf("heal: %w", err)
	}
	f.Healed = time.Now()
	f.Recovery = n.probeAll(ctx, f.Healed, -1).wait()
	f.Failover = failover.wait()
	if err := env.WaitHealthy(time.Minute); err != nil && f.Err == nil {
		f.Err = fmt.Errorf("not healthy a minute after healing: %w", err)
	}
	f.HealthyWait = time.Since(f.Healed)
	return f
}

type probeSet struct {
	wg  sync.WaitGroup
	out []time.Duration
}

func (p *probeSet) wait() []time.Duration { p.wg.Wait(); return p.out }

// probeAll measures, for each server but skip, how long after since an
// acquire of a fresh lock through it succeeds (-1: not within probeGiveUp).
func (n *Nemesis) probeAll(ctx context.Context, since time.Time, skip int) *probeSet {
	p := &probeSet{out: make([]time.Duration, len(n.probes))}
	for i, c := range n.probes {
		if i == skip {
			continue
		}
		p.wg.Go(func() { p.out[i] = probe(ctx, c, since) })
	}
	return p
}

func probe(ctx context.Context, c *client.Client, since time.Time) time.Duration {
	target := client.UUID(newUUID())
	// One secret for every attempt: an attempt that timed out but took
	// effect makes the next one a 200, not a 409.
	secret := rand.Text()
	for time.Since(since) < probeGiveUp && ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, probeTimeout)
		_, err := c.Acquire(rctx, target, client.WithTTL(ttls[0]), client.WithSecret(secret))
		cancel()
		if err == nil {
			return time.Since(since)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return -1
}
