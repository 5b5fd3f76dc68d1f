package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/locklock/locklock/internal/etcdtest"
	"github.com/locklock/locklock/locklock"
)

// slotStory is what one one-semaphore stream has told: its state, then
// its events applied in order.
type slotStory struct {
	limit  int
	live   map[string]locklock.Slot
	ended  map[string]bool
	weight int
	last   locklock.Position
}

func newSlotStory(w *locklock.Watch, limit int) *slotStory {
	s := &slotStory{limit: limit, live: map[string]locklock.Slot{}, ended: map[string]bool{}, last: w.At}
	if st := w.SemaphoreState; st != nil {
		for _, sl := range st.Slots {
			s.live[sl.ID] = sl
			s.weight += sl.Weight
		}
	}
	return s
}

// apply takes one event; an error says the stream contradicts itself: an
// event the state already reflects, one of a slot the story does not
// hold, or more weight than the limit.
func (s *slotStory) apply(ev *locklock.Event) error {
	if !ev.Pos.After(s.last) {
		return fmt.Errorf("%s at %v, not after %v", label(ev), ev.Pos, s.last)
	}
	s.last = ev.Pos
	sl := ev.Slot
	if sl == nil {
		return fmt.Errorf("a lock's event in a semaphore's stream: %s", label(ev))
	}
	cur, held := s.live[sl.ID]
	switch ev.Type {
	case locklock.EventAcquired:
		if held || s.ended[sl.ID] {
			return fmt.Errorf("%s of a slot already held (%v) or ended (%v)", label(ev), held, s.ended[sl.ID])
		}
		s.live[sl.ID] = *sl
		if s.weight += sl.Weight; s.weight > s.limit {
			return fmt.Errorf("%s: weight %d over limit %d", label(ev), s.weight, s.limit)
		}
	case locklock.EventRefreshed:
		if !held || cur.Token != sl.Token {
			return fmt.Errorf("%s of a slot not held (%v, token %d)", label(ev), held, cur.Token)
		}
		s.live[sl.ID] = *sl
	case locklock.EventReleased, locklock.EventExpired:
		if !held || cur.Token != sl.Token {
			return fmt.Errorf("%s of a slot not held (%v, token %d)", label(ev), held, cur.Token)
		}
		delete(s.live, sl.ID)
		s.ended[sl.ID] = true
		s.weight -= cur.Weight
	default:
		return fmt.Errorf("unexpected %s", label(ev))
	}
	return nil
}

// TestSlotStreamsAgreeWithState: while racers on two servers acquire,
// refresh and release slots of one semaphore, and let some expire,
// one-semaphore streams open on both servers again and again. Each
// stream's state and events tell one story: every acquired is of a slot
// neither in the state nor seen before, every other event of a slot the
// story holds, the weights never over the limit — nothing the state
// reflects comes again as an event, and nothing is missing. Once the
// racers are done and the semaphore is empty, a last slot is acquired:
// every story then holds exactly that slot.
func TestSlotStreamsAgreeWithState(t *testing.T) {
	const (
		limit   = 4
		racers  = 6
		churn   = 3 * time.Second
		streams = 16
		// minGrants is how many grants the racers make at least.
		minGrants = 60
	)
	endpoint := etcdtest.Endpoints(t)[0]
	svcs, _ := semServers(t, endpoint, 2)
	id := semID("story")
	ctx := t.Context()

	var (
		wg     sync.WaitGroup
		grants atomic.Int64
		until  = time.Now().Add(churn)
	)
	for i := range racers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 11))
			pick := func() *locklock.Service { return svcs[rng.IntN(len(svcs))] }
			// Until the churn is over and enough slots came and went
			// (a slow etcd takes longer), or a good while has passed.
			for (time.Now().Before(until) || grants.Load() < minGrants && time.Now().Before(until.Add(20*time.Second))) && !t.Failed() {
				ttl, expire := time.Minute, rng.IntN(10) == 0
				if expire {
					ttl = time.Second // left to expire
				}
				sl, _, err := pick().AcquireSlot(ctx, locklock.SlotRequest{ID: id, Limit: limit, Weight: 1 + rng.IntN(2), TTL: ttl})
				if errors.Is(err, locklock.ErrSemaphoreFull) {
					time.Sleep(time.Duration(1+rng.IntN(3)) * time.Millisecond)
					continue
				}
				if err != nil {
					t.Errorf("racer %d: %v", i, err)
					return
				}
				grants.Add(1)
				if expire {
					continue
				}
				if rng.IntN(2) == 0 {
					if _, err := pick().PatchSlot(ctx, sl.ID, locklock.PatchRequest{ID: id, TTL: 2 * time.Minute}); err != nil {
						t.Errorf("racer %d, refresh: %v", i, err)
						return
					}
				}
				time.Sleep(time.Duration(rng.IntN(3)) * time.Millisecond)
				if _, err := pick().ReleaseSlot(ctx, id, sl.ID, ""); err != nil {
					t.Errorf("racer %d, release: %v", i, err)
					return
				}
			}
		})
	}

	// The streams, opened throughout the churn; each told until it has
	// seen the last slot's acquire.
	var (
		readers sync.WaitGroup
		opened  atomic.Int64
		events  atomic.Int64
		states  atomic.Int64
		ends    = make([]*slotStory, streams) // each stream's story once it saw the last slot
	)
	rctx, cancel := context.WithTimeout(ctx, churn+60*time.Second)
	defer cancel()
	for n := range streams {
		time.Sleep(churn / streams)
		w, err := svcs[n%len(svcs)].Watch(rctx, locklock.WatchRequest{Filter: locklock.Filter{ID: &id, Semaphore: true}, Caller: "test"})
		if err != nil {
			t.Errorf("stream %d: %v", n, err)
			continue
		}
		opened.Add(1)
		if w.SemaphoreState != nil {
			states.Add(1)
		}
		readers.Go(func() {
			defer w.Close()
			story := newSlotStory(w, limit)
			for done := false; !done; {
				evs, err := w.Next(rctx)
				if err != nil {
					t.Errorf("stream %d, after %d events: %v", n, events.Load(), err)
					return
				}
				for _, ev := range evs {
					events.Add(1)
					if err := story.apply(ev); err != nil {
						t.Errorf("stream %d (state at %v): %v", n, w.At, err)
						return
					}
					done = done || ev.Type == locklock.EventAcquired && ev.Slot.Holder == "last"
				}
			}
			ends[n] = story
		})
	}
	wg.Wait()
	// The slots left to expire go; then the last slot.
	for emptying := time.Now(); ; {
		_, err := svcs[0].GetSemaphore(ctx, locklock.SemaphoreRequest{ID: id})
		if errors.Is(err, locklock.ErrSemaphoreNotFound) {
			break
		} else if err != nil || time.Since(emptying) > 10*time.Second {
			t.Fatalf("the semaphore did not empty: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	last := mustSlot(t, svcs[1], locklock.SlotRequest{ID: id, Limit: limit, TTL: time.Minute, Holder: "last"})
	readers.Wait()
	for n, story := range ends {
		if story == nil {
			continue // it failed already
		}
		if _, held := story.live[last.ID]; !held || len(story.live) != 1 || story.weight != last.Weight {
			t.Errorf("stream %d ends holding %d slots weighing %d, want only the last one %s", n, len(story.live), story.weight, last.ID)
		}
	}
	t.Logf("%d grants; %d streams (%d with slots in their state) told %d events", grants.Load(), opened.Load(), states.Load(), events.Load())
	if grants.Load() < minGrants || opened.Load() < streams || states.Load() < streams/2 {
		t.Errorf("%d grants, %d streams, %d with a state: the test did not race", grants.Load(), opened.Load(), states.Load())
	}
}
