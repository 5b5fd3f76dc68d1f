// Command exactly-once shows the pattern Locklock was made for: handle each
// event from a queue once, although the queue may deliver it more than once.
//
// Before handling an event, a consumer acquires the lock named after the
// event's UUID and never releases it. The first delivery gets the lock and
// is handled; every later one — a redelivery by the queue, the same event
// at a second consumer, a consumer restarted mid-batch — finds the lock held
// (locklock.ErrHeld) and is skipped. Any other error means "unknown": the
// event may or may not have been claimed, so leave it on the queue (do not
// acknowledge it) and let the redelivery find out.
//
// The queue delivers at least once, the lock lets through at most once:
// together, once. (A consumer that dies after claiming an event and before
// finishing it does lose that event; work that must never be lost should
// record its completion in its own storage, in the same transaction.)
//
// Give the locks a TTL longer than the window in which duplicates can arrive
// (here 7 days), so that they clean themselves up afterwards.
//
//	make run &                       # a server on 127.0.0.1:8080
//	go run ./examples/exactly-once -server http://127.0.0.1:8080
//
// The server URL also comes from LOCKLOCK_SERVER, an API key (not needed
// for UUID locks) from LOCKLOCK_API_KEY.
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

// dedupWindow is how long an event's claim lasts: longer than the queue
// can take to redeliver it.
const dedupWindow = 7 * 24 * time.Hour

func main() {
	server := flag.String("server", envOr("LOCKLOCK_SERVER", "http://127.0.0.1:8080"), "Locklock server `URL` (env LOCKLOCK_SERVER)")
	flag.Parse()
	c, err := client.New(*server, client.WithAPIKey(os.Getenv("LOCKLOCK_API_KEY")))
	if err != nil {
		fmt.Fprintln(os.Stderr, "exactly-once:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// A queue of three events that delivers the first one twice. Real
	// events carry their id; new ones here, so that every run starts fresh.
	a, b, d := newUUID(), newUUID(), newUUID()
	if err := consume(ctx, os.Stdout, c, []string{a, b, a, d}, 2); err != nil {
		fmt.Fprintln(os.Stderr, "exactly-once:", err)
		os.Exit(1)
	}
}

// consume has consumers workers take the deliveries (event ids) off one
// queue, and handle each event at most once.
func consume(ctx context.Context, out io.Writer, c *client.Client, deliveries []string, consumers int) error {
	queue := make(chan string, len(deliveries))
	for _, id := range deliveries {
		queue <- id
	}
	close(queue)

	var (
		mu      sync.Mutex // out and unacked
		unacked []string
	)
	report := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, format+"\n", args...)
	}
	var wg sync.WaitGroup
	for n := 1; n <= consumers; n++ {
		wg.Go(func() {
			for id := range queue {
				first, err := claim(ctx, c, id)
				switch {
				case err != nil:
					// Unknown: do not acknowledge, so the queue delivers it again.
					report("cannot claim %s, leaving it on the queue (consumer %d): %v", id, n, err)
					mu.Lock()
					unacked = append(unacked, id)
					mu.Unlock()
				case first:
					report("processing %s (consumer %d)", id, n)
					// … handle the event, then acknowledge it.
				default:
					report("skipping duplicate %s (consumer %d)", id, n)
					// … acknowledge it: it has been handled already.
				}
			}
		})
	}
	wg.Wait()
	if len(unacked) > 0 {
		return fmt.Errorf("%d deliveries left on the queue: %v", len(unacked), unacked)
	}
	return nil
}

// claim reports whether this delivery of the event is the first: it takes
// the event's lock for dedupWindow, for good. false with no error is a
// duplicate; an error means the claim may or may not have happened.
func claim(ctx context.Context, c *client.Client, eventID string) (bool, error) {
	// Acquire gives the lock a random secret of this call's, which makes
	// it safe for the client to retry a request whose answer was lost: the
	// server answers a retry with the same secret with "yours already", so
	// a claim that went through is never mistaken for a duplicate.
	_, err := c.Acquire(ctx, client.UUID(eventID), client.WithTTL(dedupWindow))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, locklock.ErrHeld):
		return false, nil
	default:
		return false, err
	}
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
