// Command client shows the Go client's Hold: take a lock, keep it alive in
// the background while some work runs, and pass the lock's fencing token
// along with every write the work makes.
//
//	make run &                       # a server on 127.0.0.1:8080
//	go run ./examples/client -server http://127.0.0.1:8080
//	go run ./examples/client -lock key/nightly-report   # needs LOCKLOCK_API_KEY of a pro plan
//
// The server URL also comes from LOCKLOCK_SERVER, the API key from
// LOCKLOCK_API_KEY (an environment variable, not a flag: flags show in ps).
// By default the work (5 steps of 1s) outlasts the lock's TTL (3s), so the
// lock lives on only because Hold refreshes it: watch expires_at move.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
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
	lockName := flag.String("lock", "", "lock to hold: uuid/<uuid> or key/<name> (default: a new random UUID)")
	var w work
	flag.DurationVar(&w.ttl, "ttl", 3*time.Second, "lock lifetime (whole seconds); Hold refreshes it every third")
	flag.DurationVar(&w.step, "step", time.Second, "how long one step of work takes")
	flag.IntVar(&w.steps, "steps", 5, "how many steps of work to do")
	flag.Parse()

	if err := run(*server, *lockName, w); err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		os.Exit(1)
	}
}

func run(server, lockName string, w work) error {
	target := client.UUID(newUUID())
	if lockName != "" {
		var err error
		if target, err = client.ParseTarget(lockName); err != nil {
			return err
		}
	}
	c, err := client.New(server, client.WithAPIKey(os.Getenv("LOCKLOCK_API_KEY")))
	if err != nil {
		return err
	}
	// Ctrl-C ends the work early; the lock is still released.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return holdAndWork(ctx, os.Stdout, c, target, w, &fencedStore{})
}

// work is what holdAndWork does under the lock.
type work struct {
	ttl   time.Duration // the lock's lifetime, renewed every ttl/3
	step  time.Duration // one step of "work"
	steps int
}

// holdAndWork holds target while it does w, writing each step's result to
// store with the lock's fencing token, and releases the lock at the end.
func holdAndWork(ctx context.Context, out io.Writer, c *client.Client, target client.Target, w work, store *fencedStore) (err error) {
	held, err := c.Hold(ctx, target, w.ttl)
	if err != nil {
		return fmt.Errorf("acquire %s: %w", target, err)
	}
	// Release even if the work failed: a lock left behind blocks everyone
	// else until it expires. Not with ctx, which may be what ended the work.
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		switch rerr := held.Release(rctx); {
		case rerr == nil:
			fmt.Fprintf(out, "released %s\n", target)
		case errors.Is(rerr, locklock.ErrNotFound):
			// It expired after it was lost: nothing left to release.
		default:
			err = errors.Join(err, fmt.Errorf("release %s (it expires by itself): %w", target, rerr))
		}
	}()

	lock := held.Lock()
	token := lock.FencingToken // the same for as long as the lock is held
	fmt.Fprintf(out, "holding %s with fencing token %d, TTL %v\n", target, token, w.ttl)

	expires := lock.ExpiresAt
	for i := 1; i <= w.steps; i++ {
		// One step of work. Anything slow that the lock protects should
		// watch held.Context(): it ends *before* the lock can lapse if
		// refreshing fails, so the work stops while it is still safe.
		select {
		case <-held.Context().Done():
			return fmt.Errorf("stopped before step %d: %w", i, context.Cause(held.Context()))
		case <-time.After(w.step):
		}
		if err := store.Write(token, fmt.Sprintf("result of step %d", i)); err != nil {
			return err
		}
		refreshed := ""
		if l := held.Lock(); l.ExpiresAt.After(expires) {
			expires, refreshed = l.ExpiresAt, " (refreshed)"
		}
		fmt.Fprintf(out, "step %d/%d: wrote with fencing token %d; lock expires at %s%s\n",
			i, w.steps, token, expires.Local().Format("15:04:05.000"), refreshed)
	}
	return nil
}

// fencedStore stands for the resource a lock protects (a database row, a
// file in object storage, …). It remembers the highest fencing token it has
// seen and refuses writes with a lower one.
//
// Why the lock alone is not enough: a holder can be paused — a long GC,
// a stopped VM, a network partition — for longer than its TTL. Its lock
// expires, someone else takes it (with a higher token) and writes; then
// the first holder wakes up, still believing it holds the lock, and writes
// too. Only the resource can catch that late write, and the token is how:
// tokens only ever grow for a lock name, so a write with a lower token than
// one already seen comes from a holder whose lock has passed on.
type fencedStore struct {
	mu      sync.Mutex
	highest uint64
	data    []string
}

// errStaleToken: the write comes from a holder whose lock has passed on.
var errStaleToken = errors.New("stale fencing token")

// Write stores value if token is at least the highest seen so far. Equal
// tokens are the same holder writing again, so they pass.
func (s *fencedStore) Write(token uint64, value string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if token < s.highest {
		return fmt.Errorf("%w: write with token %d after token %d", errStaleToken, token, s.highest)
	}
	s.highest = token
	s.data = append(s.data, value)
	return nil
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
