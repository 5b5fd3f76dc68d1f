package conformance

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
)

// testSlotSecrets: a protected slot is released or refreshed only with its
// secret; an unprotected one by anyone. A refusal changes nothing; a
// release returns the slot as it was and frees its weight.
func testSlotSecrets(t *testing.T, h Harness) {
	cases := []struct {
		name       string
		slotSecret string
		useSecret  string
		want       error
	}{
		{"protected, right secret", "right", "right", nil},
		{"protected, no secret", "right", "", locklock.ErrSecretMismatch},
		{"protected, wrong secret", "right", "wrong", locklock.ErrSecretMismatch},
		{"protected, prefix of secret", "right", "righ", locklock.ErrSecretMismatch},
		{"unprotected, no secret", "", "", nil},
		{"unprotected, any secret", "", "anything", nil},
	}
	e := newEnv(t, h)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := e.id(fmt.Sprintf("secret-%d", i))
			sl := e.take(locklock.SlotRequest{ID: id, Limit: 2, Weight: 2, Secret: c.slotSecret, TTL: time.Hour})
			if _, err := e.svc.PatchSlot(e.ctx(), sl.ID, locklock.PatchRequest{ID: id, Secret: c.useSecret, TTL: 2 * time.Hour}); !errors.Is(err, c.want) {
				t.Errorf("refresh: %v, want %v", err, c.want)
			}
			if c.want != nil {
				if got, err := e.svc.GetSlot(e.ctx(), id, sl.ID); err != nil || !sameSlot(got, sl) {
					t.Errorf("a refused refresh changed the slot: %+v, %v", got, err)
				}
			}
			before, err := e.svc.GetSlot(e.ctx(), id, sl.ID)
			if err != nil {
				t.Fatal(err)
			}
			rel, err := e.svc.ReleaseSlot(e.ctx(), id, sl.ID, c.useSecret)
			if !errors.Is(err, c.want) {
				t.Fatalf("release: %v, want %v", err, c.want)
			}
			got, getErr := e.svc.GetSlot(e.ctx(), id, sl.ID)
			if c.want != nil {
				if getErr != nil || !sameSlot(got, before) {
					t.Errorf("a refused release changed the slot: %+v, %v", got, getErr)
				}
				return
			}
			if !sameSlot(rel, before) {
				t.Errorf("release returned %+v, want the slot as it was %+v", rel, before)
			}
			if !errors.Is(getErr, locklock.ErrSlotNotFound) {
				t.Errorf("after release get = %v, want ErrSlotNotFound", getErr)
			}
			if _, err := e.svc.ReleaseSlot(e.ctx(), id, sl.ID, c.useSecret); !errors.Is(err, locklock.ErrSlotNotFound) {
				t.Errorf("second release: %v, want ErrSlotNotFound", err)
			}
			e.take(locklock.SlotRequest{ID: id, Limit: 2, Weight: 2}) // the weight is free again
		})
	}
}

// testSlotNotFound: a slot id that is malformed, unknown, or another
// semaphore's names no slot (404 slot_not_found, never 400), and nothing
// changes.
func testSlotNotFound(t *testing.T, h Harness) {
	e := newEnv(t, h)
	id, other := e.id("slots"), e.id("slots-other")
	sl := e.take(locklock.SlotRequest{ID: id, Limit: 2, TTL: time.Hour})
	elsewhere := e.take(locklock.SlotRequest{ID: other, Limit: 2, TTL: time.Hour})
	ids := map[string]string{
		"empty":                        "",
		"short":                        "abc",
		"a character not in base64url": "abcdefghijklmnopqrstu+",
		"one character too many":       sl.ID + "A",
		"unknown":                      locklock.NewSlotID(),
		"another semaphore's":          elsewhere.ID,
	}
	for name, slot := range ids {
		if _, err := e.svc.GetSlot(e.ctx(), id, slot); !errors.Is(err, locklock.ErrSlotNotFound) {
			t.Errorf("get of a %s slot id: %v, want ErrSlotNotFound", name, err)
		}
		if _, err := e.svc.ReleaseSlot(e.ctx(), id, slot, ""); !errors.Is(err, locklock.ErrSlotNotFound) {
			t.Errorf("release of a %s slot id: %v, want ErrSlotNotFound", name, err)
		}
		if _, err := e.svc.PatchSlot(e.ctx(), slot, locklock.PatchRequest{ID: id, TTL: time.Minute}); !errors.Is(err, locklock.ErrSlotNotFound) {
			t.Errorf("refresh of a %s slot id: %v, want ErrSlotNotFound", name, err)
		}
	}
	if _, err := e.svc.GetSlot(e.ctx(), e.id("never"), sl.ID); !errors.Is(err, locklock.ErrSlotNotFound) {
		t.Errorf("get of a slot of a semaphore that never was: %v, want ErrSlotNotFound", err)
	}
	if sem := e.semaphore(id); !hasSlots(sem, sl) {
		t.Errorf("semaphore changed: %+v", sem)
	}
	if sem := e.semaphore(other); !hasSlots(sem, elsewhere) {
		t.Errorf("the other semaphore changed: %+v", sem)
	}
}

// testGetSemaphore: a semaphore reads as its live slots by token, with its
// limit and the sum of their weights, in pages; without live slots it is
// not found.
func testGetSemaphore(t *testing.T, h Harness) {
	e := newEnv(t, h)
	id := e.id("paged")
	if _, err := e.svc.GetSemaphore(e.ctx(), locklock.SemaphoreRequest{ID: id}); !errors.Is(err, locklock.ErrSemaphoreNotFound) {
		t.Fatalf("get of a semaphore never used: %v, want ErrSemaphoreNotFound", err)
	}
	var slots []locklock.Slot
	for i, w := range []int{1, 2, 1, 2, 1} {
		slots = append(slots, e.take(locklock.SlotRequest{ID: id, Limit: 7, Weight: w, Secret: fmt.Sprint("s", i), TTL: time.Hour}))
	}
	sem := e.semaphore(id)
	if sem.ID != id || sem.Limit != 7 || sem.InUse != 7 || !hasSlots(sem, slots...) || sem.Next != "" {
		t.Fatalf("semaphore = %+v; want limit 7, in use 7 and the 5 slots by token", sem)
	}
	page := func(after string, limit int) ([]uint64, string) {
		t.Helper()
		sem, err := e.svc.GetSemaphore(e.ctx(), locklock.SemaphoreRequest{ID: id, After: after, Limit: limit})
		if err != nil {
			t.Fatalf("page after %q: %v", after, err)
		}
		if sem.Limit != 7 || sem.InUse != 7 {
			t.Errorf("page after %q: limit %d, in use %d; want the whole semaphore's 7 and 7", after, sem.Limit, sem.InUse)
		}
		return tokens(sem.Slots), sem.Next
	}
	all := tokens(slots)
	str := func(tok uint64) string { return strconv.FormatUint(tok, 10) }
	if got, next := page("", 2); !slices.Equal(got, all[:2]) || next != str(all[1]) {
		t.Errorf("first page %v next %q, want %v next %d", got, next, all[:2], all[1])
	}
	if got, next := page(str(all[1]), 2); !slices.Equal(got, all[2:4]) || next != str(all[3]) {
		t.Errorf("second page %v next %q, want %v next %d", got, next, all[2:4], all[3])
	}
	if got, next := page(str(all[3]), 2); !slices.Equal(got, all[4:]) || next != "" {
		t.Errorf("last page %v next %q, want %v and no next", got, next, all[4:])
	}
	if got, next := page(str(all[4]), 2); len(got) != 0 || next != "" {
		t.Errorf("past the end %v next %q, want nothing", got, next)
	}
	if got, _ := page(str(all[2]-1), 0); !slices.Equal(got, all[2:]) {
		t.Errorf("after a token between slots %v, want %v", got, all[2:])
	}
	if _, err := e.svc.ReleaseSlot(e.ctx(), id, slots[2].ID, "s2"); err != nil {
		t.Fatal(err)
	}
	if sem := e.semaphore(id); sem.InUse != 6 || !hasSlots(sem, slots[0], slots[1], slots[3], slots[4]) {
		t.Errorf("after a release: %+v", sem)
	}
	for i, sl := range slots {
		if i != 2 {
			if _, err := e.svc.ReleaseSlot(e.ctx(), id, sl.ID, fmt.Sprint("s", i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := e.svc.GetSemaphore(e.ctx(), locklock.SemaphoreRequest{ID: id}); !errors.Is(err, locklock.ErrSemaphoreNotFound) {
		t.Errorf("get after the last release: %v, want ErrSemaphoreNotFound", err)
	}
}

// testListSemaphores: a namespace's semaphores with live slots, by name,
// in pages, by kind and prefix, each with its limit, in-use sum and count.
func testListSemaphores(t *testing.T, h Harness) {
	e := newEnv(t, h)
	for _, n := range []string{"b", "a", "job:2", "job:1", "job:10", "x"} {
		e.take(locklock.SlotRequest{ID: e.id(n), Limit: 2})
	}
	e.take(locklock.SlotRequest{ID: e.id("job:3"), Limit: 3, Weight: 1})
	e.take(locklock.SlotRequest{ID: e.id("job:3"), Limit: 3, Weight: 2})
	e.take(locklock.SlotRequest{ID: locklock.ID{Namespace: "other", Kind: locklock.KindKey, Name: "job:0"}, Limit: 1})
	uuid := locklock.ID{Namespace: locklock.DefaultNamespace, Kind: locklock.KindUUID, Name: "00000000-0000-4000-8000-000000000000"}
	e.take(locklock.SlotRequest{ID: uuid, Limit: 1})
	e.acquire(locklock.AcquireRequest{ID: e.id("job:5")}) // a lock, not a semaphore

	list := func(ns string, kind locklock.Kind, prefix, after string, limit int) ([]locklock.SemaphoreSummary, string) {
		t.Helper()
		page, err := e.svc.ListSemaphores(e.ctx(), locklock.ListRequest{Namespace: ns, Kind: kind, Prefix: prefix, After: after, Limit: limit})
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		return page.Semaphores, page.Next
	}
	names := func(sums []locklock.SemaphoreSummary) []string {
		var out []string
		for _, s := range sums {
			out = append(out, s.Name)
		}
		return out
	}
	ns, key := locklock.DefaultNamespace, locklock.KindKey
	all, next := list(ns, key, "", "", 0)
	if got := names(all); !slices.Equal(got, []string{"a", "b", "job:1", "job:10", "job:2", "job:3", "x"}) || next != "" {
		t.Errorf("list all = %v next %q", got, next)
	}
	for _, s := range all {
		want := locklock.SemaphoreSummary{ID: e.id(s.Name), Limit: 2, InUse: 1, Slots: 1}
		if s.Name == "job:3" {
			want.Limit, want.InUse, want.Slots = 3, 3, 2
		}
		if s != want {
			t.Errorf("summary %+v, want %+v", s, want)
		}
	}
	if got, next := list(ns, key, "job:", "", 2); !slices.Equal(names(got), []string{"job:1", "job:10"}) || next != "job:10" {
		t.Errorf("first page = %v next %q, want [job:1 job:10] next job:10", names(got), next)
	}
	if got, next := list(ns, key, "job:", "job:10", 2); !slices.Equal(names(got), []string{"job:2", "job:3"}) || next != "" {
		t.Errorf("second page = %v next %q, want [job:2 job:3] and no next", names(got), next)
	}
	if got, _ := list(ns, locklock.KindUUID, "", "", 0); len(got) != 1 || got[0].ID != uuid {
		t.Errorf("uuid listing = %+v; want just %s", got, uuid.Name)
	}
	if got, _ := list("other", key, "", "", 0); !slices.Equal(names(got), []string{"job:0"}) {
		t.Errorf("namespace other lists %v", names(got))
	}
	if got, _ := list("othe", key, "", "", 0); len(got) != 0 {
		t.Errorf("namespace othe (a prefix of other) lists %v", names(got))
	}
	if !h.RealTime {
		e.take(locklock.SlotRequest{ID: e.id("job:4"), Limit: 1, TTL: e.shortTTL()})
		if got, _ := list(ns, key, "job:4", "", 0); len(got) != 1 {
			t.Fatalf("job:4 not listed: %v", names(got))
		}
		e.pass(e.shortTTL())
		if got, _ := list(ns, key, "job:", "", 0); !slices.Equal(names(got), []string{"job:1", "job:10", "job:2", "job:3"}) {
			t.Errorf("after expiry list = %v, want the expired semaphore gone", names(got))
		}
	}
	for _, req := range []locklock.ListRequest{{Namespace: ns, Kind: "lock"}, {Namespace: ns, Kind: key, Limit: locklock.MaxListLimit + 1}} {
		if _, err := e.svc.ListSemaphores(e.ctx(), req); !errors.Is(err, locklock.ErrInvalidArgument) {
			t.Errorf("list %+v: %v, want ErrInvalidArgument", req, err)
		}
	}
}

// testSemaphoreNamespaces: two namespaces never see each other's
// semaphores, not even by slot id and secret.
func testSemaphoreNamespaces(t *testing.T, h Harness) {
	e := newEnv(t, h)
	a := locklock.ID{Namespace: "team-a", Kind: locklock.KindKey, Name: "deploy"}
	b := locklock.ID{Namespace: "team-b", Kind: locklock.KindKey, Name: "deploy"}
	sa := e.take(locklock.SlotRequest{ID: a, Limit: 1, Secret: "a"})
	sb := e.take(locklock.SlotRequest{ID: b, Limit: 2, Secret: "b"}) // another limit: another semaphore
	if _, err := e.svc.GetSlot(e.ctx(), a, sb.ID); !errors.Is(err, locklock.ErrSlotNotFound) {
		t.Errorf("team-a get of team-b's slot: %v, want ErrSlotNotFound", err)
	}
	if _, err := e.svc.PatchSlot(e.ctx(), sb.ID, locklock.PatchRequest{ID: a, Secret: "b", TTL: time.Hour}); !errors.Is(err, locklock.ErrSlotNotFound) {
		t.Errorf("team-a refresh of team-b's slot: %v, want ErrSlotNotFound", err)
	}
	if _, err := e.svc.ReleaseSlot(e.ctx(), a, sb.ID, "b"); !errors.Is(err, locklock.ErrSlotNotFound) {
		t.Errorf("team-a release of team-b's slot: %v, want ErrSlotNotFound", err)
	}
	if _, err := e.svc.ReleaseSlot(e.ctx(), a, sa.ID, "a"); err != nil {
		t.Fatalf("release in team-a: %v", err)
	}
	if sem := e.semaphore(b); !hasSlots(sem, sb) || sem.Limit != 2 {
		t.Errorf("team-a's doings touched team-b's semaphore: %+v", sem)
	}
	for _, ns := range []string{"team-a", "team"} {
		page, err := e.svc.ListSemaphores(e.ctx(), locklock.ListRequest{Namespace: ns, Kind: locklock.KindKey})
		if err != nil || len(page.Semaphores) != 0 {
			t.Errorf("namespace %s lists %+v, %v; want nothing of team-b's", ns, page.Semaphores, err)
		}
		if _, err := e.svc.GetSemaphore(e.ctx(), locklock.SemaphoreRequest{ID: locklock.ID{Namespace: ns, Kind: locklock.KindKey, Name: "deploy"}}); !errors.Is(err, locklock.ErrSemaphoreNotFound) {
			t.Errorf("namespace %s get: %v, want ErrSemaphoreNotFound", ns, err)
		}
	}
	// A key semaphore named like a uuid one is another semaphore.
	uuid := locklock.ID{Namespace: "team-b", Kind: locklock.KindUUID, Name: "180da65c-cf80-4997-8574-0c0801817d6f"}
	e.take(locklock.SlotRequest{ID: uuid, Limit: 1})
	if _, err := e.svc.GetSemaphore(e.ctx(), locklock.SemaphoreRequest{ID: locklock.ID{Namespace: "team-b", Kind: locklock.KindKey, Name: uuid.Name}}); !errors.Is(err, locklock.ErrSemaphoreNotFound) {
		t.Errorf("key semaphore named like the uuid one: %v, want ErrSemaphoreNotFound", err)
	}
}

// testLockAndSemaphore: a lock and a semaphore may share a name (API.md
// §10): neither blocks, lists, nor ends the other.
func testLockAndSemaphore(t *testing.T, h Harness) {
	e := newEnv(t, h)
	id := e.id("shared")
	lock := e.acquire(locklock.AcquireRequest{ID: id, Secret: "l", TTL: time.Hour})
	sl := e.take(locklock.SlotRequest{ID: id, Limit: 1, Secret: "s", TTL: time.Hour})
	if _, _, err := e.svc.Acquire(e.ctx(), locklock.AcquireRequest{ID: id, Secret: "x"}); !errors.Is(err, locklock.ErrHeld) {
		t.Errorf("the lock beside a semaphore: %v, want ErrHeld", err)
	}
	_, _, err := e.svc.AcquireSlot(e.ctx(), locklock.SlotRequest{ID: id, Limit: 1, Secret: "x"})
	assertFull(t, "the semaphore beside a lock", err, 1, 1)
	page, err := e.svc.List(e.ctx(), locklock.ListRequest{Namespace: id.Namespace, Kind: id.Kind})
	if err != nil || len(page.Locks) != 1 || !sameGrant(page.Locks[0], lock) {
		t.Errorf("lock listing = %+v, %v; want just the lock", page.Locks, err)
	}
	sems, err := e.svc.ListSemaphores(e.ctx(), locklock.ListRequest{Namespace: id.Namespace, Kind: id.Kind})
	if err != nil || len(sems.Semaphores) != 1 || sems.Semaphores[0].Slots != 1 {
		t.Errorf("semaphore listing = %+v, %v; want just the semaphore", sems.Semaphores, err)
	}
	if _, err := e.svc.Release(e.ctx(), id, "l"); err != nil {
		t.Fatalf("release the lock: %v", err)
	}
	if got, err := e.svc.GetSlot(e.ctx(), id, sl.ID); err != nil || !sameSlot(got, sl) {
		t.Errorf("the lock's release touched the slot: %+v, %v", got, err)
	}
	relock := e.acquire(locklock.AcquireRequest{ID: id, Secret: "l2", TTL: time.Hour})
	if _, err := e.svc.ReleaseSlot(e.ctx(), id, sl.ID, "s"); err != nil {
		t.Fatalf("release the slot: %v", err)
	}
	if got, err := e.svc.Get(e.ctx(), id); err != nil || !sameGrant(got, relock) {
		t.Errorf("the slot's release touched the lock: %+v, %v", got, err)
	}
	if _, err := e.svc.GetSemaphore(e.ctx(), locklock.SemaphoreRequest{ID: id}); !errors.Is(err, locklock.ErrSemaphoreNotFound) {
		t.Errorf("semaphore after its slot's release, beside a held lock: %v, want ErrSemaphoreNotFound", err)
	}
}

// testSlotLabels: holder and metadata are stored with the slot and come
// back from every read; a retried acquire changes nothing.
func testSlotLabels(t *testing.T, h Harness) {
	e := newEnv(t, h)
	id := e.id("labelled")
	sl := e.take(locklock.SlotRequest{ID: id, Limit: 2, Secret: "s", TTL: time.Hour, Holder: "host-a:7", Metadata: someMetadata})
	if sl.Holder != "host-a:7" || !maps.Equal(sl.Metadata, someMetadata) {
		t.Fatalf("acquired %+v: holder or metadata not as asked", sl)
	}
	if got, err := e.svc.GetSlot(e.ctx(), id, sl.ID); err != nil || !sameSlot(got, sl) {
		t.Fatalf("get = %+v, %v; want %+v", got, err, sl)
	}
	plain := e.take(locklock.SlotRequest{ID: id, Limit: 2, TTL: time.Hour})
	if plain.Holder != "" || plain.Metadata != nil {
		t.Errorf("a slot taken without labels has %q %v", plain.Holder, plain.Metadata)
	}
	if sem := e.semaphore(id); !hasSlots(sem, sl, plain) {
		t.Errorf("semaphore = %+v; want both slots with their labels", sem)
	}
	again, created, err := e.svc.AcquireSlot(e.ctx(), locklock.SlotRequest{ID: id, Limit: 2, Secret: "s", Holder: otherHolder, Metadata: map[string]string{"x": "y"}})
	if err != nil || created || !sameSlot(again, sl) {
		t.Fatalf("retried acquire = %+v, created %v, %v; want the slot unchanged", again, created, err)
	}
}

// testSlotPatch: a PATCH of a slot works as one of a lock (API.md §8): it
// replaces holder and metadata, keeps token, limit and weight, leaves the
// expiry alone unless it carries a TTL; one of nothing refreshes by the
// default lifetime; a wrong secret changes nothing; other slots are
// untouched.
func testSlotPatch(t *testing.T, h Harness) {
	e := newEnv(t, h)
	id := e.id("patched")
	sl := e.take(locklock.SlotRequest{ID: id, Limit: 3, Weight: 2, Secret: "s", TTL: time.Hour, Holder: "host-a:7", Metadata: someMetadata})
	beside := e.take(locklock.SlotRequest{ID: id, Limit: 3, Secret: "b", TTL: time.Hour, Holder: "b"})
	e.pass(time.Second)
	kept := func(p locklock.Slot) bool {
		return p.ID == sl.ID && p.Token == sl.Token && p.Limit == 3 && p.Weight == 2 && p.AcquiredAt.Equal(sl.AcquiredAt) && p.Guard == sl.Guard
	}

	holder := otherHolder
	p, err := e.svc.PatchSlot(e.ctx(), sl.ID, locklock.PatchRequest{ID: id, Secret: "s", Holder: &holder})
	if err != nil || !kept(p) || p.Holder != otherHolder || !maps.Equal(p.Metadata, someMetadata) || !p.ExpiresAt.Equal(sl.ExpiresAt) {
		t.Fatalf("after a holder patch %+v, %v; want holder %q, the same metadata and expiry, the rest of %+v", p, err, otherHolder, sl)
	}
	if got, err := e.svc.GetSlot(e.ctx(), id, sl.ID); err != nil || !sameSlot(got, p) {
		t.Fatalf("get after patch = %+v, %v; want %+v", got, err, p)
	}

	p, err = e.svc.PatchSlot(e.ctx(), sl.ID, locklock.PatchRequest{ID: id, Secret: "s", SetMetadata: true, Metadata: map[string]string{}})
	if err != nil || !kept(p) || p.Metadata != nil || p.Holder != otherHolder || !p.ExpiresAt.Equal(sl.ExpiresAt) {
		t.Fatalf("after clearing metadata %+v, %v; want no metadata, holder and expiry kept", p, err)
	}

	md := map[string]string{"leader": "10.0.0.9:8080"}
	p, err = e.svc.PatchSlot(e.ctx(), sl.ID, locklock.PatchRequest{ID: id, Secret: "s", SetMetadata: true, Metadata: md, TTL: 2 * time.Hour})
	wantExpiry := e.now().Truncate(time.Millisecond).Add(2 * time.Hour)
	if err != nil || !kept(p) || !maps.Equal(p.Metadata, md) || !e.expiryNear(p.ExpiresAt, wantExpiry) {
		t.Fatalf("after metadata + TTL %+v, %v; want metadata %v, expiry %v", p, err, md, wantExpiry)
	}

	before := p
	wrong := "intruder"
	if _, err := e.svc.PatchSlot(e.ctx(), sl.ID, locklock.PatchRequest{ID: id, Secret: "b", Holder: &wrong}); !errors.Is(err, locklock.ErrSecretMismatch) {
		t.Fatalf("patch with another slot's secret: %v, want ErrSecretMismatch", err)
	}
	if got, err := e.svc.GetSlot(e.ctx(), id, sl.ID); err != nil || !sameSlot(got, before) {
		t.Fatalf("a refused patch changed the slot: %+v, %v; want %+v", got, err, before)
	}

	e.pass(time.Second)
	p, err = e.svc.PatchSlot(e.ctx(), sl.ID, locklock.PatchRequest{ID: id, Secret: "s"})
	wantExpiry = e.now().Truncate(time.Millisecond).Add(locklock.DefaultTTL)
	if err != nil || !kept(p) || !e.expiryNear(p.ExpiresAt, wantExpiry) || p.Holder != otherHolder || !maps.Equal(p.Metadata, md) {
		t.Fatalf("an empty patch %+v, %v; want the default lifetime from now (%v) and the labels kept", p, err, wantExpiry)
	}
	if sem := e.semaphore(id); !hasSlots(sem, p, beside) || sem.InUse != 3 {
		t.Errorf("semaphore after patches = %+v; want the patched slot and the other unchanged", sem)
	}
}
