package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
	"github.com/locklock/locklock/transport/client"
)

// storedSlot is the slot as the server holds it.
func (s *testServer) storedSlot(t *testing.T, ns string, target client.Target, slot string) (locklock.Slot, bool) {
	t.Helper()
	id, err := locklock.NewID(ns, target.Kind, target.Name)
	if err != nil {
		t.Fatal(err)
	}
	sl, err := s.Svc.GetSlot(context.Background(), id, slot)
	if errors.Is(err, locklock.ErrSlotNotFound) {
		return locklock.Slot{}, false
	}
	if err != nil {
		t.Fatalf("server-side get of slot %s of %s: %v", slot, id, err)
	}
	return sl, true
}

// TestSemaphoreAcquire: slots fit up to the limit; then semaphore_full with
// the limit, the units in use and a Retry-After; another limit is
// limit_mismatch; a slot's own secret is a retry, before the limit is
// compared.
func TestSemaphoreAcquire(t *testing.T) {
	s := newServer(t)
	c := s.client(t)
	sem := c.Semaphore(client.UUID(strings.ToUpper(u1)), 2)
	if sem.Limit() != 2 || sem.Target() != client.UUID(strings.ToUpper(u1)) {
		t.Errorf("handle: limit %d, target %v", sem.Limit(), sem.Target())
	}
	a, err := sem.Acquire(t.Context(), client.WithTTL(time.Minute), client.WithHolder("w1"))
	if err != nil {
		t.Fatal(err)
	}
	if !a.Created || !a.Protected || len(a.Secret) < 16 || len(a.ID) != locklock.SlotIDLen || a.Limit != 2 || a.Weight != 1 ||
		a.Kind != locklock.KindUUID || a.Name != u1 || a.Namespace != locklock.DefaultNamespace || a.Holder != "w1" ||
		a.FencingToken == 0 || a.ExpiresIn < 59 || a.ExpiresIn > 60 || a.ExpiresAt.Sub(a.AcquiredAt) != time.Minute {
		t.Errorf("slot %+v", a)
	}
	if a.Target() != client.UUID(u1) {
		t.Errorf("Target() = %v", a.Target())
	}
	stored, ok := s.storedSlot(t, locklock.DefaultNamespace, client.UUID(u1), a.ID)
	if !ok || stored.Token != a.FencingToken || !stored.Guard.Admits(a.Secret) || stored.Weight != 1 || stored.Limit != 2 {
		t.Errorf("server-side slot %+v (ok %v) does not match %+v", stored, ok, a)
	}

	b, err := sem.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if b.ID == a.ID || b.Secret == a.Secret || b.FencingToken <= a.FencingToken || !b.Created {
		t.Errorf("second slot %+v after %+v", b, a)
	}

	// Full: the limit, the units in use, and when the first slot expires.
	before := s.hits.Load()
	_, err = sem.Acquire(t.Context())
	checkSentinel(t, err, locklock.ErrSemaphoreFull)
	e := asError(t, err)
	if e.Status != http.StatusConflict || e.Code != "semaphore_full" || e.Limit != 2 || e.InUse != 2 {
		t.Errorf("full: %+v", e)
	}
	if e.RetryAfter < 58*time.Second || e.RetryAfter > time.Minute {
		t.Errorf("RetryAfter %v, want the ~60 s until the first slot expires", e.RetryAfter)
	}
	if n := s.hits.Load() - before; n != 1 {
		t.Errorf("%d requests for a full semaphore; it is not retried", n)
	}

	// Another limit while slots live.
	_, err = c.Semaphore(client.UUID(u1), 3).Acquire(t.Context())
	checkSentinel(t, err, locklock.ErrLimitMismatch)
	if e := asError(t, err); e.Code != "limit_mismatch" || e.Limit != 2 || e.InUse != 0 {
		t.Errorf("mismatch: %+v", e)
	}

	// A slot's own secret is a retry: that slot, unchanged — even with
	// another limit, which is compared after.
	for _, limit := range []int{2, 5} {
		again, err := s.client(t).Semaphore(client.UUID(u1), limit).Acquire(t.Context(), client.WithSecret(a.Secret), client.WithTTL(time.Hour))
		if err != nil {
			t.Fatalf("limit %d: %v", limit, err)
		}
		if again.Created || again.ID != a.ID || again.FencingToken != a.FencingToken || !again.ExpiresAt.Equal(a.ExpiresAt) || again.Secret != a.Secret {
			t.Errorf("limit %d: re-acquire %+v, want %+v unchanged and Created false", limit, again, a)
		}
	}

	// Weights: with b released, a weight of 2 does not fit beside a, 1 does.
	if _, err := sem.Release(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	_, err = sem.Acquire(t.Context(), client.WithWeight(2))
	checkSentinel(t, err, locklock.ErrSemaphoreFull)
	if e := asError(t, err); e.InUse != 1 {
		t.Errorf("InUse %d, want 1", e.InUse)
	}
	if w, err := sem.Acquire(t.Context(), client.WithWeight(1)); err != nil || w.Weight != 1 {
		t.Errorf("weight 1: %+v %v", w, err)
	}

	// A lock may share the semaphore's name.
	if l, err := c.Acquire(t.Context(), client.UUID(u1)); err != nil || !l.Created {
		t.Errorf("a lock beside the semaphore: %+v %v", l, err)
	}
}

// An acquire whose answer was lost is retried with the same secret: the
// server answers 200 with the slot the first attempt took, which is this
// call's own (Created), and no second slot is taken.
func TestSemaphoreAcquireLostReply(t *testing.T) {
	for _, drop := range []bool{false, true} {
		t.Run(map[bool]string{false: "503", true: "dropped connection"}[drop], func(t *testing.T) {
			var lose atomic.Int64
			lose.Store(1)
			s := newServer(t, loseReplies(&lose, drop))
			sem := s.client(t).Semaphore(client.UUID(u1), 3)
			sl, err := sem.Acquire(t.Context(), client.WithWeight(2))
			if err != nil {
				t.Fatal(err)
			}
			if n := s.hits.Load(); n != 2 {
				t.Errorf("%d requests, want 2", n)
			}
			if !sl.Created || sl.Weight != 2 {
				t.Errorf("slot %+v: Created is false, but nobody else knew the client-made secret", sl)
			}
			st, err := sem.Get(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if st.InUse != 2 || len(st.Slots) != 1 || st.Slots[0].ID != sl.ID {
				t.Errorf("semaphore %+v, want the one slot %s", st, sl.ID)
			}
			if stored, ok := s.storedSlot(t, locklock.DefaultNamespace, client.UUID(u1), sl.ID); !ok || !stored.Guard.Admits(sl.Secret) {
				t.Error("the slot is not held with the secret the client returned")
			}
		})
	}
	// With the caller's secret the client cannot tell whose the slot was.
	var lose atomic.Int64
	lose.Store(1)
	s := newServer(t, loseReplies(&lose, false))
	sl, err := s.client(t).Semaphore(client.UUID(u1), 3).Acquire(t.Context(), client.WithSecret("mine"))
	if err != nil || sl.Created || sl.Secret != "mine" {
		t.Errorf("with the caller's secret: %+v %v", sl, err)
	}
	// Unprotected, a failure that may have taken a slot is not retried.
	lose.Store(1)
	_, err = s.client(t).Semaphore(client.UUID(u2), 3).Acquire(t.Context(), client.Unprotected())
	checkSentinel(t, err, locklock.ErrUnavailable)
}

// Limits, weights, lock-delays, durations, names and slot ids are checked
// before any request is sent.
func TestSemaphoreClientSideValidation(t *testing.T) {
	s := newServer(t)
	c := s.client(t)
	good := c.Semaphore(client.UUID(u1), 2)
	cases := []struct {
		name string
		run  func(ctx context.Context) error
		want error
	}{
		{"limit 0", func(ctx context.Context) error { _, err := c.Semaphore(client.UUID(u1), 0).Acquire(ctx); return err }, locklock.ErrInvalidArgument},
		{"limit over the maximum", func(ctx context.Context) error {
			_, err := c.Semaphore(client.UUID(u1), locklock.MaxSemaphoreLimit+1).Acquire(ctx)
			return err
		}, locklock.ErrInvalidArgument},
		{"weight 0", func(ctx context.Context) error { _, err := good.Acquire(ctx, client.WithWeight(0)); return err }, locklock.ErrInvalidArgument},
		{"weight over the limit", func(ctx context.Context) error { _, err := good.Acquire(ctx, client.WithWeight(3)); return err }, locklock.ErrInvalidArgument},
		{"lock-delay", func(ctx context.Context) error {
			_, err := good.Acquire(ctx, client.WithLockDelay(time.Second))
			return err
		}, locklock.ErrInvalidArgument},
		{"negative TTL", func(ctx context.Context) error { _, err := good.Acquire(ctx, client.WithTTL(-time.Second)); return err }, locklock.ErrInvalidArgument},
		{"bad UUID", func(ctx context.Context) error {
			_, err := c.Semaphore(client.UUID("nope"), 2).Acquire(ctx)
			return err
		}, locklock.ErrInvalidUUID},
		{"bad name", func(ctx context.Context) error { _, err := c.Semaphore(client.Key("a/b"), 2).Get(ctx); return err }, locklock.ErrInvalidName},
		{"bad slot id on release", func(ctx context.Context) error {
			_, err := good.Release(ctx, client.Slot{ID: "../x"})
			return err
		}, locklock.ErrSlotNotFound},
		{"no slot id on refresh", func(ctx context.Context) error { _, err := good.Refresh(ctx, client.Slot{}); return err }, locklock.ErrSlotNotFound},
		{"short slot id on patch", func(ctx context.Context) error {
			_, err := good.Patch(ctx, client.Slot{ID: "abc"}, client.WithHolder("h"))
			return err
		}, locklock.ErrSlotNotFound},
		{"slot id with a slash", func(ctx context.Context) error { _, err := good.Slot(ctx, strings.Repeat("a", 21)+"/"); return err }, locklock.ErrSlotNotFound},
		{"hold with a lock-delay", func(ctx context.Context) error {
			h, err := good.Hold(ctx, time.Second, client.WithLockDelay(time.Second))
			if h != nil {
				t.Error("Hold returned a HeldSlot with an error")
			}
			return err
		}, locklock.ErrInvalidArgument},
		{"hold with a bad margin", func(ctx context.Context) error {
			_, err := good.Hold(ctx, time.Second, client.WithSafetyMargin(time.Second))
			return err
		}, locklock.ErrInvalidArgument},
		{"do with a bad limit", func(ctx context.Context) error {
			return c.Semaphore(client.UUID(u1), -1).Do(ctx, func(context.Context, client.Slot) error {
				t.Error("fn ran")
				return nil
			})
		}, locklock.ErrInvalidArgument},
		{"a lock has no weight", func(ctx context.Context) error {
			_, err := c.Acquire(ctx, client.UUID(u1), client.WithWeight(1))
			return err
		}, locklock.ErrInvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run(t.Context())
			checkSentinel(t, err, tc.want)
			var e *client.Error
			if errors.As(err, &e) {
				t.Errorf("got a server error %v; want a client-side one", e)
			}
		})
	}
	if n := s.hits.Load(); n != 0 {
		t.Errorf("%d requests reached the server", n)
	}
}

// TestSemaphoreSlotCalls: refresh, patch, get and release of a slot, with
// the secret the slot came with, and their refusals.
func TestSemaphoreSlotCalls(t *testing.T) {
	s := newServer(t)
	c := s.client(t, client.WithAPIKey(s.ProKey))
	sem := c.Semaphore(client.Key("render-farm"), 4)
	a, err := sem.Acquire(t.Context(), client.WithTTL(time.Minute), client.WithHolder("w1"), client.WithMetadata(map[string]string{"job": "7"}))
	if err != nil {
		t.Fatal(err)
	}
	if a.Namespace != "acme" || a.Kind != locklock.KindKey || a.Name != "render-farm" || a.Metadata["job"] != "7" {
		t.Errorf("slot %+v", a)
	}

	r, err := sem.Refresh(t.Context(), a, client.WithTTL(time.Hour), client.WithHolder("ignored"))
	if err != nil {
		t.Fatal(err)
	}
	if r.ID != a.ID || r.FencingToken != a.FencingToken || !r.AcquiredAt.Equal(a.AcquiredAt) || r.ExpiresIn < 3599 || r.Holder != "w1" ||
		r.Metadata["job"] != "7" || r.Secret != "" || r.Created {
		t.Errorf("refreshed %+v from %+v", r, a)
	}
	for _, opts := range [][]client.LockOption{{client.WithSecret("wrong")}, {client.Unprotected()}} {
		if _, err := sem.Refresh(t.Context(), a, opts...); !errors.Is(err, locklock.ErrSecretMismatch) {
			t.Errorf("refresh with %d options: %v, want ErrSecretMismatch", len(opts), err)
		}
	}
	// A slot as Get lists it carries no secret.
	if _, err := sem.Refresh(t.Context(), client.Slot{ID: a.ID}); !errors.Is(err, locklock.ErrSecretMismatch) {
		t.Errorf("refresh without a secret: %v", err)
	}
	if _, err := sem.Refresh(t.Context(), client.Slot{ID: a.ID}, client.WithSecret(a.Secret)); err != nil {
		t.Errorf("refresh with WithSecret: %v", err)
	}

	p, err := sem.Patch(t.Context(), a, client.WithHolder("w2"), client.WithMetadata(nil))
	if err != nil {
		t.Fatal(err)
	}
	if p.Holder != "w2" || p.Metadata != nil || p.FencingToken != a.FencingToken || p.ExpiresIn < 3590 {
		t.Errorf("patched %+v: new holder, no metadata, the refreshed expiry kept", p)
	}
	stored, _ := s.storedSlot(t, "acme", client.Key("render-farm"), a.ID)
	if stored.Holder != "w2" || stored.Metadata != nil {
		t.Errorf("server-side holder %q, metadata %v", stored.Holder, stored.Metadata)
	}

	got, err := s.client(t, client.WithAPIKey(s.ProKey)).Semaphore(client.Key("render-farm"), 1).Slot(t.Context(), a.ID)
	if err != nil || got.ID != a.ID || got.Holder != "w2" || got.Secret != "" || got.Limit != 4 {
		t.Errorf("Slot: %+v %v", got, err)
	}

	if _, err := sem.Release(t.Context(), a, client.WithSecret("wrong")); !errors.Is(err, locklock.ErrSecretMismatch) {
		t.Errorf("release with a wrong secret: %v", err)
	}
	rel, err := sem.Release(t.Context(), a)
	if err != nil {
		t.Fatal(err)
	}
	if rel.ID != a.ID || rel.Holder != "w2" || rel.FencingToken != a.FencingToken {
		t.Errorf("released %+v", rel)
	}
	for name, err := range map[string]error{
		"release again": func() error { _, err := sem.Release(t.Context(), a); return err }(),
		"refresh":       func() error { _, err := sem.Refresh(t.Context(), a); return err }(),
		"slot":          func() error { _, err := sem.Slot(t.Context(), a.ID); return err }(),
	} {
		checkSentinel(t, err, locklock.ErrSlotNotFound)
		if e := asError(t, err); e.Code != "slot_not_found" {
			t.Errorf("%s: %+v", name, e)
		}
	}
	_, err = sem.Get(t.Context())
	checkSentinel(t, err, locklock.ErrSemaphoreNotFound)

	// An unprotected slot: anyone may release it, with its id alone.
	open, err := sem.Acquire(t.Context(), client.Unprotected())
	if err != nil || open.Protected || open.Secret != "" || !open.Created {
		t.Fatalf("unprotected slot %+v %v", open, err)
	}
	if _, err := s.client(t, client.WithAPIKey(s.ProKey)).Semaphore(client.Key("render-farm"), 4).Release(t.Context(), client.Slot{ID: open.ID}); err != nil {
		t.Errorf("release of an unprotected slot by another: %v", err)
	}

	// Semaphores with custom names need a pro key, as locks do.
	_, err = s.client(t).Semaphore(client.Key("render-farm"), 4).Acquire(t.Context())
	checkSentinel(t, err, locklock.ErrUnauthorized)
}

// TestSemaphoreGetPages: Get lists the slots by fencing token, a page at a
// time; in_use counts them all.
func TestSemaphoreGetPages(t *testing.T) {
	s := newServer(t)
	sem := s.client(t).Semaphore(client.UUID(u1), 10)
	var ids []string
	for i := range 7 {
		sl, err := sem.Acquire(t.Context(), client.WithWeight(1+i%2))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, sl.ID)
	}
	all, err := sem.Get(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if all.Limit != 10 || all.InUse != 10 || len(all.Slots) != 7 || all.Next != "" || all.Name != u1 || all.Namespace != locklock.DefaultNamespace {
		t.Errorf("semaphore %+v", all)
	}
	var paged []string
	var sizes []int
	next := ""
	for page := 0; ; page++ {
		if page > 5 {
			t.Fatal("the pages do not end")
		}
		opts := []client.PageOption{client.WithPageSize(3)}
		if next != "" {
			opts = append(opts, client.WithAfter(next))
		}
		p, err := sem.Get(t.Context(), opts...)
		if err != nil {
			t.Fatal(err)
		}
		if p.InUse != 10 {
			t.Errorf("page %d: in_use %d, want all slots' 10", page, p.InUse)
		}
		sizes = append(sizes, len(p.Slots))
		for _, sl := range p.Slots {
			if sl.Secret != "" {
				t.Errorf("a listed slot has a secret")
			}
			paged = append(paged, sl.ID)
		}
		if p.Next == "" {
			break
		}
		next = p.Next
	}
	if !slices.Equal(paged, ids) {
		t.Errorf("paged %v, want the slots in the order taken %v", paged, ids)
	}
	if !slices.Equal(sizes, []int{3, 3, 1}) {
		t.Errorf("page sizes %v, want [3 3 1]", sizes)
	}
	_, err = sem.Get(t.Context(), client.WithPageSize(locklock.MaxSlotsPage+1))
	checkSentinel(t, err, locklock.ErrInvalidArgument)
}

func TestListSemaphores(t *testing.T) {
	s := newServer(t)
	pro := s.client(t, client.WithAPIKey(s.ProKey))
	for i, name := range []string{"b", "a", "c.d"} {
		sem := pro.Semaphore(client.Key(name), 6)
		for range i + 1 {
			if _, err := sem.Acquire(t.Context(), client.WithWeight(2)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := pro.Semaphore(client.UUID(u1), 1).Acquire(t.Context()); err != nil {
		t.Fatal(err)
	}
	// A lock is no semaphore, and another namespace's semaphores are not ours.
	if _, err := pro.Acquire(t.Context(), client.Key("lock-only")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.client(t, client.WithAPIKey(s.DevKey)).Semaphore(client.UUID(u2), 1).Acquire(t.Context()); err != nil {
		t.Fatal(err)
	}

	_, err := s.client(t).ListSemaphores(t.Context(), client.ListOptions{})
	checkSentinel(t, err, locklock.ErrUnauthorized)

	p, err := pro.ListSemaphores(t.Context(), client.ListOptions{Kind: locklock.KindKey})
	if err != nil {
		t.Fatal(err)
	}
	want := []client.SemaphoreSummary{
		{Name: "a", Kind: locklock.KindKey, Limit: 6, InUse: 4, Slots: 2},
		{Name: "b", Kind: locklock.KindKey, Limit: 6, InUse: 2, Slots: 1},
		{Name: "c.d", Kind: locklock.KindKey, Limit: 6, InUse: 6, Slots: 3},
	}
	if !slices.Equal(p.Semaphores, want) || p.Next != "" {
		t.Errorf("listed %+v next %q, want %+v", p.Semaphores, p.Next, want)
	}
	p, err = pro.ListSemaphores(t.Context(), client.ListOptions{Kind: locklock.KindKey, Limit: 2})
	if err != nil || len(p.Semaphores) != 2 || p.Next == "" {
		t.Fatalf("first page: %+v %v", p, err)
	}
	p, err = pro.ListSemaphores(t.Context(), client.ListOptions{Kind: locklock.KindKey, Limit: 2, After: p.Next})
	if err != nil || len(p.Semaphores) != 1 || p.Semaphores[0].Name != "c.d" || p.Next != "" {
		t.Errorf("second page: %+v %v", p, err)
	}
	if p, err := pro.ListSemaphores(t.Context(), client.ListOptions{Kind: locklock.KindKey, Prefix: "c"}); err != nil || len(p.Semaphores) != 1 {
		t.Errorf("prefix c: %+v %v", p, err)
	}
	// The default kind is uuid, as for List.
	if p, err := pro.ListSemaphores(t.Context(), client.ListOptions{}); err != nil || len(p.Semaphores) != 1 || p.Semaphores[0].Name != u1 {
		t.Errorf("uuid semaphores: %+v %v", p, err)
	}
}

// TestWatchSemaphore: a semaphore's stream starts with its state (null
// while it has no slot, then the semaphore with its slots) and carries its
// slots' events with Slot set; a namespace stream carries them too.
func TestWatchSemaphore(t *testing.T) {
	s := newServer(t)
	c := s.client(t, client.WithAPIKey(s.ProKey))
	target := client.Key("pool")
	w := c.WatchSemaphore(t.Context(), target)
	t.Cleanup(w.Close)
	ns := c.WatchNamespace(t.Context(), client.WatchOptions{Kind: locklock.KindKey, Prefix: "po"})
	t.Cleanup(ns.Close)
	ev := next(t, w)
	if ev.Type != client.EventState || ev.Semaphore != nil || ev.Lock != nil || ev.Slot != nil || ev.ID == "" {
		t.Fatalf("first event %+v, want the state of a semaphore without slots", ev)
	}
	wantEvent(t, next(t, ns), client.EventReady)
	sem := c.Semaphore(target, 3)
	a, err := sem.Acquire(t.Context(), client.WithWeight(2), client.WithHolder("h"))
	if err != nil {
		t.Fatal(err)
	}
	// A lock of the same name is not the semaphore's.
	if _, err := c.Acquire(t.Context(), target); err != nil {
		t.Fatal(err)
	}
	if _, err := sem.Release(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	ev = next(t, w)
	if ev.Type != "acquired" || ev.Slot == nil || ev.Lock != nil || ev.Slot.ID != a.ID || ev.Slot.Weight != 2 || ev.Slot.Holder != "h" || ev.At.IsZero() {
		t.Fatalf("after acquire: %+v", ev)
	}
	ev = next(t, w)
	if ev.Type != "released" || ev.Slot == nil || ev.Slot.ID != a.ID {
		t.Fatalf("after release: %+v", ev)
	}
	nsEv := next(t, ns)
	if nsEv.Type != "acquired" || nsEv.Slot == nil || nsEv.Slot.ID != a.ID || nsEv.Slot.Namespace != "acme" {
		t.Fatalf("namespace stream: %+v, want the slot's acquisition", nsEv)
	}
	if nsEv = next(t, ns); nsEv.Type != "acquired" || nsEv.Lock == nil || nsEv.Slot != nil {
		t.Fatalf("namespace stream: %+v, want the lock's acquisition", nsEv)
	}

	b, err := sem.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	w2 := c.WatchSemaphore(t.Context(), target)
	t.Cleanup(w2.Close)
	ev = next(t, w2)
	if ev.Type != client.EventState || ev.Semaphore == nil || ev.Semaphore.Limit != 3 || ev.Semaphore.InUse != 1 ||
		len(ev.Semaphore.Slots) != 1 || ev.Semaphore.Slots[0].ID != b.ID {
		t.Fatalf("state %+v, want the semaphore with slot %s", ev, b.ID)
	}
}

// The secret is the caller's business: it never goes into JSON.
func TestSlotMarshalHidesSecret(t *testing.T) {
	sl := client.Slot{Namespace: "public", Kind: locklock.KindUUID, Name: u1, ID: "Wq3x9Zt0Rr6uKp1LmN2b4A", Secret: "top-secret-value", Created: true}
	b, err := json.Marshal(sl)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "top-secret-value") || strings.Contains(strings.ToLower(string(b)), "created") || back["slot"] != sl.ID {
		t.Errorf("marshalled slot %s", b)
	}
	if keys := slices.Sorted(maps.Keys(back)); !slices.Equal(keys, []string{"acquired_at", "expires_at", "expires_in", "fencing_token", "kind", "limit", "name", "namespace", "protected", "slot", "weight"}) {
		t.Errorf("fields %v", keys)
	}
}
