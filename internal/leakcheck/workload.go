package leakcheck

import (
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
)

// Workload drives a Service through everything that handles a secret —
// acquires, refreshes, a release, a re-acquire, a release and a refresh
// with a wrong secret, a waiter handed a released lock — with distinctive
// secrets, and remembers them, so that an engine's test can then search its
// storage for them.
type Workload struct {
	t       *testing.T
	svc     *locklock.Service
	canary  string
	secrets []string
}

// Run runs the workload on svc; its five held locks stay held (TTL 1 h).
func Run(t *testing.T, svc *locklock.Service) *Workload {
	t.Helper()
	w := &Workload{t: t, svc: svc, canary: "s3cret-canary-" + rand.Text()}
	ctx := t.Context()
	for _, name := range []string{"a", "b", "c", "d", "e"} {
		w.Acquire(name, time.Hour)
	}
	if _, err := svc.Refresh(ctx, w.ID("a"), w.Secret("a"), 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Refresh(ctx, w.ID("b"), w.Secret("b"), 3*time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Release(ctx, w.ID("c"), w.Secret("c")); err != nil {
		t.Fatal(err)
	}
	w.acquire("c", w.Secret("c-again"), time.Hour)
	// Wrong secrets are refused and not kept either.
	wrong := w.remember(w.Secret("wrong"))
	if _, err := svc.Release(ctx, w.ID("d"), wrong); !errors.Is(err, locklock.ErrSecretMismatch) {
		t.Fatalf("release with a wrong secret: %v", err)
	}
	if _, err := svc.Refresh(ctx, w.ID("d"), wrong, time.Hour); !errors.Is(err, locklock.ErrSecretMismatch) {
		t.Fatalf("refresh with a wrong secret: %v", err)
	}
	// A waiter gets a released lock with its own secret.
	waited := w.remember(w.Secret("waiter"))
	got := make(chan error, 1)
	go func() {
		_, _, err := svc.Acquire(ctx, locklock.AcquireRequest{ID: w.ID("e"), Secret: waited, TTL: time.Hour, Wait: time.Minute})
		got <- err
	}()
	for deadline := time.Now().Add(10 * time.Second); svc.Waiters() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the waiter never queued")
		}
	}
	if _, err := svc.Release(ctx, w.ID("e"), w.Secret("e")); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("waiter: %v", err)
	}
	return w
}

// ID is the lock the workload calls name.
func (w *Workload) ID(name string) locklock.ID {
	return locklock.ID{Namespace: locklock.DefaultNamespace, Kind: locklock.KindKey, Name: "at-rest-" + name}
}

// Secret is the workload's secret for what.
func (w *Workload) Secret(what string) string { return w.canary + "-" + what }

// Acquire takes the lock name with its own secret, for steps of an engine's
// own (an expiry and a sweep, say).
func (w *Workload) Acquire(name string, ttl time.Duration) {
	w.t.Helper()
	w.acquire(name, w.Secret(name), ttl)
}

func (w *Workload) acquire(name, secret string, ttl time.Duration) {
	w.t.Helper()
	w.remember(secret)
	if _, created, err := w.svc.Acquire(w.t.Context(), locklock.AcquireRequest{ID: w.ID(name), Secret: secret, TTL: ttl}); err != nil || !created {
		w.t.Fatalf("acquire %s: %v %v", name, created, err)
	}
}

func (w *Workload) remember(secret string) string {
	w.secrets = append(w.secrets, secret)
	return secret
}

// Forms is every form (see Forms) of every secret the workload used.
func (w *Workload) Forms() map[string][]byte {
	forms := make(map[string][]byte)
	for _, s := range w.secrets {
		for name, b := range Forms(s) {
			forms[s+": "+name] = b
		}
	}
	return forms
}
