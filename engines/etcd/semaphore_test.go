package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/locklock/locklock/engines/etcd"
	"github.com/locklock/locklock/internal/etcdtest"
	"github.com/locklock/locklock/locklock"
)

// Semaphores (API.md §10) on etcd, through the Service and across servers:
// several engines, each with its own client, on one prefix.

func semID(name string) locklock.ID {
	return locklock.ID{Namespace: "public", Kind: locklock.KindKey, Name: name}
}

// semServers returns n Services on one prefix of endpoint, each on an engine
// with its own client (n locklock servers), and the engines.
func semServers(t *testing.T, endpoint string, n int) ([]*locklock.Service, []*etcd.Engine) {
	t.Helper()
	prefix := uniquePrefix("sem")
	var (
		svcs    []*locklock.Service
		engines []*etcd.Engine
	)
	for range n {
		e := etcd.New(etcdtest.Client(t, endpoint), etcd.WithPrefix(prefix))
		t.Cleanup(func() { _ = e.Close() })
		svcs = append(svcs, locklock.NewService(e))
		engines = append(engines, e)
	}
	return svcs, engines
}

func mustSlot(t *testing.T, s *locklock.Service, req locklock.SlotRequest) locklock.Slot {
	t.Helper()
	sl, created, err := s.AcquireSlot(t.Context(), req)
	if err != nil || !created {
		t.Fatalf("acquire a slot of %s (limit %d, weight %d): created=%v err=%v", req.ID.Name, req.Limit, req.Weight, created, err)
	}
	return sl
}

func wantFull(t *testing.T, err error, inUse, limit int) *locklock.FullError {
	t.Helper()
	var full *locklock.FullError
	if !errors.As(err, &full) || !errors.Is(err, locklock.ErrSemaphoreFull) {
		t.Fatalf("got %v, want semaphore_full", err)
	}
	if full.InUse != inUse || full.Limit != limit {
		t.Fatalf("full: in use %d of %d, want %d of %d", full.InUse, full.Limit, inUse, limit)
	}
	return full
}

// TestSemaphores shares one etcd among its sub-tests, each on a prefix of
// its own.
func TestSemaphores(t *testing.T) {
	endpoint := etcdtest.Endpoints(t)[0]

	// A slot fits or not by weight; a limit other than the live slots' is
	// a mismatch; a retry with a live slot's secret gets that slot back
	// unchanged — before the limit is even looked at; the last slot gone,
	// the next acquire sets the limit afresh. Through two servers.
	t.Run("fit_full_mismatch_retry", func(t *testing.T) {
		svcs, _ := semServers(t, endpoint, 2)
		a, b := svcs[0], svcs[1]
		id := semID("render-farm")
		first := mustSlot(t, a, locklock.SlotRequest{ID: id, Limit: 3, Weight: 2, Secret: "first", TTL: time.Minute, Holder: "w1", Metadata: map[string]string{"k": "v"}})
		if !first.Protected() || first.Holder != "w1" || first.Metadata["k"] != "v" || first.Limit != 3 || first.Weight != 2 || !locklock.ValidSlotID(first.ID) {
			t.Fatalf("first slot %+v", first)
		}
		second := mustSlot(t, b, locklock.SlotRequest{ID: id, Limit: 3, TTL: time.Hour})
		if second.Token <= first.Token {
			t.Fatalf("second token %d, not above the first's %d", second.Token, first.Token)
		}
		_, _, err := a.AcquireSlot(t.Context(), locklock.SlotRequest{ID: id, Limit: 3})
		full := wantFull(t, err, 3, 3)
		if !full.FreesAt.Equal(first.ExpiresAt) {
			t.Errorf("full: frees at %v, want the earliest expiry %v", full.FreesAt, first.ExpiresAt)
		}
		_, _, err = b.AcquireSlot(t.Context(), locklock.SlotRequest{ID: id, Limit: 4})
		var mismatch *locklock.LimitMismatchError
		if !errors.As(err, &mismatch) || mismatch.Limit != 3 || mismatch.Asked != 4 {
			t.Fatalf("limit 4 against 3: %v, want limit_mismatch with limit 3", err)
		}
		// Retries, through the other server: a mismatching limit, a
		// weight that would not fit.
		for _, req := range []locklock.SlotRequest{
			{ID: id, Limit: 4, Secret: "first"},
			{ID: id, Limit: 3, Weight: 3, Secret: "first"},
		} {
			got, created, err := b.AcquireSlot(t.Context(), req)
			if err != nil || created || got.ID != first.ID || got.Token != first.Token || !got.ExpiresAt.Equal(first.ExpiresAt) || got.Holder != "w1" {
				t.Fatalf("retry %+v: %+v created=%v err=%v, want the first slot unchanged", req, got, created, err)
			}
		}
		// A release makes room for its weight.
		if _, err := b.ReleaseSlot(t.Context(), id, first.ID, "first"); err != nil {
			t.Fatal(err)
		}
		third := mustSlot(t, b, locklock.SlotRequest{ID: id, Limit: 3, Weight: 2})
		if third.Token <= second.Token {
			t.Fatalf("third token %d, not above %d", third.Token, second.Token)
		}
		for _, sl := range []locklock.Slot{second, third} {
			if _, err := a.ReleaseSlot(t.Context(), id, sl.ID, ""); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := a.GetSemaphore(t.Context(), locklock.SemaphoreRequest{ID: id}); !errors.Is(err, locklock.ErrSemaphoreNotFound) {
			t.Fatalf("semaphore without slots: %v, want semaphore_not_found", err)
		}
		fresh := mustSlot(t, a, locklock.SlotRequest{ID: id, Limit: 5, Weight: 5})
		if fresh.Token <= third.Token {
			t.Fatalf("token after the semaphore was gone %d, not above %d", fresh.Token, third.Token)
		}
		// A lock of the same name is another thing altogether.
		mustAcquire(t, b, locklock.AcquireRequest{ID: id})
	})

	// Tokens rise per semaphore across servers, and across a restart (a new
	// engine and client on the same prefix); two semaphores' tokens
	// interleave but each rises.
	t.Run("tokens_rise", func(t *testing.T) {
		svcs, engines := semServers(t, endpoint, 3)
		ids := []locklock.ID{semID("tok-a"), semID("tok-b")}
		last := map[locklock.ID]uint64{}
		acquire := func(s *locklock.Service, id locklock.ID) {
			sl := mustSlot(t, s, locklock.SlotRequest{ID: id, Limit: 100})
			if sl.Token <= last[id] {
				t.Fatalf("%s: token %d after %d", id.Name, sl.Token, last[id])
			}
			last[id] = sl.Token
		}
		for i := range 12 {
			acquire(svcs[i%3], ids[i%2])
		}
		_ = engines[0].Close()
		e := etcd.New(etcdtest.Client(t, endpoint), etcd.WithPrefix(engines[0].Prefix()))
		t.Cleanup(func() { _ = e.Close() })
		restarted := locklock.NewService(e)
		acquire(restarted, ids[0])
		acquire(restarted, ids[1])
	})

	// Release and refresh need the secret of a protected slot, through any
	// server; a refresh moves the expiry and keeps the token; a PATCH of
	// holder and metadata keeps the expiry; a released slot is gone.
	t.Run("release_refresh_allow", func(t *testing.T) {
		svcs, _ := semServers(t, endpoint, 2)
		a, b := svcs[0], svcs[1]
		id := semID("allow")
		sl := mustSlot(t, a, locklock.SlotRequest{ID: id, Limit: 2, Secret: "right", TTL: time.Minute, Holder: "h1"})
		for _, secret := range []string{"", "wrong"} {
			if _, err := b.ReleaseSlot(t.Context(), id, sl.ID, secret); !errors.Is(err, locklock.ErrSecretMismatch) {
				t.Fatalf("release with secret %q: %v, want secret_mismatch", secret, err)
			}
			if _, err := b.PatchSlot(t.Context(), sl.ID, locklock.PatchRequest{ID: id, Secret: secret, TTL: time.Hour}); !errors.Is(err, locklock.ErrSecretMismatch) {
				t.Fatalf("refresh with secret %q: %v, want secret_mismatch", secret, err)
			}
		}
		got, err := a.GetSlot(t.Context(), id, sl.ID)
		if err != nil || !got.ExpiresAt.Equal(sl.ExpiresAt) {
			t.Fatalf("after refused refreshes: %+v %v, want expiry %v", got, err, sl.ExpiresAt)
		}
		refreshed, err := b.PatchSlot(t.Context(), sl.ID, locklock.PatchRequest{ID: id, Secret: "right", TTL: time.Hour})
		if err != nil || refreshed.Token != sl.Token || refreshed.ExpiresAt.Sub(sl.ExpiresAt) < 58*time.Minute || refreshed.Holder != "h1" {
			t.Fatalf("refresh: %+v %v, want token %d and an hour's expiry", refreshed, err, sl.Token)
		}
		h2 := "h2"
		patched, err := a.PatchSlot(t.Context(), sl.ID, locklock.PatchRequest{ID: id, Secret: "right", Holder: &h2, Metadata: map[string]string{"job": "7"}, SetMetadata: true})
		if err != nil || patched.Holder != "h2" || patched.Metadata["job"] != "7" || !patched.ExpiresAt.Equal(refreshed.ExpiresAt) || patched.Token != sl.Token {
			t.Fatalf("patch: %+v %v", patched, err)
		}
		got, err = b.GetSlot(t.Context(), id, sl.ID)
		if err != nil || got.Holder != "h2" || got.Metadata["job"] != "7" || !got.ExpiresAt.Equal(refreshed.ExpiresAt) || !got.Protected() || got.Limit != 2 || got.Weight != 1 {
			t.Fatalf("read back through the other server: %+v %v", got, err)
		}
		released, err := b.ReleaseSlot(t.Context(), id, sl.ID, "right")
		if err != nil || released.ID != sl.ID || released.Token != sl.Token {
			t.Fatalf("release: %+v %v", released, err)
		}
		for _, s := range svcs {
			if _, err := s.ReleaseSlot(t.Context(), id, sl.ID, "right"); !errors.Is(err, locklock.ErrSlotNotFound) {
				t.Fatalf("second release: %v, want slot_not_found", err)
			}
			if _, err := s.GetSlot(t.Context(), id, sl.ID); !errors.Is(err, locklock.ErrSlotNotFound) {
				t.Fatalf("get after release: %v, want slot_not_found", err)
			}
			if _, err := s.PatchSlot(t.Context(), sl.ID, locklock.PatchRequest{ID: id, Secret: "right", TTL: time.Hour}); !errors.Is(err, locklock.ErrSlotNotFound) {
				t.Fatalf("refresh after release: %v, want slot_not_found", err)
			}
		}
		// Without a secret anyone may release it.
		open := mustSlot(t, a, locklock.SlotRequest{ID: id, Limit: 2})
		if _, err := b.ReleaseSlot(t.Context(), id, open.ID, "anything"); err != nil {
			t.Fatalf("release of an unprotected slot: %v", err)
		}
	})

	// GetSemaphore lists the live slots by token, whichever server took
	// them, with limit and in_use; the Service pages them by token.
	t.Run("get_semaphore_order", func(t *testing.T) {
		svcs, _ := semServers(t, endpoint, 3)
		id := semID("order")
		var tokens []uint64
		for i := range 6 {
			sl := mustSlot(t, svcs[i%3], locklock.SlotRequest{ID: id, Limit: 20, Weight: 1 + i%3, Holder: fmt.Sprintf("w%d", i)})
			tokens = append(tokens, sl.Token)
		}
		sem, err := svcs[1].GetSemaphore(t.Context(), locklock.SemaphoreRequest{ID: id})
		if err != nil {
			t.Fatal(err)
		}
		var got []uint64
		for _, sl := range sem.Slots {
			got = append(got, sl.Token)
		}
		if sem.Limit != 20 || sem.InUse != 12 || !slices.Equal(got, tokens) || sem.Next != "" || sem.Revision == 0 {
			t.Fatalf("semaphore: limit %d, in use %d, tokens %v (next %q, revision %d); want 20, 12, %v and a revision", sem.Limit, sem.InUse, got, sem.Next, sem.Revision, tokens)
		}
		var paged []uint64
		after := ""
		for range 4 {
			page, err := svcs[2].GetSemaphore(t.Context(), locklock.SemaphoreRequest{ID: id, Limit: 4, After: after})
			if err != nil {
				t.Fatal(err)
			}
			for _, sl := range page.Slots {
				paged = append(paged, sl.Token)
			}
			if after = page.Next; after == "" {
				break
			}
		}
		if !slices.Equal(paged, tokens) {
			t.Fatalf("paged tokens %v, want %v", paged, tokens)
		}
	})

	// Listing: semaphores with live slots, in name order — names that
	// extend one another included, whose keys a separator sorting after
	// name characters would put out of order —, paged, with limit, in_use
	// and slot count; by namespace and kind; locks of the same names are
	// not listed.
	t.Run("list_paging_namespaces", func(t *testing.T) {
		svcs, _ := semServers(t, endpoint, 2)
		names := []string{"a:d", "b", "a", "a.c", "a-b", "a-b-c", "ab"}
		for i, name := range names {
			for j := range 1 + i%3 {
				mustSlot(t, svcs[j%2], locklock.SlotRequest{ID: semID(name), Limit: 10 + i, Weight: 1 + j})
			}
			mustAcquire(t, svcs[0], locklock.AcquireRequest{ID: semID(name)})
		}
		other := locklock.ID{Namespace: "other", Kind: locklock.KindKey, Name: "a"}
		mustSlot(t, svcs[0], locklock.SlotRequest{ID: other, Limit: 1})
		uuid := locklock.ID{Namespace: "public", Kind: locklock.KindUUID, Name: "0b8e8f3c-6b1e-4c56-9d3a-2f1f4b7e9a10"}
		mustSlot(t, svcs[1], locklock.SlotRequest{ID: uuid, Limit: 1})
		// A semaphore whose slots all went is not listed.
		gone := mustSlot(t, svcs[0], locklock.SlotRequest{ID: semID("a0"), Limit: 1})
		if _, err := svcs[1].ReleaseSlot(t.Context(), gone.Semaphore, gone.ID, ""); err != nil {
			t.Fatal(err)
		}

		sorted := slices.Clone(names)
		slices.Sort(sorted)
		want := func(name string) locklock.SemaphoreSummary {
			i := slices.Index(names, name)
			n := 1 + i%3
			return locklock.SemaphoreSummary{ID: semID(name), Limit: 10 + i, InUse: n * (n + 1) / 2, Slots: n}
		}
		var all []locklock.SemaphoreSummary
		after := ""
		for pages := 0; ; pages++ {
			if pages > len(names) {
				t.Fatal("the listing never ends")
			}
			page, err := svcs[1].ListSemaphores(t.Context(), locklock.ListRequest{Namespace: "public", Kind: locklock.KindKey, Limit: 2, After: after})
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Semaphores) > 2 {
				t.Fatalf("page of %d, want at most 2", len(page.Semaphores))
			}
			all = append(all, page.Semaphores...)
			if after = page.Next; after == "" {
				break
			}
		}
		var wantAll []locklock.SemaphoreSummary
		for _, name := range sorted {
			wantAll = append(wantAll, want(name))
		}
		if !slices.Equal(all, wantAll) {
			t.Fatalf("listing\n got %+v\nwant %+v", all, wantAll)
		}
		page, err := svcs[0].ListSemaphores(t.Context(), locklock.ListRequest{Namespace: "public", Kind: locklock.KindKey, Prefix: "a-"})
		if err != nil || !slices.Equal(page.Semaphores, []locklock.SemaphoreSummary{want("a-b"), want("a-b-c")}) {
			t.Fatalf("prefix a-: %+v %v", page.Semaphores, err)
		}
		page, err = svcs[0].ListSemaphores(t.Context(), locklock.ListRequest{Namespace: "public", Kind: locklock.KindKey, Prefix: "a", After: "a-b"})
		if err != nil || !slices.Equal(page.Semaphores, []locklock.SemaphoreSummary{want("a-b-c"), want("a.c"), want("a:d"), want("ab")}) {
			t.Fatalf("prefix a after a-b: %+v %v", page.Semaphores, err)
		}
		for _, q := range []struct {
			ns   string
			kind locklock.Kind
			want locklock.ID
		}{{"other", locklock.KindKey, other}, {"public", locklock.KindUUID, uuid}} {
			page, err := svcs[0].ListSemaphores(t.Context(), locklock.ListRequest{Namespace: q.ns, Kind: q.kind})
			if err != nil || len(page.Semaphores) != 1 || page.Semaphores[0].ID != q.want {
				t.Fatalf("%s/%s: %+v %v, want %s alone", q.ns, q.kind, page.Semaphores, err, q.want)
			}
		}
		page, err = svcs[0].ListSemaphores(t.Context(), locklock.ListRequest{Namespace: "empty", Kind: locklock.KindKey})
		if err != nil || len(page.Semaphores) != 0 {
			t.Fatalf("an empty namespace: %+v %v", page.Semaphores, err)
		}
	})

	// etcd ends a slot with its lease: not before its expires_at, and a
	// second or two after at most; then its weight is free again, through
	// every server.
	t.Run("expiry_by_lease", func(t *testing.T) {
		t.Parallel()
		svcs, _ := semServers(t, endpoint, 2)
		a, b := svcs[0], svcs[1]
		id := semID("expiry")
		short := mustSlot(t, a, locklock.SlotRequest{ID: id, Limit: 2, Weight: 2, TTL: time.Second, Secret: "s"})
		_, _, err := b.AcquireSlot(t.Context(), locklock.SlotRequest{ID: id, Limit: 2})
		if full := wantFull(t, err, 2, 2); !full.FreesAt.Equal(short.ExpiresAt) {
			t.Fatalf("frees at %v, want %v", full.FreesAt, short.ExpiresAt)
		}
		time.Sleep(time.Until(short.ExpiresAt) - 150*time.Millisecond)
		if _, err := b.GetSlot(t.Context(), id, short.ID); err != nil {
			t.Fatalf("just before its expiry: %v", err)
		}
		deadline := short.ExpiresAt.Add(4 * time.Second)
		for {
			_, err := b.GetSlot(t.Context(), id, short.ID)
			if errors.Is(err, locklock.ErrSlotNotFound) {
				break
			}
			if err != nil || time.Now().After(deadline) {
				t.Fatalf("%v after its expiry the slot is still there (%v)", time.Since(short.ExpiresAt), err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if time.Now().Before(short.ExpiresAt) {
			t.Fatal("the slot ended before its expiry")
		}
		if _, err := a.GetSemaphore(t.Context(), locklock.SemaphoreRequest{ID: id}); !errors.Is(err, locklock.ErrSemaphoreNotFound) {
			t.Fatalf("semaphore after its only slot expired: %v", err)
		}
		mustSlot(t, b, locklock.SlotRequest{ID: id, Limit: 2, Weight: 2})
	})

	// A refresh that extends a slot moves it to a lease that lasts: it
	// outlives the lease it was acquired on.
	t.Run("refresh_outlives_first_lease", func(t *testing.T) {
		t.Parallel()
		svcs, _ := semServers(t, endpoint, 2)
		id := semID("extend")
		sl := mustSlot(t, svcs[0], locklock.SlotRequest{ID: id, Limit: 1, TTL: time.Second, Secret: "s"})
		if _, err := svcs[1].PatchSlot(t.Context(), sl.ID, locklock.PatchRequest{ID: id, Secret: "s", TTL: time.Minute}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Until(sl.ExpiresAt) + 3*time.Second)
		if _, err := svcs[0].GetSlot(t.Context(), id, sl.ID); err != nil {
			t.Fatalf("refreshed slot, after its first expiry: %v", err)
		}
		// Holder alone: rewritten on the lease it is on, which lasts.
		h := "h"
		if _, err := svcs[0].PatchSlot(t.Context(), sl.ID, locklock.PatchRequest{ID: id, Secret: "s", Holder: &h}); err != nil {
			t.Fatal(err)
		}
		_, _, err := svcs[1].AcquireSlot(t.Context(), locklock.SlotRequest{ID: id, Limit: 1})
		wantFull(t, err, 1, 1)
	})
}

// TestTryAcquireSlotEngine: the engine's own answers — created true, then
// false for a retry the same callback recognises, with the stored slot; a
// corrupt candidate never gets that far (the Service validates), but an
// engine given now far in the future still counts slots whose keys etcd
// keeps (etcd, not the clock, ends them).
func TestTryAcquireSlotEngine(t *testing.T) {
	_, engines := semServers(t, etcdtest.Endpoints(t)[0], 1)
	e := engines[0]
	now := time.Now().UTC().Truncate(time.Millisecond)
	id := semID("engine")
	cand := locklock.Slot{Semaphore: id, ID: locklock.NewSlotID(), Limit: 2, Weight: 2, AcquiredAt: now, ExpiresAt: now.Add(time.Minute), Holder: "x"}
	got, created, err := e.TryAcquireSlot(t.Context(), cand, now, nil)
	if err != nil || !created || got.Token == 0 || got.ID != cand.ID || got.Revision == 0 {
		t.Fatalf("first: %+v %v %v", got, created, err)
	}
	same := func(sl locklock.Slot) bool { return sl.Holder == "x" }
	again := cand
	again.ID = locklock.NewSlotID()
	retry, created, err := e.TryAcquireSlot(t.Context(), again, now, same)
	if err != nil || created || retry.ID != cand.ID || retry.Token != got.Token {
		t.Fatalf("retry: %+v %v %v, want slot %s", retry, created, err, cand.ID)
	}
	later := now.Add(time.Hour)
	again.AcquiredAt, again.ExpiresAt = later, later.Add(time.Minute)
	if _, _, err := e.TryAcquireSlot(t.Context(), again, later, nil); !errors.Is(err, locklock.ErrSemaphoreFull) {
		t.Fatalf("an hour later, the key still there: %v, want full", err)
	}
	// Cancelled before it starts: the context's error, nothing stored.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := e.TryAcquireSlot(ctx, again, now, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	_ = e.Close()
	if _, _, err := e.TryAcquireSlot(t.Context(), again, now, nil); !errors.Is(err, locklock.ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
}
