// Package etcdprobe keeps an etcd client's requests off members that do not
// answer.
//
// etcd's Go client balances requests round-robin over every endpoint whose
// gRPC connection is up, with no health checks of its own. A member that is
// frozen (SIGSTOP, a stopped VM, a stuck disk) keeps its TCP connections
// open and answers nothing, so each request the balancer hands it waits out
// the caller's timeout; gRPC's keepalive would notice, but not in less than
// 10 s plus its timeout (gRPC raises any shorter ping interval to 10 s).
//
// A Prober asks every configured member for its status on a connection of
// its own, once per interval, and gives the client (Client.SetEndpoints) the
// members that answered within the interval. It does no balancing of its
// own: it only decides which endpoints gRPC's round-robin may use. A member
// that answers again is given back at the next round. The set is never
// empty: when no member answers, the client keeps all of them, as it would
// without the prober. When the client dials through Conns, the prober also
// cuts the connections to a member it leaves out, so that the requests
// already waiting on it end at once instead of at their deadline.
package etcdprobe

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// errNoLeader: the member answers but knows no leader while another member
// does — it is cut off from the others and cannot serve linearizable
// requests.
var errNoLeader = errors.New("answers but knows no leader while another member does")

// Config is what a Prober needs besides its client.
type Config struct {
	// Endpoints are the client's endpoints as configured.
	Endpoints []string
	// Interval is how often every member is asked, and how long it has to
	// answer.
	Interval time.Duration
	// Conns, if the client dials through it, lets the prober cut the
	// connections to a member it leaves out; nil: it does not.
	Conns *Conns
	Log   *slog.Logger
}

// Prober keeps a client's endpoints to the members that answer.
type Prober struct {
	client    *clientv3.Client
	endpoints []string // as configured, in order
	interval  time.Duration
	conns     *Conns
	log       *slog.Logger

	// Touched only by the loop goroutine (and by Stop once it has ended).
	probes  []*memberConn // per endpoint; nil until dialled, and after a failure
	healthy []bool        // per endpoint, as of the last round
	current []string      // what the client was last given

	ctx       context.Context
	cancel    context.CancelFunc
	done      chan struct{}
	startOnce sync.Once
	stopOnce  sync.Once
}

// memberConn is the prober's own connection to one member, so that a probe
// goes to that member and no other.
type memberConn struct {
	maint pb.MaintenanceClient
	conn  io.Closer
}

// New returns a prober for client. Start starts it.
func New(client *clientv3.Client, cfg Config) *Prober {
	ctx, cancel := context.WithCancel(context.Background())
	eps := slices.Clone(cfg.Endpoints)
	healthy := make([]bool, len(eps))
	for i := range healthy {
		healthy[i] = true // the client starts with all of them
	}
	return &Prober{
		client: client, endpoints: eps, interval: cfg.Interval, conns: cfg.Conns, log: cfg.Log,
		probes: make([]*memberConn, len(eps)), healthy: healthy, current: eps,
		ctx: ctx, cancel: cancel, done: make(chan struct{}),
	}
}

// Start runs the first round at once and then one every interval, until
// Stop.
func (p *Prober) Start() {
	p.startOnce.Do(func() { go p.loop() })
}

// Stop ends the probing and closes the prober's connections. The client
// keeps the endpoints it was last given. Stop may be called more than once,
// and without Start.
func (p *Prober) Stop() {
	p.stopOnce.Do(func() {
		p.cancel()
		started := true
		p.startOnce.Do(func() { started = false })
		if started {
			<-p.done
		}
		for i, c := range p.probes {
			if c != nil {
				_ = c.conn.Close()
				p.probes[i] = nil
			}
		}
	})
}

func (p *Prober) loop() {
	defer close(p.done)
	tick := time.NewTicker(p.interval)
	defer tick.Stop()
	for {
		p.round()
		select {
		case <-p.ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// answer is one member's reply to a probe.
type answer struct {
	err    error
	leader uint64 // the member etcd's raft says leads, 0 for none
}

// round probes every member at once, waits for all (at most an interval),
// and gives the client the members that answered.
func (p *Prober) round() {
	answers := make([]answer, len(p.endpoints))
	var wg sync.WaitGroup
	for i, ep := range p.endpoints {
		if p.probes[i] == nil {
			// Dialled here, in the loop goroutine, never concurrently
			// with SetEndpoints: Client.Dial reads the client's endpoint
			// list without its lock. The dial does not block; the
			// connection is made by the first probe.
			conn, err := p.client.Dial(ep)
			if err != nil {
				answers[i].err = err
				continue
			}
			p.probes[i] = &memberConn{maint: pb.NewMaintenanceClient(conn), conn: conn}
		}
		mc := p.probes[i]
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(p.ctx, p.interval)
			defer cancel()
			resp, err := mc.maint.Status(ctx, &pb.StatusRequest{})
			if err != nil {
				answers[i].err = err
				return
			}
			answers[i].leader = resp.Leader
		})
	}
	wg.Wait()
	if p.ctx.Err() != nil {
		return // stopping: the failures are ours
	}
	for i, a := range answers {
		if a.err != nil && p.probes[i] != nil {
			// A fresh connection next time: one to a member that was cut
			// off may hang for good, and the member may be back at
			// another address (a container that was reconnected).
			_ = p.probes[i].conn.Close()
			p.probes[i] = nil
		}
	}
	p.apply(judge(answers))
}

// judge says, per member, whether the client should use it: it answered,
// and it knows a leader or none of those that answered does (during an
// election none does, and the members that answer are still the best bet).
// A failure's reason is in the returned errors.
func judge(answers []answer) []error {
	someLeader := false
	for _, a := range answers {
		if a.err == nil && a.leader != 0 {
			someLeader = true
		}
	}
	out := make([]error, len(answers))
	for i, a := range answers {
		switch {
		case a.err != nil:
			out[i] = a.err
		case a.leader == 0 && someLeader:
			out[i] = errNoLeader
		}
	}
	return out
}

// apply gives the client the endpoints judged healthy (all of them when
// none is) if that differs from what it has, cuts the connections to those
// it newly left out, and logs each change.
func (p *Prober) apply(verdicts []error) {
	var use []string
	for i, err := range verdicts {
		ok := err == nil
		if ok != p.healthy[i] {
			if ok {
				p.log.Info("etcd member answers again", "endpoint", p.endpoints[i])
			} else {
				p.log.Warn("etcd member does not answer", "endpoint", p.endpoints[i], "within", p.interval, "err", err)
			}
			p.healthy[i] = ok
		}
		if ok {
			use = append(use, p.endpoints[i])
		}
	}
	if len(use) == 0 {
		use = p.endpoints
		if !slices.Equal(p.current, use) {
			p.log.Warn("no etcd member answers; requests go to all of them")
		}
	}
	if slices.Equal(p.current, use) {
		return
	}
	before := p.current
	p.current = use
	p.client.SetEndpoints(use...)
	if p.conns == nil {
		return
	}
	// After SetEndpoints, so that the balancer does not hand the member
	// new requests on a fresh connection (it would not anyway: a frozen
	// member never completes gRPC's handshake, and gRPC picks only
	// connections that did).
	for _, ep := range before {
		if slices.Contains(use, ep) {
			continue
		}
		if addr, ok := DialAddress(ep); ok {
			if n := p.conns.Cut(addr); n > 0 {
				p.log.Warn("cut the connections to an etcd member left out; the requests waiting on it fail now instead of at their deadline (reads are retried on another member)",
					"endpoint", ep, "connections", n)
			}
		}
	}
}
