package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
)

// Waiting for a slot over HTTP (API.md §10): first come, first served.

// startSlotWaiter sends a waiting acquire and returns once the Service has
// found that it does not fit, that is, once it is queued.
func startSlotWaiter(t *testing.T, e *env, body string) <-chan *httptest.ResponseRecorder {
	t.Helper()
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() { done <- e.do(post(semU1, body)) }()
	within(t, e.engine.full, "the waiter to find the semaphore full")
	return done
}

// A waiter that does not fit holds back later requests, those without wait
// too, even when they would fit; a retry of a held slot still gets its 200;
// the waiter gets its slot when room comes.
func TestSlotWaitFIFO(t *testing.T) {
	e := newEnv(t)
	reader := e.mustSlot(post(semU1, `{"limit":2,"secret":"r","expires_in":60}`))
	writer := startSlotWaiter(t, e, `{"limit":2,"weight":2,"wait":30,"secret":"w"}`)

	locks, slots := e.snapshot(), e.slots()
	rec := e.do(post(semU1, `{"limit":2}`))
	p := checkRecProblem(t, rec, http.StatusConflict, codeSemaphoreFull)
	if *p.Limit != 2 || *p.InUse != 1 || !strings.Contains(p.Detail, "earlier request waits first") {
		t.Errorf("a reader behind the queued writer: %+v", p)
	}
	wantHeader("Retry-After", "60")(t, e, rec, nil)
	e.assertUnchanged(locks)
	e.assertSlotsUnchanged(slots)

	if rec := e.do(post(semU1, `{"limit":2,"secret":"r"}`)); rec.Code != http.StatusOK || slotBody(t, rec).Slot != reader.Slot {
		t.Errorf("the reader's retry behind the queue: %d %s", rec.Code, rec.Body)
	}
	checkRecProblem(t, e.do(post(semU1, `{"limit":3}`)), http.StatusConflict, codeLimitMismatch)

	e.mustSlot(del(semU1+"/"+reader.Slot, `{"secret":"r"}`))
	rec = within(t, writer, "the writer's answer")
	if rec.Code != http.StatusCreated {
		t.Fatalf("writer: %d %s", rec.Code, rec.Body)
	}
	if got := slotBody(t, rec); got.Weight != 2 || got.FencingToken <= reader.FencingToken || !got.Protected {
		t.Errorf("writer's slot %+v after the reader's %+v", got, reader)
	}
	rec = e.do(post(semU1, `{"limit":2}`))
	if p := checkRecProblem(t, rec, http.StatusConflict, codeSemaphoreFull); *p.InUse != 2 {
		t.Errorf("a reader while the writer holds: %+v", p)
	}
}

func TestSlotWaitGetsExpiredRoom(t *testing.T) {
	e := newEnv(t)
	e.mustSlot(post(semU1, `{"limit":1,"expires_in":10}`))
	done := startSlotWaiter(t, e, `{"limit":1,"wait":30}`)
	e.clock.Advance(10 * time.Second)
	if rec := within(t, done, "the waiter's answer"); rec.Code != http.StatusCreated {
		t.Fatalf("waiter: %d %s", rec.Code, rec.Body)
	}
}

func TestSlotWaitTimesOut(t *testing.T) {
	e := newEnv(t)
	e.mustSlot(post(semU1, `{"limit":1,"expires_in":60}`))
	locks, slots := e.snapshot(), e.slots()
	done := startSlotWaiter(t, e, `{"limit":1,"wait":30}`)
	e.clock.Advance(30 * time.Second)
	rec := within(t, done, "the waiter's answer")
	p := checkRecProblem(t, rec, http.StatusConflict, codeSemaphoreFull)
	if *p.Limit != 1 || *p.InUse != 1 {
		t.Errorf("problem %+v", p)
	}
	wantHeader("Retry-After", "30")(t, e, rec, nil)
	e.assertUnchanged(locks)
	e.assertSlotsUnchanged(slots)
}

// The waiter caps refuse a wait with 503 when the slot does not fit at
// once; one that fits at once is granted all the same.
func TestSlotWaitCaps(t *testing.T) {
	e := newEnvWith(t, []locklock.Option{locklock.WithMaxWaiters(1)})
	e.mustSlot(post(semU1, `{"limit":1}`))
	done := startSlotWaiter(t, e, `{"limit":1,"wait":30}`)

	rec := e.do(post(semPath("uuid", u2), `{"limit":1,"wait":5}`))
	if rec.Code != http.StatusCreated {
		t.Errorf("a wait the caps refuse, for a slot that fits at once: %d %s", rec.Code, rec.Body)
	}
	locks, slots := e.snapshot(), e.slots()
	rec = e.do(post(semPath("uuid", u2), `{"limit":1,"wait":5}`))
	checkRecProblem(t, rec, http.StatusServiceUnavailable, codeUnavailable)
	wantHeader("Retry-After", "1")(t, e, rec, nil)
	e.assertUnchanged(locks)
	e.assertSlotsUnchanged(slots)

	e.svc.StopWaiting()
	checkRecProblem(t, within(t, done, "the queued waiter's answer"), http.StatusServiceUnavailable, codeUnavailable)
}

// A client that hangs up stops its wait, and no slot is taken for it.
func TestSlotWaitClientGone(t *testing.T) {
	e := newEnv(t)
	served := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.h.ServeHTTP(w, r)
		served <- struct{}{}
	}))
	t.Cleanup(srv.Close)
	holder := e.mustSlot(post(semU1, `{"limit":1,"secret":"s1"}`))

	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		r, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+semU1, strings.NewReader(`{"limit":1,"wait":30}`))
		resp, err := srv.Client().Do(r)
		if err == nil {
			resp.Body.Close()
			err = fmt.Errorf("got an answer: %s", resp.Status)
		}
		errc <- err
	}()
	within(t, e.engine.full, "the waiter to find the semaphore full")
	cancel()
	if err := within(t, errc, "the client to give up"); !errors.Is(err, context.Canceled) {
		t.Fatalf("client: %v", err)
	}
	within(t, served, "the handler to return")

	e.mustSlot(del(semU1+"/"+holder.Slot, `{"secret":"s1"}`))
	if slots := e.slots(); len(slots) != 0 {
		t.Fatalf("the gone waiter holds a slot: %+v", slots)
	}
}

// However many acquire at once, the weights granted never exceed the limit.
func TestConcurrentSlotsOverHTTP(t *testing.T) {
	e := newEnv(t)
	srv := httptest.NewServer(e.h)
	t.Cleanup(srv.Close)

	const n, limit = 60, 5
	type answer struct {
		status int
		header http.Header
		body   []byte
	}
	answers := make(chan answer, n)
	var ready, wg sync.WaitGroup
	ready.Add(1)
	for i := range n {
		wg.Go(func() {
			ready.Wait()
			body := fmt.Sprintf(`{"limit":%d,"secret":"client-%d"}`, limit, i)
			resp, err := srv.Client().Post(srv.URL+semU1, "application/json", strings.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			data, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Error(err)
			}
			answers <- answer{resp.StatusCode, resp.Header, data}
		})
	}
	ready.Done()
	wg.Wait()
	close(answers)
	count := map[int]int{}
	for a := range answers {
		count[a.status]++
		if a.status != http.StatusCreated {
			checkProblem(t, a.status, a.header, a.body, http.StatusConflict, codeSemaphoreFull)
		}
	}
	if count[http.StatusCreated] != limit || count[http.StatusConflict] != n-limit {
		t.Errorf("statuses %v, want exactly %d 201 and %d 409", count, limit, n-limit)
	}
	if sem := semaphoreBody(t, e.do(get(semU1))); sem.InUse != limit || len(sem.Slots) != limit {
		t.Errorf("semaphore %+v", sem)
	}
}
