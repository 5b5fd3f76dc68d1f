package etcd_test

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/locklock/locklock/engines/etcd"
	"github.com/locklock/locklock/internal/etcdtest"
	"github.com/locklock/locklock/locklock"
)

// TestUnreachableEtcdIsUnavailable: with no etcd to talk to, every operation
// answers ErrUnavailable within the request timeout — never a lock or slot,
// "held", "full" or "not found".
func TestUnreachableEtcdIsUnavailable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there now
	svc := locklock.NewService(etcd.New(etcdtest.Client(t, dead), etcd.WithRequestTimeout(300*time.Millisecond)))
	id := locklock.ID{Namespace: "public", Kind: locklock.KindKey, Name: "nowhere"}
	slot := locklock.NewSlotID()
	ops := map[string]func() error{
		"acquire": func() error { _, _, err := svc.Acquire(t.Context(), locklock.AcquireRequest{ID: id}); return err },
		"wait": func() error {
			_, _, err := svc.Acquire(t.Context(), locklock.AcquireRequest{ID: id, Wait: 5 * time.Second})
			return err
		},
		"get":     func() error { _, err := svc.Get(t.Context(), id); return err },
		"release": func() error { _, err := svc.Release(t.Context(), id, ""); return err },
		"refresh": func() error { _, err := svc.Refresh(t.Context(), id, "", time.Minute); return err },
		"list": func() error {
			_, err := svc.List(t.Context(), locklock.ListRequest{Namespace: "public", Kind: locklock.KindKey})
			return err
		},
		"ready": func() error { return svc.Ready(t.Context()) },
		"acquire slot": func() error {
			_, _, err := svc.AcquireSlot(t.Context(), locklock.SlotRequest{ID: id, Limit: 2})
			return err
		},
		"get semaphore": func() error {
			_, err := svc.GetSemaphore(t.Context(), locklock.SemaphoreRequest{ID: id})
			return err
		},
		"get slot":     func() error { _, err := svc.GetSlot(t.Context(), id, slot); return err },
		"release slot": func() error { _, err := svc.ReleaseSlot(t.Context(), id, slot, ""); return err },
		"refresh slot": func() error {
			_, err := svc.PatchSlot(t.Context(), slot, locklock.PatchRequest{ID: id, TTL: time.Minute})
			return err
		},
		"list semaphores": func() error {
			_, err := svc.ListSemaphores(t.Context(), locklock.ListRequest{Namespace: "public", Kind: locklock.KindKey})
			return err
		},
	}
	for name, op := range ops {
		start := time.Now()
		err := op()
		if !errors.Is(err, locklock.ErrUnavailable) {
			t.Errorf("%s with etcd unreachable: %v, want ErrUnavailable", name, err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%s took %v to fail", name, d)
		}
	}
}

// TestEtcdOutageAndReturn: a lock and a slot taken before etcd went down are
// still there, with their tokens, once etcd is back; meanwhile answers are
// ErrUnavailable.
func TestEtcdOutageAndReturn(t *testing.T) {
	if os.Getenv(etcdtest.EnvEndpoints) != "" {
		t.Skip("stops and restarts an embedded etcd member; LOCKLOCK_ETCD_ENDPOINTS points at an external etcd")
	}
	member := etcdtest.StartCluster(t, 1)[0]
	svc := locklock.NewService(etcd.New(etcdtest.Client(t, member.ClientURL), etcd.WithRequestTimeout(500*time.Millisecond)))
	id := locklock.ID{Namespace: "public", Kind: locklock.KindKey, Name: "outage"}
	held, _, err := svc.Acquire(t.Context(), locklock.AcquireRequest{ID: id, Secret: "s", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	slot, _, err := svc.AcquireSlot(t.Context(), locklock.SlotRequest{ID: id, Limit: 1, Secret: "s", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	member.Stop()
	if _, _, err := svc.AcquireSlot(t.Context(), locklock.SlotRequest{ID: id, Limit: 1}); !errors.Is(err, locklock.ErrUnavailable) {
		t.Errorf("acquire slot during the outage: %v, want ErrUnavailable", err)
	}
	if _, _, err := svc.Acquire(t.Context(), locklock.AcquireRequest{ID: id, Secret: "other"}); !errors.Is(err, locklock.ErrUnavailable) {
		t.Errorf("acquire during the outage: %v, want ErrUnavailable", err)
	}
	if _, err := svc.Release(t.Context(), id, "s"); !errors.Is(err, locklock.ErrUnavailable) {
		t.Errorf("release during the outage: %v, want ErrUnavailable", err)
	}
	member.Restart(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := svc.Get(t.Context(), id)
		if err == nil {
			if got.Token != held.Token {
				t.Errorf("after the outage token %d, want %d", got.Token, held.Token)
			}
			if sl, err := svc.GetSlot(t.Context(), id, slot.ID); err != nil || sl.Token != slot.Token {
				t.Errorf("after the outage the slot: %+v %v, want token %d", sl, err, slot.Token)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd back, but get still fails: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
