package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"

	"github.com/locklock/locklock/engines/memory"
	"github.com/locklock/locklock/locklock"
	"github.com/locklock/locklock/transport"
	"github.com/locklock/locklock/transport/client"
)

// A semaphore of limit 2: two slots fit, a third does not; Do keeps at most
// two workers at work at once, the others waiting for room. The server
// here is the real handler on the memory engine; in production it is
// client.New("https://locks.example.com", client.WithAPIKey(key)).
func ExampleSemaphore() {
	engine := memory.New()
	defer engine.Close()
	svc := locklock.NewService(engine)
	defer svc.StopWatching()
	srv := httptest.NewServer(http.StripPrefix(client.APIPrefix, transport.NewHandler(svc)))
	defer srv.Close()

	c, err := client.New(srv.URL)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	renders := c.Semaphore(client.UUID("180da65c-cf80-4997-8574-0c0801817d6f"), 2)

	first, err := renders.Acquire(ctx, client.WithTTL(time.Minute), client.WithHolder("worker-1"))
	if err != nil {
		panic(err)
	}
	second, err := renders.Acquire(ctx, client.WithTTL(time.Minute))
	if err != nil {
		panic(err)
	}
	_, err = renders.Acquire(ctx)
	var full *client.Error
	if errors.Is(err, locklock.ErrSemaphoreFull) && errors.As(err, &full) {
		fmt.Printf("full: %d of %d in use\n", full.InUse, full.Limit)
	}
	state, err := renders.Get(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Println("slots:", len(state.Slots), "first held by", state.Slots[0].Holder)
	for _, s := range []client.Slot{first, second} {
		if _, err := renders.Release(ctx, s); err != nil { // s.Secret proves it ours
			panic(err)
		}
	}

	var running, most atomic.Int32
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			err := renders.Do(ctx, func(ctx context.Context, s client.Slot) error {
				n := running.Add(1)
				defer running.Add(-1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				time.Sleep(20 * time.Millisecond) // the work; ctx ends if the slot may be lost
				return nil
			}, client.WithWait(time.Minute))
			if err != nil {
				panic(err)
			}
		})
	}
	wg.Wait()
	fmt.Println("at most 2 at once:", most.Load() <= 2)
	// Output:
	// full: 2 of 2 in use
	// slots: 2 first held by worker-1
	// at most 2 at once: true
}
