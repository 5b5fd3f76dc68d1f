package transport

import (
	"context"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
)

// Helpers of the semaphore tests (API.md §10).

func semPath(kind, name string) string { return "/semaphore/" + kind + "/" + name }

// semU1 is the UUID semaphore most tests use; slot0 and slot1 stand for the
// ids of the first setup requests' slots (scase.fill).
var semU1 = semPath("uuid", u1)

const (
	slot0 = "{slot0}"
	slot1 = "{slot1}"
)

// scase is tcase for semaphores: one request against a fresh service after
// setup requests that must succeed; "{slotN}" in a path is the id of the
// slot the N-th setup request answered with.
type scase struct {
	name    string
	setup   []req
	advance time.Duration
	req     req
	status  int
	code    string
	detail  string // a problem's detail must contain it (the field it names)
	check   func(t *testing.T, e *env, rec *httptest.ResponseRecorder, setup []slotJSON)
}

func fillSlots(q req, setup []slotJSON) req {
	for i, s := range setup {
		q.path = strings.ReplaceAll(q.path, "{slot"+strconv.Itoa(i)+"}", s.Slot)
	}
	return q
}

// runSemCases runs each case and, for every rejected request, checks that
// it answered with a proper problem and changed no lock and no slot.
func runSemCases(t *testing.T, cases []scase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			var setup []slotJSON
			for _, q := range tc.setup {
				setup = append(setup, e.mustSlot(fillSlots(q, setup)))
			}
			e.clock.Advance(tc.advance)
			locks, slots := e.snapshot(), e.slots()
			rec := e.do(fillSlots(tc.req, setup))
			if tc.status >= 400 {
				if tc.req.method == http.MethodHead {
					checkHeadProblem(t, rec, tc.status)
				} else {
					p := checkRecProblem(t, rec, tc.status, tc.code)
					if !strings.Contains(p.Detail, tc.detail) {
						t.Errorf("detail %q does not name %q", p.Detail, tc.detail)
					}
				}
				e.assertUnchanged(locks)
				e.assertSlotsUnchanged(slots)
			} else {
				if rec.Code != tc.status {
					t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
				}
				if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type %q", ct)
				}
			}
			if tc.check != nil {
				tc.check(t, e, rec, setup)
			}
		})
	}
}

// mustSlot runs a request that has to succeed and returns its slot: the
// answer of an acquire, a refresh, a slot's GET or a release.
func (e *env) mustSlot(q req) slotJSON {
	e.t.Helper()
	rec := e.do(q)
	if rec.Code/100 != 2 {
		e.t.Fatalf("%s %s: status %d: %s", q.method, q.path, rec.Code, rec.Body)
	}
	if q.method == http.MethodDelete {
		return releasedSlotBody(e.t, rec)
	}
	return slotBody(e.t, rec)
}

func slotBody(t *testing.T, rec *httptest.ResponseRecorder) slotJSON {
	t.Helper()
	var s slotJSON
	decodeStrict(t, rec.Body.Bytes(), &s)
	return s
}

func releasedSlotBody(t *testing.T, rec *httptest.ResponseRecorder) slotJSON {
	t.Helper()
	var r releasedSlotJSON
	decodeStrict(t, rec.Body.Bytes(), &r)
	if !r.Released {
		t.Errorf("released = false in %s", rec.Body)
	}
	return r.Slot
}

func semaphoreBody(t *testing.T, rec *httptest.ResponseRecorder) semaphoreJSON {
	t.Helper()
	var s semaphoreJSON
	decodeStrict(t, rec.Body.Bytes(), &s)
	return s
}

// slots is every live slot of every test namespace, as stored.
func (e *env) slots() []locklock.Slot {
	e.t.Helper()
	var all []locklock.Slot
	ctx := context.Background()
	for _, ns := range []string{"public", "acme", "devco"} {
		for _, kind := range []locklock.Kind{locklock.KindUUID, locklock.KindKey} {
			page, err := e.svc.ListSemaphores(ctx, locklock.ListRequest{Namespace: ns, Kind: kind, Limit: locklock.MaxListLimit})
			if err != nil {
				e.t.Fatalf("slots: %v", err)
			}
			for _, sum := range page.Semaphores {
				sem, err := e.svc.GetSemaphore(ctx, locklock.SemaphoreRequest{ID: sum.ID})
				if err != nil {
					e.t.Fatalf("slots of %v: %v", sum.ID, err)
				}
				for _, sl := range sem.Slots {
					sl.ObservedAt = time.Time{}
					all = append(all, sl)
				}
			}
		}
	}
	return all
}

func (e *env) assertSlotsUnchanged(before []locklock.Slot) {
	e.t.Helper()
	if after := e.slots(); !reflect.DeepEqual(before, after) {
		e.t.Errorf("a rejected request changed slots:\nbefore %v\nafter  %v", before, after)
	}
}

// storedSlot reads a slot straight from the Service.
func (e *env) storedSlot(ns string, kind locklock.Kind, name, slot string) (locklock.Slot, error) {
	e.t.Helper()
	id, err := locklock.NewID(ns, kind, name)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.svc.GetSlot(context.Background(), id, slot)
}
