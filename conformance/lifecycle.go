package conformance

import (
	"errors"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
)

func testClose(t *testing.T, h Harness) {
	e := newEnv(t, h)
	id := e.id("closing")
	e.acquire(locklock.AcquireRequest{ID: id})
	if err := e.engine.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := e.engine.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	if _, _, err := e.svc.Acquire(e.ctx(), locklock.AcquireRequest{ID: e.id("after")}); !errors.Is(err, locklock.ErrClosed) || !errors.Is(err, locklock.ErrUnavailable) {
		t.Errorf("acquire after close: %v, want ErrClosed (ErrUnavailable)", err)
	}
	if _, err := e.svc.Get(e.ctx(), id); !errors.Is(err, locklock.ErrClosed) {
		t.Errorf("get after close: %v, want ErrClosed", err)
	}
	if err := e.svc.Ready(e.ctx()); err == nil {
		t.Error("ready after close: nil, want an error")
	}
}

func testReopen(t *testing.T, h Harness) {
	if h.Reopen == nil {
		t.Skip("engine keeps nothing across restarts (Harness.Reopen is nil)")
	}
	e := newEnv(t, h)
	kept := e.acquire(locklock.AcquireRequest{ID: e.id("kept"), Secret: "k", TTL: time.Hour})
	gone := e.acquire(locklock.AcquireRequest{ID: e.id("gone"), TTL: time.Hour})
	if _, err := e.svc.Release(e.ctx(), gone.ID, ""); err != nil {
		t.Fatal(err)
	}
	e.engine = h.Reopen(t, e.engine)
	t.Cleanup(func() { _ = e.engine.Close() })
	e.svc = e.newService()

	got, err := e.svc.Get(e.ctx(), kept.ID)
	if err != nil || !sameGrant(got, kept) {
		t.Fatalf("after reopen kept = %+v, %v; want %+v", got, err, kept)
	}
	if !got.Guard.Admits("k") || got.Guard.Admits("other") {
		t.Error("the secret's guard did not survive reopening")
	}
	if _, err := e.svc.Get(e.ctx(), gone.ID); !errors.Is(err, locklock.ErrNotFound) {
		t.Errorf("released lock after reopen: %v, want ErrNotFound", err)
	}
	again := e.acquire(locklock.AcquireRequest{ID: gone.ID})
	if again.Token <= max(kept.Token, gone.Token) {
		t.Errorf("token after reopen %d, want > %d", again.Token, max(kept.Token, gone.Token))
	}
}
