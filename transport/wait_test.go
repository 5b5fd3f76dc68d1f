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

// within fails the test if ch yields nothing in real time; the service's
// clock is manual, so only the goroutines' scheduling takes real time.
func within[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// startWaiter sends a waiting acquire for u1 and returns once the Service
// has found the lock held, that is, once the request is really waiting.
func startWaiter(t *testing.T, e *env, body string) <-chan *httptest.ResponseRecorder {
	t.Helper()
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() { done <- e.do(post(uuidPath(u1), body)) }()
	within(t, e.engine.held, "the waiter to find the lock held")
	return done
}

func TestWaitGetsReleasedLock(t *testing.T) {
	e := newEnv(t)
	holder := e.must(post(uuidPath(u1), secretS1))
	done := startWaiter(t, e, `{"secret":"s2","wait":30}`)

	e.must(del(uuidPath(u1), `{"secret":"s1"}`))
	rec := within(t, done, "the waiter's answer")
	if rec.Code != http.StatusCreated {
		t.Fatalf("waiter: %d %s", rec.Code, rec.Body)
	}
	if got := lockBody(t, rec); got.FencingToken <= holder.FencingToken || !got.Protected {
		t.Errorf("waiter's lock %+v after holder %+v", got, holder)
	}
}

func TestWaitGetsExpiredLock(t *testing.T) {
	e := newEnv(t)
	e.must(post(uuidPath(u1), `{"secret":"s1","expires_in":10}`))
	done := startWaiter(t, e, `{"wait":30}`)

	e.clock.Advance(10 * time.Second)
	if rec := within(t, done, "the waiter's answer"); rec.Code != http.StatusCreated {
		t.Fatalf("waiter: %d %s", rec.Code, rec.Body)
	}
}

func TestWaitTimesOut(t *testing.T) {
	e := newEnv(t)
	e.must(post(uuidPath(u1), secretS1))
	before := e.snapshot()
	done := startWaiter(t, e, `{"secret":"s2","wait":30}`)

	e.clock.Advance(30 * time.Second)
	rec := within(t, done, "the waiter's answer")
	p := checkRecProblem(t, rec, http.StatusConflict, codeLockHeld)
	if p.ExpiresAt != "2026-11-26T15:05:05.123Z" || rec.Header().Get("Retry-After") == "" {
		t.Errorf("problem %+v, Retry-After %q", p, rec.Header().Get("Retry-After"))
	}
	e.assertUnchanged(before)
}

func TestWaitWhileShuttingDown(t *testing.T) {
	t.Run("already stopped", func(t *testing.T) {
		e := newEnv(t)
		e.must(post(uuidPath(u1), secretS1))
		e.svc.StopWaiting()
		rec := e.do(post(uuidPath(u1), `{"wait":5}`))
		checkRecProblem(t, rec, http.StatusServiceUnavailable, codeUnavailable)
		wantHeader("Retry-After", "1")(t, e, rec, nil)
	})
	t.Run("stopped during the wait", func(t *testing.T) {
		e := newEnv(t)
		e.must(post(uuidPath(u1), secretS1))
		done := startWaiter(t, e, `{"wait":5}`)
		e.svc.StopWaiting()
		checkRecProblem(t, within(t, done, "the waiter's answer"), http.StatusServiceUnavailable, codeUnavailable)
	})
}

// A client that hangs up stops its wait: it gets nothing, and the lock is
// not taken on its behalf when the holder lets go.
func TestWaitClientGone(t *testing.T) {
	e := newEnv(t)
	served := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.h.ServeHTTP(w, r)
		served <- struct{}{}
	}))
	t.Cleanup(srv.Close)
	holder := e.must(post(uuidPath(u1), secretS1))

	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		r, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+uuidPath(u1), strings.NewReader(`{"secret":"s2","wait":30}`))
		resp, err := srv.Client().Do(r)
		if err == nil {
			resp.Body.Close()
			err = fmt.Errorf("got an answer: %s", resp.Status)
		}
		errc <- err
	}()
	within(t, e.engine.held, "the waiter to find the lock held")
	cancel()
	if err := within(t, errc, "the client to give up"); !errors.Is(err, context.Canceled) {
		t.Fatalf("client: %v", err)
	}
	within(t, served, "the handler to return")

	if l, err := e.get("public", locklock.KindUUID, u1); err != nil || l.Token != holder.FencingToken {
		t.Fatalf("holder's lock: %+v, %v", l, err)
	}
	e.must(del(uuidPath(u1), `{"secret":"s1"}`))
	if l, err := e.get("public", locklock.KindUUID, u1); !errors.Is(err, locklock.ErrNotFound) {
		t.Fatalf("the gone waiter holds the lock: %+v, %v", l, err)
	}
}

func TestConcurrentAcquireOverHTTP(t *testing.T) {
	e := newEnv(t)
	srv := httptest.NewServer(e.h)
	t.Cleanup(srv.Close)

	const n = 100
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
			body := fmt.Sprintf(`{"secret":"client-%d"}`, i)
			resp, err := srv.Client().Post(srv.URL+uuidPath(u1), "application/json", strings.NewReader(body))
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
			checkProblem(t, a.status, a.header, a.body, http.StatusConflict, codeLockHeld)
		}
	}
	if count[http.StatusCreated] != 1 || count[http.StatusConflict] != n-1 {
		t.Errorf("statuses %v, want exactly one 201 and %d 409", count, n-1)
	}
}
