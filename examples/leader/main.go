// Command leader shows leader election on one lock: candidates campaign for
// it by waiting, the winner publishes its address in the lock's metadata
// (a PATCH: a new value, the same term), and followers watch the lock's
// event stream, so they always know the current leader — or that there is
// none — without polling.
//
//	make run &                       # a server on 127.0.0.1:8080
//	go run ./examples/leader -server http://127.0.0.1:8080
//
// Three candidates run in this process (in real life: three processes or
// hosts). Each leader serves one term of -term, then steps down (releases),
// and the next candidate in line takes over; the run ends after -terms
// terms. The lock's fencing token is the term number: a leader hands it to
// whatever it writes, so that a deposed leader's late writes are refused.
// Leaders take the lock with a lock-delay (-lock-delay): a leader that
// crashes without stepping down leaves the lock to expire, and nobody
// takes over until the delay has passed, giving its last writes time to
// land or fail.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/locklock/locklock/locklock"
	"github.com/locklock/locklock/transport/client"
)

func main() {
	server := flag.String("server", envOr("LOCKLOCK_SERVER", "http://127.0.0.1:8080"), "Locklock server `URL` (env LOCKLOCK_SERVER)")
	lockName := flag.String("lock", "", "the election's lock: uuid/<uuid> or key/<name> (default: a new random UUID)")
	candidates := flag.Int("candidates", 3, "how many candidates campaign")
	terms := flag.Int("terms", 3, "how many terms to run before stopping")
	term := flag.Duration("term", 700*time.Millisecond, "how long a leader serves before it steps down")
	ttl := flag.Duration("ttl", 5*time.Second, "the lock's lifetime; Hold refreshes it while the leader serves")
	lockDelay := flag.Duration("lock-delay", 2*time.Second, "after a leader's lock expires (a crash), how long nobody else may take it")
	flag.Parse()

	target := client.UUID(newUUID())
	if *lockName != "" {
		var err error
		if target, err = client.ParseTarget(*lockName); err != nil {
			fmt.Fprintln(os.Stderr, "leader:", err)
			os.Exit(2)
		}
	}
	c, err := client.New(*server, client.WithAPIKey(os.Getenv("LOCKLOCK_API_KEY")))
	if err != nil {
		fmt.Fprintln(os.Stderr, "leader:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := &election{c: c, target: target, term: *term, ttl: *ttl, lockDelay: *lockDelay, terms: *terms, termsLeft: *terms}
	if err := e.run(ctx, *candidates); err != nil {
		fmt.Fprintln(os.Stderr, "leader:", err)
		os.Exit(1)
	}
}

type election struct {
	c         *client.Client
	target    client.Target
	term, ttl time.Duration
	lockDelay time.Duration
	terms     int

	mu        sync.Mutex
	termsLeft int
}

// run starts the follower, then the candidates, and returns once the terms
// are served and the follower has seen the last leader step down.
func (e *election) run(ctx context.Context, candidates int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	follower := make(chan error, 1)
	ready := make(chan struct{})
	go func() { follower <- e.follow(ctx, ready) }()
	select {
	case <-ready:
	case err := <-follower:
		return err
	}
	var wg sync.WaitGroup
	errs := make(chan error, candidates)
	for i := 1; i <= candidates; i++ {
		wg.Go(func() {
			if err := e.campaign(ctx, fmt.Sprintf("candidate-%d", i), fmt.Sprintf("10.0.0.%d:8080", i)); err != nil {
				errs <- err
				cancel()
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	return <-follower
}

// nextTerm takes one of the terms left, or reports that none is.
func (e *election) nextTerm() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.termsLeft == 0 {
		return false
	}
	e.termsLeft--
	return true
}

func (e *election) done() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.termsLeft == 0
}

// campaign waits for the lock; once it has it, it publishes its address,
// serves a term and steps down — until no term is left.
func (e *election) campaign(ctx context.Context, name, addr string) error {
	for !e.done() {
		held, err := e.c.Hold(ctx, e.target, e.ttl,
			client.WithWait(10*time.Second), client.WithHolder(name), client.WithLockDelay(e.lockDelay))
		switch {
		case errors.Is(err, context.Canceled):
			return nil
		case errors.Is(err, locklock.ErrHeld):
			continue // the wait ran out while another served: campaign again
		case err != nil:
			return fmt.Errorf("%s: campaign: %w", name, err)
		}
		if !e.nextTerm() {
			return held.Release(context.WithoutCancel(ctx)) // elected after the last term: hand back
		}
		token := held.Lock().FencingToken
		fmt.Printf("%s elected: term %d\n", name, token)
		// Publish where the leader serves: a new value in the same term.
		l, err := e.c.Patch(held.Context(), e.target, client.WithSecret(held.Lock().Secret),
			client.WithMetadata(map[string]string{"addr": addr}))
		if err != nil {
			return fmt.Errorf("%s: publish address: %w", name, err)
		}
		if l.FencingToken != token {
			return fmt.Errorf("%s: the term changed under the patch: %d, want %d", name, l.FencingToken, token)
		}
		select { // serve the term; a lost lock ends it early
		case <-time.After(e.term):
		case <-held.Context().Done():
			fmt.Printf("%s lost the lock: %v\n", name, context.Cause(held.Context()))
			continue
		}
		fmt.Printf("%s steps down: term %d\n", name, token)
		if err := held.Release(context.WithoutCancel(ctx)); err != nil {
			return fmt.Errorf("%s: step down: %w", name, err)
		}
	}
	return nil
}

// follow watches the lock and says who leads whenever that changes, until
// the leaders of all terms have come and gone. ready is closed once the
// stream is open.
func (e *election) follow(ctx context.Context, ready chan<- struct{}) error {
	w := e.c.Watch(ctx, e.target)
	defer w.Close()
	var last string
	announce := sync.OnceFunc(func() { close(ready) })
	served := 0 // terms whose leader published an address and then ended
	for {
		ev, err := w.Next()
		if err != nil {
			return fmt.Errorf("follower: %w", err)
		}
		if ev.Type == client.EventState {
			announce()
		}
		var now string
		switch ev.Type {
		case client.EventState, "acquired", "refreshed":
			switch l := ev.Lock; {
			case l == nil:
				now = "no leader"
			case l.Metadata["addr"] == "":
				now = fmt.Sprintf("leader %s (term %d), address not yet published", l.Holder, l.FencingToken)
			default:
				now = fmt.Sprintf("leader %s at %s (term %d)", l.Holder, l.Metadata["addr"], l.FencingToken)
			}
		case "released", "expired", "revoked":
			now = "no leader"
			if ev.Lock.Metadata["addr"] != "" {
				served++
			}
		case client.EventReset:
			continue // a state follows
		}
		if now != "" && now != last {
			fmt.Println("follower sees", now)
			last = now
		}
		if served == e.terms {
			return nil
		}
	}
}

func envOr(name, fallback string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return fallback
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
