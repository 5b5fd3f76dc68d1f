package client_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
	"github.com/locklock/locklock/transport/client"
)

func TestDoRunsWithLockHeld(t *testing.T) {
	cases := []struct {
		name     string
		opts     []client.LockOption
		lifetime time.Duration
	}{
		{"default TTL", nil, client.DefaultHoldTTL},
		{"WithTTL", []client.LockOption{client.WithTTL(5 * time.Second)}, 5 * time.Second},
		{"WithTTL rounded up", []client.LockOption{client.WithTTL(2500 * time.Millisecond)}, 3 * time.Second},
		{"caller's secret", []client.LockOption{client.WithSecret("mine")}, client.DefaultHoldTTL},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t)
			target := client.UUID(u1)
			other := s.client(t)
			ran := false
			err := s.client(t).Do(t.Context(), target, func(ctx context.Context, l client.Lock) error {
				ran = true
				if ctx.Err() != nil {
					t.Errorf("fn's context is over: %v", context.Cause(ctx))
				}
				if !l.Created || l.Secret == "" || l.FencingToken == 0 || l.Name != u1 {
					t.Errorf("fn got %+v", l)
				}
				stored, ok := s.stored(t, locklock.DefaultNamespace, target)
				if !ok || stored.Token != l.FencingToken || !stored.Guard.Admits(l.Secret) {
					t.Errorf("server-side %+v (held %v)", stored, ok)
				}
				if got := stored.ExpiresAt.Sub(stored.AcquiredAt); got != tc.lifetime {
					t.Errorf("lifetime %v, want %v", got, tc.lifetime)
				}
				if _, err := other.Acquire(ctx, target); !errors.Is(err, locklock.ErrHeld) {
					t.Errorf("a concurrent acquire inside fn: %v, want ErrHeld", err)
				}
				return nil
			}, tc.opts...)
			if err != nil || !ran {
				t.Fatalf("Do: %v (fn ran: %v)", err, ran)
			}
			if _, ok := s.stored(t, locklock.DefaultNamespace, target); ok {
				t.Error("Do left the lock held")
			}
		})
	}
}

func TestDoReturnsFnError(t *testing.T) {
	s := newServer(t)
	errFn := errors.New("report failed")
	err := s.client(t).Do(t.Context(), client.UUID(u1), func(context.Context, client.Lock) error { return errFn })
	if !errors.Is(err, errFn) || errors.Is(err, client.ErrLost) {
		t.Errorf("Do: %v, want fn's error", err)
	}
	if _, ok := s.stored(t, locklock.DefaultNamespace, client.UUID(u1)); ok {
		t.Error("Do left the lock held after fn failed")
	}
}

func TestDoHeld(t *testing.T) {
	s := newServer(t)
	if _, err := s.client(t).Acquire(t.Context(), client.UUID(u1)); err != nil {
		t.Fatal(err)
	}
	err := s.client(t).Do(t.Context(), client.UUID(u1), func(context.Context, client.Lock) error {
		t.Error("fn ran without the lock")
		return nil
	})
	if !errors.Is(err, locklock.ErrHeld) {
		t.Errorf("Do: %v, want ErrHeld", err)
	}
}

// fn that succeeds after the lock was lost did not have it throughout: Do
// says so, and does not release the new holder's lock.
func TestDoLost(t *testing.T) {
	errFn := errors.New("fn's own error")
	for _, fnErr := range []error{nil, errFn} {
		t.Run(map[bool]string{true: "fn succeeds", false: "fn fails"}[fnErr == nil], func(t *testing.T) {
			t.Parallel()
			s := newServer(t)
			target := client.UUID(u1)
			other := s.client(t)
			var thief client.Lock
			err := s.client(t).Do(t.Context(), target, func(ctx context.Context, l client.Lock) error {
				// The thief works in the test's context: fn's ends the
				// moment Do's watch sees the release.
				if _, err := other.Release(t.Context(), target, client.WithSecret(l.Secret)); err != nil {
					t.Error(err)
					return err
				}
				var err error
				if thief, err = other.Acquire(t.Context(), target, client.WithTTL(time.Minute)); err != nil {
					t.Error(err)
					return err
				}
				select {
				case <-ctx.Done():
				case <-time.After(3 * time.Second):
					t.Error("fn's context is live after the lock was taken")
				}
				if !errors.Is(context.Cause(ctx), client.ErrLost) {
					t.Errorf("fn's context ended with %v, want ErrLost", context.Cause(ctx))
				}
				return fnErr
			}, client.WithTTL(time.Second))
			if fnErr != nil {
				if !errors.Is(err, errFn) {
					t.Errorf("Do: %v, want fn's error", err)
				}
			} else if !errors.Is(err, client.ErrLost) || !lostToAnother(err) {
				t.Errorf("Do: %v, want ErrLost (released, or secret mismatch)", err)
			}
			if got, err := other.Get(t.Context(), target); err != nil || got.FencingToken != thief.FencingToken {
				t.Errorf("the new holder's lock: %+v %v", got, err)
			}
		})
	}
}

// Do releases the lock even when its context ended while fn ran.
func TestDoReleasesAfterCancel(t *testing.T) {
	s := newServer(t)
	ctx, cancel := context.WithCancel(t.Context())
	err := s.client(t).Do(ctx, client.UUID(u1), func(fctx context.Context, _ client.Lock) error {
		cancel()
		<-fctx.Done()
		return fctx.Err()
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Do: %v", err)
	}
	if _, ok := s.stored(t, locklock.DefaultNamespace, client.UUID(u1)); ok {
		t.Error("Do left the lock held after its context ended")
	}
}

// A panic in fn stops the refreshing and frees the lock on its way up.
func TestDoPanic(t *testing.T) {
	s := newServer(t)
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recovered %v, want fn's panic", r)
			}
		}()
		_ = s.client(t).Do(t.Context(), client.UUID(u1), func(context.Context, client.Lock) error { panic("boom") }, client.WithTTL(time.Second))
	}()
	if _, ok := s.stored(t, locklock.DefaultNamespace, client.UUID(u1)); ok {
		t.Error("the lock is still held after fn panicked")
	}
	n := s.patches()
	time.Sleep(500 * time.Millisecond)
	if s.patches() != n {
		t.Error("refreshes went on after fn panicked")
	}
}

// One Client shared by many goroutines: exactly one of them wins a race for
// a lock.
func TestConcurrentAcquire(t *testing.T) {
	s := newServer(t)
	c := s.client(t)
	const n = 32
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		locks   = make([]client.Lock, n)
		errs    = make([]error, n)
		targets = client.UUID(u1)
	)
	for i := range n {
		wg.Go(func() {
			<-start
			locks[i], errs[i] = c.Acquire(t.Context(), targets, client.WithTTL(time.Minute))
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i := range n {
		switch {
		case errs[i] == nil && locks[i].Created:
			if winner >= 0 {
				t.Errorf("goroutines %d and %d both created the lock", winner, i)
			}
			winner = i
		case errs[i] == nil:
			t.Errorf("goroutine %d: %+v without Created", i, locks[i])
		case !errors.Is(errs[i], locklock.ErrHeld):
			t.Errorf("goroutine %d: %v, want ErrHeld", i, errs[i])
		}
	}
	if winner < 0 {
		t.Fatal("nobody got the lock")
	}
	stored, _ := s.stored(t, locklock.DefaultNamespace, targets)
	if stored.Token != locks[winner].FencingToken || !stored.Guard.Admits(locks[winner].Secret) {
		t.Errorf("the server's holder %+v is not the winner %+v", stored, locks[winner])
	}

	// And many different locks at once, through the same client.
	ids := make([]string, n)
	for i := range ids {
		ids[i] = newUUID(t)
	}
	for i := range n {
		wg.Go(func() {
			l, err := c.Acquire(t.Context(), client.UUID(ids[i]))
			if err != nil || !l.Created {
				t.Errorf("acquire %s: %+v %v", ids[i], l, err)
				return
			}
			if _, err := c.Refresh(t.Context(), l.Target(), client.WithSecret(l.Secret), client.WithTTL(time.Minute)); err != nil {
				t.Errorf("refresh %s: %v", ids[i], err)
			}
			if _, err := c.Release(t.Context(), l.Target(), client.WithSecret(l.Secret)); err != nil {
				t.Errorf("release %s: %v", ids[i], err)
			}
		})
	}
	wg.Wait()
	for _, id := range ids {
		if _, ok := s.stored(t, locklock.DefaultNamespace, client.UUID(id)); ok {
			t.Errorf("%s still held", id)
		}
	}
}

// lostToAnother says whether a loss cause is one of the ways a lock released
// and taken by someone else shows: Hold's watch sees the release (not
// found) or, if it connected late, the new holder (held); or a refresh hits
// the new holder's secret (secret mismatch) — whichever comes first.
func lostToAnother(err error) bool {
	return errors.Is(err, locklock.ErrNotFound) || errors.Is(err, locklock.ErrHeld) || errors.Is(err, locklock.ErrSecretMismatch)
}
