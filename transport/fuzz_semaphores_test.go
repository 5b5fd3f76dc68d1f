package transport

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/locklock/locklock/engines/memory"
	"github.com/locklock/locklock/locklock"
)

// FuzzHandler's semaphores (API.md §10): slots stored with fixed ids, so
// that seeds can name them, and the checks of a successful semaphore
// request. A rejected request, and any lock request, must change no slot
// (checkFuzzResponse).

// Slot ids of the seeded slots.
const (
	fzSlotU1   = "fuzzSlotPublicU1-s1___" // public uuid fzU1, limit 2, weight 1, secret s1
	fzSlotU3   = "fuzzSlotPublicU3-gone_" // public uuid fzU3, limit 1, expired
	fzSlotPool = "fuzzSlotAcmePool-open_" // acme key pool, limit 3, weight 3, no secret
	fzSlotDev  = "fuzzSlotDevcoU2-d_____" // devco uuid fzU2, limit 1, secret d
)

// seedFuzzSlots stores the slots through the engine, which keeps the id it
// is given; the Service would make a random one.
func seedFuzzSlots(t testing.TB, eng *memory.Engine) {
	t.Helper()
	for _, s := range []struct {
		ns            string
		kind          locklock.Kind
		name, slot    string
		limit, weight int
		secret        string
		ttl           time.Duration
	}{
		{"public", locklock.KindUUID, fzU1, fzSlotU1, 2, 1, "s1", time.Hour},
		{"public", locklock.KindUUID, fzU3, fzSlotU3, 1, 1, "", time.Second},
		{"acme", locklock.KindKey, "pool", fzSlotPool, 3, 3, "", time.Hour},
		{"devco", locklock.KindUUID, fzU2, fzSlotDev, 1, 1, "d", time.Hour},
	} {
		id, err := locklock.NewID(s.ns, s.kind, s.name)
		if err != nil || !locklock.ValidSlotID(s.slot) {
			t.Fatalf("seeding slot %s of %s: %v", s.slot, s.name, err)
		}
		cand := locklock.Slot{Semaphore: id, ID: s.slot, Limit: s.limit, Weight: s.weight,
			AcquiredAt: fzStart, ExpiresAt: fzStart.Add(s.ttl), Guard: locklock.NewGuard(s.secret)}
		if _, _, err := eng.TryAcquireSlot(context.Background(), cand, fzStart, nil); err != nil {
			t.Fatalf("seeding slot %s: %v", s.slot, err)
		}
	}
}

// fzSlotKey names a slot; fzSlots is every live slot, as stored.
type (
	fzSlotKey struct {
		locklock.ID
		Slot string
	}
	fzSlots map[fzSlotKey]locklock.Slot
)

func (e *fuzzEnv) slotState(t testing.TB) fzSlots {
	t.Helper()
	all := fzSlots{}
	ctx := context.Background()
	for _, ns := range fzNamespaces {
		for _, kind := range []locklock.Kind{locklock.KindUUID, locklock.KindKey} {
			page, err := e.svc.ListSemaphores(ctx, locklock.ListRequest{Namespace: ns, Kind: kind, Limit: locklock.MaxListLimit})
			if err != nil || page.Next != "" {
				t.Fatalf("listing semaphores %s/%s: %v (next %q)", ns, kind, err, page.Next)
			}
			for _, sum := range page.Semaphores {
				sem, err := e.svc.GetSemaphore(ctx, locklock.SemaphoreRequest{ID: sum.ID})
				if err != nil {
					t.Fatalf("semaphore %v: %v", sum.ID, err)
				}
				for _, sl := range sem.Slots {
					sl.ObservedAt = time.Time{}
					all[fzSlotKey{sl.Semaphore, sl.ID}] = sl
				}
			}
		}
	}
	return all
}

func fzSemaphorePath(path string) bool {
	return strings.HasPrefix(path, "/semaphore/") || path == "/semaphores"
}

func semaphoreSeeds() []fuzzSeed {
	const (
		pro = "Bearer " + fzProKey
		dev = "Bearer " + fzDevKey
		js  = "application/json"
	)
	u := func(name string) string { return "/semaphore/uuid/" + name }
	k := func(name string) string { return "/semaphore/key/" + name }
	return []fuzzSeed{
		{method: "POST", target: u(fzU4), ctype: js, body: `{"limit":3}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"limit":3,"weight":2,"secret":"s4","expires_in":60,"holder":"w","metadata":{"a":"b"}}`},
		{method: "POST", target: u(fzU4), secret: "hdr", body: `{"limit":1}`},
		{method: "POST", target: u(fzU1), ctype: js, body: `{"limit":2}`},
		{method: "POST", target: u(fzU1), ctype: js, body: `{"limit":2,"weight":2}`},
		{method: "POST", target: u(fzU1), ctype: js, body: `{"limit":3}`},
		{method: "POST", target: u(fzU1), ctype: js, body: `{"limit":9,"secret":"s1"}`},
		{method: "POST", target: u(fzU3), ctype: js, body: `{"limit":1,"weight":1}`},
		{method: "POST", target: u(fzU4)},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"limit":0}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"limit":10001}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"limit":"1"}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"limit":2,"weight":0}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"limit":2,"weight":3}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"limit":2,"lock_delay":1}`},
		{method: "POST", target: u(fzU4), ctype: js, body: `{"limit":2,"wait":1}`},
		{method: "POST", target: u(fzU4) + "?limit=2", ctype: js, body: `{"limit":2}`},
		{method: "POST", target: k("pool"), auth: pro, ctype: js, body: `{"limit":3}`},
		{method: "POST", target: k("pool2"), auth: pro, ctype: js, body: `{"limit":10000,"weight":10000}`},
		{method: "POST", target: k("pool"), auth: dev, ctype: js, body: `{"limit":3}`},
		{method: "POST", target: k("pool"), ctype: js, body: `{"limit":3}`},
		{method: "GET", target: u(fzU1)},
		{method: "HEAD", target: u(fzU1) + "?limit=1"},
		{method: "GET", target: u(fzU1) + "?limit=1&after=0"},
		{method: "GET", target: u(fzU1) + "?after=99999999999999999999"},
		{method: "GET", target: u(fzU1) + "?limit=1001"},
		{method: "GET", target: u(fzU3)},
		{method: "GET", target: k("pool"), auth: pro},
		{method: "GET", target: u(fzU2), auth: dev},
		{method: "GET", target: u(fzU1) + "/" + fzSlotU1},
		{method: "HEAD", target: u(fzU1) + "/" + fzSlotU1},
		{method: "GET", target: u(fzU1) + "/" + fzSlotU1, auth: pro},
		{method: "GET", target: u(fzU3) + "/" + fzSlotU3},
		{method: "GET", target: u(fzU1) + "/nope"},
		{method: "GET", target: u(fzU1) + "/"},
		{method: "GET", target: u("nope") + "/" + fzSlotU1},
		{method: "GET", target: k("a/b") + "/" + fzSlotPool, auth: pro},
		{method: "GET", target: u(fzU1) + "/" + fzSlotU1 + "/events"},
		{method: "PATCH", target: u(fzU1) + "/" + fzSlotU1, ctype: js, body: `{"secret":"s1","expires_in":120,"holder":"h"}`},
		{method: "PATCH", target: u(fzU1) + "/" + fzSlotU1, secret: "s1", ctype: js, body: `{"metadata":{}}`},
		{method: "PATCH", target: u(fzU1) + "/" + fzSlotU1, ctype: js, body: `{"secret":"s2"}`},
		{method: "PATCH", target: u(fzU1) + "/" + fzSlotU1, ctype: js, body: `{"secret":"s1","limit":3}`},
		{method: "PATCH", target: k("pool") + "/" + fzSlotPool, auth: pro},
		{method: "DELETE", target: u(fzU1) + "/" + fzSlotU1, ctype: js, body: `{"secret":"s1"}`},
		{method: "DELETE", target: u(fzU1) + "/" + fzSlotU1, secret: "s1"},
		{method: "DELETE", target: u(fzU1) + "/" + fzSlotU1},
		{method: "DELETE", target: u(fzU1) + "/" + fzSlotU1 + "?secret=s1"},
		{method: "DELETE", target: k("pool") + "/" + fzSlotPool, auth: pro},
		{method: "DELETE", target: k("pool") + "/" + fzSlotPool, auth: "Bearer " + fzOtherKey},
		{method: "DELETE", target: u(fzU2) + "/" + fzSlotDev, auth: dev, secret: "d"},
		{method: "POST", target: u(fzU1) + "/" + fzSlotU1},
		{method: "PUT", target: u(fzU1)},
		{method: "GET", target: "/semaphores?kind=key", auth: pro},
		{method: "GET", target: "/semaphores?kind=uuid&limit=1", auth: dev},
		{method: "GET", target: "/semaphores?kind=key&prefix=po&after=a", auth: pro},
		{method: "HEAD", target: "/semaphores?kind=uuid", auth: pro},
		{method: "GET", target: "/semaphores?kind=uuid"},
		{method: "GET", target: "/semaphores", auth: pro},
	}
}

// checkFuzzSemaphoreSuccess checks a 200 or 201 of a semaphore route
// against the slots stored before and after: locks never change; reads
// change nothing and show what is stored; an acquire adds one slot that
// fits (or, 200, finds the caller's own); a refresh changes one slot's
// expiry and labels only; a release removes one slot, with its secret.
func checkFuzzSemaphoreSuccess(t *testing.T, r *http.Request, reqBody []byte, status int, raw []byte, before, after map[locklock.ID]locklock.Lock, sBefore, sAfter fzSlots) {
	t.Helper()
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("%s %s changed locks", r.Method, r.URL.Path)
	}
	strict := func(v any) {
		t.Helper()
		if r.Method == http.MethodHead {
			return
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil || dec.More() {
			t.Fatalf("success body does not decode as %T (%v): %s", v, err, raw)
		}
	}
	unchanged := func() {
		t.Helper()
		if !reflect.DeepEqual(sBefore, sAfter) {
			t.Fatalf("%s %s (%d) changed slots:\nbefore %v\nafter  %v", r.Method, r.URL.Path, status, sBefore, sAfter)
		}
	}
	ns := fzNamespace(r)
	if ns == "" {
		t.Fatalf("%d for Authorization %q", status, r.Header.Values("Authorization"))
	}
	if r.URL.Path == "/semaphores" {
		var page semaphoreListJSON
		strict(&page)
		unchanged()
		if r.Method == http.MethodGet {
			checkFuzzSemaphorePage(t, r, ns, page, sBefore)
		}
		return
	}
	route := Route(r.URL.Path)
	rest := strings.TrimPrefix(r.URL.Path, "/semaphore/")
	kind, name, _ := strings.Cut(rest, "/")
	slot := ""
	if strings.HasSuffix(route, "{slot}") {
		cut := strings.LastIndexByte(name, '/')
		name, slot = name[:cut], name[cut+1:]
	}
	wantID, err := locklock.NewID(ns, locklock.Kind(kind), name)
	if err != nil {
		t.Fatalf("%d for a bad semaphore name: %v", status, err)
	}
	key := fzSlotKey{wantID, slot}
	var sl slotJSON
	switch {
	case slot == "" && r.Method == http.MethodPost:
		strict(&sl)
		got := fzSlotKey{locklock.ID{Namespace: sl.Namespace, Kind: sl.Kind, Name: sl.Name}, sl.Slot}
		if got.ID != wantID {
			t.Fatalf("POST %s answered for %v", r.URL.Path, got.ID)
		}
		secret := fzSecret(r, reqBody)
		if status == http.StatusOK { // a retry
			unchanged()
			sameSlot(t, sl, sBefore)
			if secret == "" || !sBefore[got].Protected() || !sBefore[got].Guard.Admits(secret) {
				t.Fatalf("200 for a slot of %v with secret %q", wantID, secret)
			}
			return
		}
		if _, was := sBefore[got]; was {
			t.Fatalf("201 for slot %v, which was there", got)
		}
		sameSlot(t, sl, sAfter)
		if new := sAfter[got]; new.Protected() != (secret != "") || !new.Guard.Admits(secret) {
			t.Fatalf("slot taken with secret %q, but the guard does not match", secret)
		}
		inUse := 0
		for k, s := range sAfter {
			if k.ID == wantID {
				inUse += s.Weight
				if s.Limit != sl.Limit {
					t.Fatalf("slots of one semaphore with limits %d and %d", s.Limit, sl.Limit)
				}
			}
		}
		if inUse > sl.Limit {
			t.Fatalf("%v holds %d of %d", wantID, inUse, sl.Limit)
		}
		delete(sAfter, got)
		unchanged()
	case slot == "" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		var sem semaphoreJSON
		strict(&sem)
		unchanged()
		if r.Method == http.MethodGet {
			inUse := 0
			for k, s := range sBefore {
				if k.ID == wantID {
					inUse += s.Weight
				}
			}
			if sem.InUse != inUse || sem.Namespace != ns || sem.Name != wantID.Name || len(sem.Slots) > locklock.MaxSlotsPage {
				t.Fatalf("semaphore %+v, stored in use %d", sem, inUse)
			}
			for i, s := range sem.Slots {
				sameSlot(t, s, sBefore)
				if i > 0 && s.FencingToken <= sem.Slots[i-1].FencingToken {
					t.Fatalf("slots out of token order: %+v", sem.Slots)
				}
			}
		}
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		strict(&sl)
		unchanged()
		if _, ok := sBefore[key]; !ok {
			t.Fatalf("%s of slot %v, which is not stored", r.Method, key)
		}
		if r.Method == http.MethodGet {
			sameSlot(t, sl, sBefore)
		}
	case r.Method == http.MethodPatch:
		strict(&sl)
		old, ok := sBefore[key]
		if !ok {
			t.Fatalf("refreshed slot %v, which was not stored", key)
		}
		if !old.Guard.Admits(fzSecret(r, reqBody)) {
			t.Fatalf("refreshed %v with the wrong secret", key)
		}
		now := sAfter[key]
		sameSlot(t, sl, sAfter)
		if now.Token != old.Token || now.Limit != old.Limit || now.Weight != old.Weight || now.Guard != old.Guard || !now.AcquiredAt.Equal(old.AcquiredAt) {
			t.Fatalf("refresh changed more than expiry and labels: %v -> %v", old, now)
		}
		sBefore[key] = now
		unchanged()
	case r.Method == http.MethodDelete:
		var rel releasedSlotJSON
		strict(&rel)
		old, ok := sBefore[key]
		if !ok || !rel.Released || rel.Slot.Slot != slot {
			t.Fatalf("released %+v, stored %v", rel, ok)
		}
		sameSlot(t, rel.Slot, sBefore)
		if !old.Guard.Admits(fzSecret(r, reqBody)) {
			t.Fatalf("released %v with the wrong secret", key)
		}
		if _, still := sAfter[key]; still {
			t.Fatalf("released slot %v is still there", key)
		}
		delete(sBefore, key)
		unchanged()
	default:
		t.Fatalf("%s %s answered %d", r.Method, r.URL.Path, status)
	}
}

// sameSlot checks that the slot object describes the stored slot.
func sameSlot(t *testing.T, sl slotJSON, store fzSlots) {
	t.Helper()
	s, ok := store[fzSlotKey{locklock.ID{Namespace: sl.Namespace, Kind: sl.Kind, Name: sl.Name}, sl.Slot}]
	if !ok {
		t.Fatalf("the answer names slot %s of %s, which is not stored", sl.Slot, sl.Name)
	}
	if sl.FencingToken != s.Token || sl.Limit != s.Limit || sl.Weight != s.Weight || sl.AcquiredAt != formatTime(s.AcquiredAt) ||
		sl.ExpiresAt != formatTime(s.ExpiresAt) || sl.Protected != s.Protected() || sl.ExpiresIn < 0 ||
		sl.Holder != s.Holder || !maps.Equal(sl.Metadata, s.Metadata) {
		t.Fatalf("the answer %+v does not match the stored slot %v", sl, s)
	}
}

// checkFuzzSemaphorePage checks a listing of semaphores against the slots
// stored, as checkFuzzPage does one of locks.
func checkFuzzSemaphorePage(t *testing.T, r *http.Request, ns string, page semaphoreListJSON, store fzSlots) {
	t.Helper()
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		t.Fatalf("listed for a bad query: %v", err)
	}
	kind, prefix, after, limit := locklock.Kind(q.Get("kind")), q.Get("prefix"), q.Get("after"), locklock.DefaultListLimit
	if q.Has("limit") {
		if limit, err = strconv.Atoi(q.Get("limit")); err != nil || limit < 1 || limit > locklock.MaxListLimit {
			t.Fatalf("listed with limit %q", q.Get("limit"))
		}
	}
	if kind == locklock.KindUUID {
		prefix, after = strings.ToLower(prefix), strings.ToLower(after)
	}
	sums := map[string]semaphoreSummaryJSON{}
	for k, s := range store {
		if k.Namespace == ns && k.Kind == kind && strings.HasPrefix(k.Name, prefix) && k.Name > after {
			sum := sums[k.Name]
			sum.Name, sum.Kind, sum.Limit = k.Name, k.Kind, s.Limit
			sum.InUse += s.Weight
			sum.Slots++
			sums[k.Name] = sum
		}
	}
	names := slices.Sorted(maps.Keys(sums))
	next := ""
	if len(names) > limit {
		names, next = names[:limit], names[limit-1]
	}
	want := semaphoreListJSON{Semaphores: []semaphoreSummaryJSON{}, Next: next}
	for _, n := range names {
		want.Semaphores = append(want.Semaphores, sums[n])
	}
	if !reflect.DeepEqual(page, want) {
		t.Fatalf("listed %+v, want %+v", page, want)
	}
}
