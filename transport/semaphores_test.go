package transport

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/locklock/locklock/engines/memory"
	"github.com/locklock/locklock/locklock"
)

// Semaphores over HTTP (API.md §10): every outcome of each route, and bad
// input that must change nothing.

const takeS1 = `{"limit":2,"secret":"s1","expires_in":60}`

func TestSlotAcquire(t *testing.T) {
	runSemCases(t, []scase{{
		name: "a new slot without body fields but the limit",
		req:  post(semU1, `{"limit":4}`), status: http.StatusCreated,
		check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, _ []slotJSON) {
			got := slotBody(t, rec)
			want := slotJSON{
				Namespace: "public", Kind: "uuid", Name: u1, Slot: got.Slot, Limit: 4, Weight: 1,
				AcquiredAt: "2026-11-26T15:04:05.123Z", ExpiresAt: "2026-12-26T15:04:05.123Z",
				ExpiresIn: 2592000, FencingToken: got.FencingToken,
			}
			if !reflect.DeepEqual(got, want) || got.FencingToken == 0 || !locklock.ValidSlotID(got.Slot) {
				t.Errorf("slot %+v, want %+v", got, want)
			}
			noMember(t, rec, "holder", "metadata", "lock_delay")
			if sl, err := e.storedSlot("public", locklock.KindUUID, u1, got.Slot); err != nil || sl.Token != got.FencingToken || sl.Weight != 1 {
				t.Errorf("stored slot %+v, %v", sl, err)
			}
		},
	}, {
		name:   "every field",
		req:    post(semU1, `{"limit":4,"weight":3,"secret":"s1","expires_in":60,"wait":0,"holder":"worker-7","metadata":{"role":"render"}}`, "Content-Type", "application/json"),
		status: http.StatusCreated,
		check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, _ []slotJSON) {
			got := slotBody(t, rec)
			if got.Weight != 3 || got.Limit != 4 || !got.Protected || got.ExpiresIn != 60 || got.ExpiresAt != "2026-11-26T15:05:05.123Z" ||
				got.Holder != "worker-7" || !reflect.DeepEqual(got.Metadata, map[string]string{"role": "render"}) {
				t.Errorf("slot %+v", got)
			}
			if strings.Contains(rec.Body.String(), "s1") {
				t.Errorf("secret echoed: %s", rec.Body)
			}
		},
	}, {
		name: "secret in the header protects the slot",
		req:  post(semU1, `{"limit":2}`, "Locklock-Secret", "s1"), status: http.StatusCreated,
		check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, _ []slotJSON) {
			got := slotBody(t, rec)
			if !got.Protected {
				t.Error("not protected")
			}
			checkRecProblem(t, e.do(del(semU1+"/"+got.Slot, "")), http.StatusForbidden, codeSecretMismatch)
			e.mustSlot(del(semU1+"/"+got.Slot, `{"secret":"s1"}`))
		},
	}, {
		name:  "slots of one semaphore share it; tokens rise",
		setup: []req{post(semU1, takeS1)},
		req:   post(semU1, `{"limit":2}`), status: http.StatusCreated,
		check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, setup []slotJSON) {
			if got := slotBody(t, rec); got.FencingToken <= setup[0].FencingToken || got.Slot == setup[0].Slot {
				t.Errorf("second slot %+v after %+v", got, setup[0])
			}
		},
	}, {
		name:    "a retry with the same secret: 200, that slot unchanged, whatever it carries (checked before the limit)",
		setup:   []req{post(semU1, takeS1), post(semU1, `{"limit":2}`)},
		advance: 10 * time.Second,
		req:     post(semU1, `{"limit":3,"weight":3,"secret":"s1","expires_in":999,"holder":"other","metadata":{"x":"y"}}`),
		status:  http.StatusOK,
		check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, setup []slotJSON) {
			want := setup[0]
			want.ExpiresIn = 50
			if got := slotBody(t, rec); !reflect.DeepEqual(got, want) {
				t.Errorf("slot %+v, want %+v", got, want)
			}
		},
	}, {
		name:   "full: limit, in_use and Retry-After until the earliest expiry",
		setup:  []req{post(semU1, `{"limit":2,"expires_in":120}`), post(semU1, takeS1)},
		req:    post(semU1, `{"limit":2,"secret":"s2"}`),
		status: http.StatusConflict, code: codeSemaphoreFull, detail: "2 of 2 in use",
		check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, _ []slotJSON) {
			p := checkRecProblem(t, rec, http.StatusConflict, codeSemaphoreFull)
			if *p.Limit != 2 || *p.InUse != 2 {
				t.Errorf("limit %d, in_use %d", *p.Limit, *p.InUse)
			}
			wantHeader("Retry-After", "60")(t, e, rec, nil)
		},
	}, {
		name:    "full: Retry-After rounds up",
		setup:   []req{post(semU1, `{"limit":1,"expires_in":60}`)},
		advance: 58200 * time.Millisecond,
		req:     post(semU1, `{"limit":1}`),
		status:  http.StatusConflict, code: codeSemaphoreFull,
		check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, _ []slotJSON) {
			wantHeader("Retry-After", "2")(t, e, rec, nil)
		},
	}, {
		name:   "a weight that does not fit",
		setup:  []req{post(semU1, `{"limit":4,"weight":3}`)},
		req:    post(semU1, `{"limit":4,"weight":2}`),
		status: http.StatusConflict, code: codeSemaphoreFull,
		check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, _ []slotJSON) {
			if p := checkRecProblem(t, rec, http.StatusConflict, codeSemaphoreFull); *p.InUse != 3 || *p.Limit != 4 {
				t.Errorf("problem %+v", p)
			}
		},
	}, {
		name:   "a weight that just fits",
		setup:  []req{post(semU1, `{"limit":4,"weight":3}`)},
		req:    post(semU1, `{"limit":4}`),
		status: http.StatusCreated,
	}, {
		name:   "another limit while the semaphore has slots",
		setup:  []req{post(semU1, takeS1)},
		req:    post(semU1, `{"limit":3}`),
		status: http.StatusConflict, code: codeLimitMismatch, detail: "limit 2",
		check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, _ []slotJSON) {
			if p := checkRecProblem(t, rec, http.StatusConflict, codeLimitMismatch); *p.Limit != 2 {
				t.Errorf("limit %d, want the semaphore's 2", *p.Limit)
			}
			wantHeader("Retry-After", "")(t, e, rec, nil)
		},
	}, {
		name:    "expired slots make room, and the next acquire sets the limit afresh",
		setup:   []req{post(semU1, takeS1), post(semU1, `{"limit":2,"expires_in":60}`)},
		advance: time.Minute,
		req:     post(semU1, `{"limit":7,"weight":7}`),
		status:  http.StatusCreated,
		check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, setup []slotJSON) {
			if got := slotBody(t, rec); got.Limit != 7 || got.FencingToken <= setup[1].FencingToken {
				t.Errorf("slot %+v after %+v", got, setup[1])
			}
		},
	}, {
		name:   "a released slot makes room",
		setup:  []req{post(semU1, `{"limit":1,"secret":"s1"}`), del(semU1+"/"+slot0, `{"secret":"s1"}`)},
		req:    post(semU1, `{"limit":1}`),
		status: http.StatusCreated,
	}, {
		name:   "upper-case UUID is the same semaphore",
		setup:  []req{post(semU1, `{"limit":1}`)},
		req:    post(semPath("uuid", strings.ToUpper(u1)), `{"limit":1}`),
		status: http.StatusConflict, code: codeSemaphoreFull,
	}, {
		name:   "a lock and a semaphore may share a name",
		setup:  []req{post(semU1, `{"limit":1}`)},
		req:    post(uuidPath(u1), ""),
		status: http.StatusCreated,
		check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, setup []slotJSON) {
			e.must(get(uuidPath(u1)))
			e.mustSlot(get(semU1 + "/" + setup[0].Slot))
			e.mustSlot(del(semU1+"/"+setup[0].Slot, ""))
			e.must(get(uuidPath(u1))) // the lock stays
		},
	}, {
		name:   "key route",
		req:    post(semPath("key", "render-farm"), `{"limit":4,"holder":"w"}`, "Authorization", proKey),
		status: http.StatusCreated,
		check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, _ []slotJSON) {
			if got := slotBody(t, rec); got.Namespace != "acme" || got.Kind != "key" || got.Name != "render-farm" || got.Holder != "w" {
				t.Errorf("slot %+v", got)
			}
		},
	}})
}

// TestSlotAcquireRejected: each bad acquire is a 400 naming the field (or
// the name) and changes nothing.
func TestSlotAcquireRejected(t *testing.T) {
	held := []req{post(semU1, takeS1)}
	var cases []scase
	for _, c := range []struct{ name, body, code, detail string }{
		{"no body", "", codeInvalidBody, "limit is required"},
		{"no limit", `{"weight":1}`, codeInvalidBody, "limit is required"},
		{"limit 0", `{"limit":0}`, codeInvalidBody, "limit"},
		{"limit 10001", `{"limit":10001}`, codeInvalidBody, "limit"},
		{"limit -1", `{"limit":-1}`, codeInvalidBody, "limit"},
		{"limit out of int64", `{"limit":99999999999999999999}`, codeInvalidBody, "limit"},
		{"limit a string", `{"limit":"4"}`, codeInvalidBody, "limit"},
		{"limit a fraction", `{"limit":4.5}`, codeInvalidBody, "limit"},
		{"limit with an exponent", `{"limit":1e3}`, codeInvalidBody, "limit"},
		{"limit null", `{"limit":null}`, codeInvalidBody, "limit"},
		{"limit true", `{"limit":true}`, codeInvalidBody, "limit"},
		{"weight 0", `{"limit":4,"weight":0}`, codeInvalidBody, "weight"},
		{"weight over the limit", `{"limit":4,"weight":5}`, codeInvalidBody, "weight"},
		{"weight 10001", `{"limit":10000,"weight":10001}`, codeInvalidBody, "weight"},
		{"weight a string", `{"limit":4,"weight":"1"}`, codeInvalidBody, "weight"},
		{"weight null", `{"limit":4,"weight":null}`, codeInvalidBody, "weight"},
		{"lock_delay is no semaphore field", `{"limit":4,"lock_delay":0}`, codeUnknownField, "lock_delay"},
		{"a misspelt field", `{"limit":4,"wieght":1}`, codeUnknownField, "wieght"},
		{"limit given twice", `{"limit":4,"limit":4}`, codeInvalidBody, "limit"},
		{"expires_in 0", `{"limit":4,"expires_in":0}`, codeInvalidBody, "expires_in"},
		{"expires_in over the maximum", `{"limit":4,"expires_in":31536001}`, codeInvalidBody, "expires_in"},
		{"wait over the maximum", `{"limit":4,"wait":61}`, codeInvalidBody, "wait"},
		{"holder empty", `{"limit":4,"holder":""}`, codeInvalidBody, "holder"},
		{"metadata null", `{"limit":4,"metadata":null}`, codeInvalidBody, "metadata"},
		{"new secret with a trailing space", `{"limit":4,"secret":"s "}`, codeInvalidBody, "secret"},
		{"not an object", `[4]`, codeInvalidBody, "object"},
	} {
		// On a free semaphore and on one with a slot: nothing is created
		// and nothing taken.
		cases = append(cases,
			scase{name: c.name, req: post(semU1, c.body), status: http.StatusBadRequest, code: c.code, detail: c.detail},
			scase{name: c.name + ", semaphore held", setup: held, req: post(semU1, c.body), status: http.StatusBadRequest, code: c.code, detail: c.detail})
	}
	cases = append(cases, []scase{
		{name: "query parameter", req: post(semU1+"?secret=x", `{"limit":4}`), status: http.StatusBadRequest, code: codeUnknownField, detail: "secret"},
		{name: "query limit on POST", req: post(semU1+"?limit=4", ""), status: http.StatusBadRequest, code: codeUnknownField, detail: "limit"},
		{name: "bad UUID", req: post(semPath("uuid", "nope"), `{"limit":4}`), status: http.StatusBadRequest, code: codeInvalidUUID, detail: "nope"},
		{name: "empty UUID", req: post(semPath("uuid", ""), `{"limit":4}`), status: http.StatusBadRequest, code: codeInvalidUUID},
		{name: "bad key name", req: post(semPath("key", "a*b"), `{"limit":4}`, "Authorization", proKey), status: http.StatusBadRequest, code: codeInvalidName},
		{name: "key name of 256 characters", req: post(semPath("key", strings.Repeat("x", 256)), `{"limit":4}`, "Authorization", proKey), status: http.StatusBadRequest, code: codeInvalidName},
		{name: "header and body secrets differ", req: post(semU1, `{"limit":4,"secret":"a"}`, "Locklock-Secret", "b"), status: http.StatusBadRequest, code: codeInvalidBody},
		{name: "form body", req: post(semU1, "limit=4", "Content-Type", "application/x-www-form-urlencoded"), status: http.StatusUnsupportedMediaType, code: codeUnsupportedMediaType},
		{name: "body too large", req: post(semU1, `{"limit":4,"holder":"`+strings.Repeat("h", maxBody)+`"}`), status: http.StatusRequestEntityTooLarge, code: codeBodyTooLarge},
	}...)
	runSemCases(t, cases)
}

func TestSlotRoutes(t *testing.T) {
	protected := []req{post(semU1, `{"limit":2,"secret":"s1","expires_in":60,"holder":"h","metadata":{"a":"b"}}`)}
	open := []req{post(semU1, `{"limit":2,"expires_in":60}`)}
	slot := semU1 + "/" + slot0
	same := func(t *testing.T, e *env, rec *httptest.ResponseRecorder, setup []slotJSON) {
		if got := slotBody(t, rec); !reflect.DeepEqual(got, setup[0]) {
			t.Errorf("slot %+v, want %+v", got, setup[0])
		}
	}
	released := func(t *testing.T, e *env, rec *httptest.ResponseRecorder, setup []slotJSON) {
		if got := releasedSlotBody(t, rec); !reflect.DeepEqual(got, setup[0]) {
			t.Errorf("released %+v, want %+v", got, setup[0])
		}
		if _, err := e.storedSlot("public", locklock.KindUUID, u1, setup[0].Slot); !errors.Is(err, locklock.ErrSlotNotFound) {
			t.Errorf("the slot is still there: %v", err)
		}
		// It was the semaphore's last slot: the semaphore is gone.
		checkRecProblem(t, e.do(get(semU1)), http.StatusNotFound, codeSemaphoreNotFound)
	}
	refreshed := func(expiresAt string, expiresIn int64, holder string, md map[string]string) func(*testing.T, *env, *httptest.ResponseRecorder, []slotJSON) {
		return func(t *testing.T, e *env, rec *httptest.ResponseRecorder, setup []slotJSON) {
			want := setup[0]
			want.ExpiresAt, want.ExpiresIn, want.Holder, want.Metadata = expiresAt, expiresIn, holder, md
			if got := slotBody(t, rec); !reflect.DeepEqual(got, want) {
				t.Errorf("slot %+v, want %+v", got, want)
			}
			if sl, err := e.storedSlot("public", locklock.KindUUID, u1, setup[0].Slot); err != nil || formatTime(sl.ExpiresAt) != expiresAt || sl.Holder != holder {
				t.Errorf("stored %+v, %v", sl, err)
			}
		}
	}
	malformed := []string{"nope", "Wq3x9Zt0Rr6uKp1LmN2b4", "Wq3x9Zt0Rr6uKp1LmN2b4AA", "Wq3x9Zt0Rr6uKp1LmN2b4.", "Wq3x9Zt0Rr6uKp1LmN2b4%3D", ""}
	var cases []scase
	cases = append(cases, []scase{
		{name: "GET", setup: protected, advance: 10500 * time.Millisecond, req: get(slot), status: http.StatusOK,
			check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, setup []slotJSON) {
				want := setup[0]
				want.ExpiresIn = 49
				if got := slotBody(t, rec); !reflect.DeepEqual(got, want) {
					t.Errorf("slot %+v, want %+v", got, want)
				}
			}},
		{name: "HEAD", setup: protected, req: head(slot), status: http.StatusOK,
			check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, _ []slotJSON) {
				if rec.Body.Len() != 0 {
					t.Errorf("HEAD body %q", rec.Body)
				}
			}},
		{name: "GET upper-case UUID", setup: protected, req: get(semPath("uuid", strings.ToUpper(u1)) + "/" + slot0), status: http.StatusOK, check: same},
		{name: "GET a slot that never was", setup: protected, req: get(semU1 + "/Wq3x9Zt0Rr6uKp1LmN2b4A"), status: http.StatusNotFound, code: codeSlotNotFound},
		{name: "HEAD a slot that never was", setup: protected, req: head(semU1 + "/Wq3x9Zt0Rr6uKp1LmN2b4A"), status: http.StatusNotFound},
		{name: "GET expired", setup: protected, advance: time.Minute, req: get(slot), status: http.StatusNotFound, code: codeSlotNotFound},
		{name: "GET in another namespace", setup: protected, req: get(slot, "Authorization", proKey), status: http.StatusNotFound, code: codeSlotNotFound},
		{name: "GET of another semaphore's slot", setup: protected, req: get(semPath("uuid", u2) + "/" + slot0), status: http.StatusNotFound, code: codeSlotNotFound},
		{name: "a semaphore is no lock", setup: protected, req: get(uuidPath(u1)), status: http.StatusNotFound, code: codeLockNotFound},
		{name: "bad semaphore name with a valid slot id", setup: protected, req: get(semPath("uuid", "nope") + "/" + slot0), status: http.StatusBadRequest, code: codeInvalidUUID},
		{name: "a name with a slash is judged as a name", setup: protected, req: get(semPath("key", "a/b")+"/"+slot0, "Authorization", proKey), status: http.StatusBadRequest, code: codeInvalidName},
		{name: "query parameter", setup: protected, req: get(slot + "?x=1"), status: http.StatusBadRequest, code: codeUnknownField},

		{name: "PATCH: a new expiry, same token", setup: protected, advance: 30 * time.Second,
			req: patch(slot, `{"secret":"s1","expires_in":120}`), status: http.StatusOK,
			check: refreshed("2026-11-26T15:06:35.123Z", 120, "h", map[string]string{"a": "b"})},
		{name: "PATCH: holder and metadata keep the expiry", setup: protected,
			req: patch(slot, `{"holder":"h2","metadata":{}}`, "Locklock-Secret", "s1"), status: http.StatusOK,
			check: refreshed("2026-11-26T15:05:05.123Z", 60, "h2", nil)},
		{name: "PATCH: unprotected, no body: the default lifetime", setup: open,
			req: patch(slot, ""), status: http.StatusOK,
			check: refreshed("2026-12-26T15:04:05.123Z", 2592000, "", nil)},
		{name: "PATCH: wrong secret", setup: protected, req: patch(slot, `{"secret":"s2"}`), status: http.StatusForbidden, code: codeSecretMismatch},
		{name: "PATCH: no secret", setup: protected, req: patch(slot, `{"expires_in":5}`), status: http.StatusForbidden, code: codeSecretMismatch},
		{name: "PATCH: lock_delay", setup: protected, req: patch(slot, `{"secret":"s1","lock_delay":1}`), status: http.StatusBadRequest, code: codeUnknownField, detail: "lock_delay"},
		{name: "PATCH: limit is not refreshed", setup: protected, req: patch(slot, `{"secret":"s1","limit":3}`), status: http.StatusBadRequest, code: codeUnknownField, detail: "limit"},
		{name: "PATCH: expires_in 0", setup: protected, req: patch(slot, `{"secret":"s1","expires_in":0}`), status: http.StatusBadRequest, code: codeInvalidBody, detail: "expires_in"},
		{name: "PATCH: expired", setup: protected, advance: time.Minute, req: patch(slot, `{"secret":"s1"}`), status: http.StatusNotFound, code: codeSlotNotFound},

		{name: "DELETE: body secret", setup: protected, req: del(slot, `{"secret":"s1"}`), status: http.StatusOK, check: released},
		{name: "DELETE: header secret", setup: protected, req: del(slot, "", "Locklock-Secret", "s1"), status: http.StatusOK, check: released},
		{name: "DELETE: unprotected, no secret", setup: open, req: del(slot, ""), status: http.StatusOK, check: released},
		{name: "DELETE: unprotected, any secret", setup: open, req: del(slot, `{"secret":"whatever"}`), status: http.StatusOK, check: released},
		{name: "DELETE: wrong secret", setup: protected, req: del(slot, `{"secret":"s2"}`), status: http.StatusForbidden, code: codeSecretMismatch},
		{name: "DELETE: no secret", setup: protected, req: del(slot, ""), status: http.StatusForbidden, code: codeSecretMismatch},
		{name: "DELETE: header and body differ", setup: protected, req: del(slot, `{"secret":"s1"}`, "Locklock-Secret", "s2"), status: http.StatusBadRequest, code: codeInvalidBody},
		{name: "DELETE: unknown field", setup: protected, req: del(slot, `{"secret":"s1","force":true}`), status: http.StatusBadRequest, code: codeUnknownField},
		{name: "DELETE: already released", setup: append(protected, del(slot, `{"secret":"s1"}`)), req: del(slot, `{"secret":"s1"}`), status: http.StatusNotFound, code: codeSlotNotFound},
		{name: "DELETE: expired", setup: protected, advance: time.Minute, req: del(slot, `{"secret":"s1"}`), status: http.StatusNotFound, code: codeSlotNotFound},
		{name: "DELETE: in another namespace", setup: protected, req: del(slot, `{"secret":"s1"}`, "Authorization", proKey), status: http.StatusNotFound, code: codeSlotNotFound},
		{name: "DELETE: one slot of two; the semaphore stays", setup: append(protected, open[0]), req: del(semU1+"/"+slot1, ""), status: http.StatusOK,
			check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, setup []slotJSON) {
				if sem := semaphoreBody(t, e.do(get(semU1))); sem.InUse != 1 || len(sem.Slots) != 1 || sem.Slots[0].Slot != setup[0].Slot {
					t.Errorf("semaphore %+v after releasing %s", sem, setup[1].Slot)
				}
			}},
	}...)
	for _, id := range malformed {
		for _, q := range []req{get(semU1 + "/" + id), head(semU1 + "/" + id), patch(semU1+"/"+id, `{"secret":"s1"}`), del(semU1+"/"+id, `{"secret":"s1"}`)} {
			c := scase{name: "malformed slot id " + q.method + " " + id, setup: protected, req: q, status: http.StatusNotFound, code: codeSlotNotFound}
			cases = append(cases, c)
		}
	}
	runSemCases(t, cases)
}

func TestSemaphoreInspect(t *testing.T) {
	three := []req{post(semU1, `{"limit":5,"weight":2,"secret":"a"}`), post(semU1, `{"limit":5}`), post(semU1, `{"limit":5,"weight":2,"expires_in":10}`)}
	runSemCases(t, []scase{{
		name: "every slot by token", setup: three, req: get(semU1), status: http.StatusOK,
		check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, setup []slotJSON) {
			want := semaphoreJSON{Namespace: "public", Kind: "uuid", Name: u1, Limit: 5, InUse: 5, Slots: setup}
			if got := semaphoreBody(t, rec); !reflect.DeepEqual(got, want) {
				t.Errorf("semaphore %+v, want %+v", got, want)
			}
			noMember(t, rec, "next")
		},
	}, {
		name: "pages", setup: three, req: get(semU1 + "?limit=2"), status: http.StatusOK,
		check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, setup []slotJSON) {
			first := semaphoreBody(t, rec)
			if len(first.Slots) != 2 || first.InUse != 5 || first.Next == "" {
				t.Fatalf("first page %+v", first)
			}
			if !reflect.DeepEqual(first.Slots, setup[:2]) {
				t.Errorf("first page %+v, want %+v", first.Slots, setup[:2])
			}
			second := semaphoreBody(t, e.do(get(semU1+"?limit=2&after="+first.Next)))
			if !reflect.DeepEqual(second.Slots, setup[2:]) || second.Next != "" || second.InUse != 5 {
				t.Errorf("second page %+v", second)
			}
			past := semaphoreBody(t, e.do(get(semU1+"?after=18446744073709551615")))
			if len(past.Slots) != 0 || past.InUse != 5 || !strings.Contains(e.do(get(semU1+"?after=18446744073709551615")).Body.String(), `"slots":[]`) {
				t.Errorf("a page past the last slot %+v", past)
			}
		},
	}, {
		name: "expired slots are not shown", setup: three, advance: 10 * time.Second, req: get(semU1), status: http.StatusOK,
		check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, setup []slotJSON) {
			if got := semaphoreBody(t, rec); got.InUse != 3 || len(got.Slots) != 2 {
				t.Errorf("semaphore %+v", got)
			}
		},
	}, {
		name: "HEAD", setup: three, req: head(semU1), status: http.StatusOK,
		check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, _ []slotJSON) {
			if rec.Body.Len() != 0 {
				t.Errorf("HEAD body %q", rec.Body)
			}
		},
	},
		{name: "never taken", req: get(semU1), status: http.StatusNotFound, code: codeSemaphoreNotFound},
		{name: "HEAD never taken", req: head(semU1), status: http.StatusNotFound},
		{name: "every slot expired", setup: three, advance: 31 * 24 * time.Hour, req: get(semU1), status: http.StatusNotFound, code: codeSemaphoreNotFound},
		{name: "another namespace", setup: three, req: get(semU1, "Authorization", proKey), status: http.StatusNotFound, code: codeSemaphoreNotFound},
		{name: "a lock is no semaphore", setup: nil, req: get(semPath("uuid", u2)), status: http.StatusNotFound, code: codeSemaphoreNotFound},
		{name: "limit 0", setup: three, req: get(semU1 + "?limit=0"), status: http.StatusBadRequest, code: codeInvalidBody, detail: "limit"},
		{name: "limit 1001", setup: three, req: get(semU1 + "?limit=1001"), status: http.StatusBadRequest, code: codeInvalidBody, detail: "limit"},
		{name: "limit x", setup: three, req: get(semU1 + "?limit=x"), status: http.StatusBadRequest, code: codeInvalidBody, detail: "limit"},
		{name: "after x", setup: three, req: get(semU1 + "?after=x"), status: http.StatusBadRequest, code: codeInvalidBody, detail: "after"},
		{name: "after negative", setup: three, req: get(semU1 + "?after=-1"), status: http.StatusBadRequest, code: codeInvalidBody, detail: "after"},
		{name: "limit twice", setup: three, req: get(semU1 + "?limit=1&limit=1"), status: http.StatusBadRequest, code: codeInvalidBody, detail: "limit"},
		{name: "unknown parameter", setup: three, req: get(semU1 + "?secret=a"), status: http.StatusBadRequest, code: codeUnknownField, detail: "secret"},
		{name: "prefix is a listing's", setup: three, req: get(semU1 + "?prefix=a"), status: http.StatusBadRequest, code: codeUnknownField, detail: "prefix"},
		{name: "HEAD with a bad query", setup: three, req: head(semU1 + "?limit=0"), status: http.StatusBadRequest},
		{name: "bad name", req: get(semPath("uuid", "nope")), status: http.StatusBadRequest, code: codeInvalidUUID},
	})
}

func TestSemaphoreList(t *testing.T) {
	acme := []string{"Authorization", proKey}
	setup := []req{
		post(semPath("key", "pool-b"), `{"limit":3,"weight":2}`, acme...),
		post(semPath("key", "pool-a"), `{"limit":4}`, acme...),
		post(semPath("key", "pool-a"), `{"limit":4,"weight":2}`, acme...),
		post(semPath("key", "other"), `{"limit":1}`, acme...),
		post(semPath("uuid", u1), `{"limit":1}`, acme...),
		post(semPath("uuid", u2), `{"limit":1}`, "Authorization", devKey),
		post(uuidPath(u2), "", acme...), // a lock is no semaphore
	}
	page := func(t *testing.T, rec *httptest.ResponseRecorder) semaphoreListJSON {
		t.Helper()
		var p semaphoreListJSON
		decodeStrict(t, rec.Body.Bytes(), &p)
		return p
	}
	e := newEnv(t)
	for _, q := range setup {
		if rec := e.do(q); rec.Code != http.StatusCreated {
			t.Fatalf("setup %s %s: %d %s", q.method, q.path, rec.Code, rec.Body)
		}
	}
	rec := e.do(get("/semaphores?kind=key&prefix=pool-", acme...))
	want := semaphoreListJSON{Semaphores: []semaphoreSummaryJSON{
		{Name: "pool-a", Kind: "key", Limit: 4, InUse: 3, Slots: 2},
		{Name: "pool-b", Kind: "key", Limit: 3, InUse: 2, Slots: 1},
	}}
	if got := page(t, rec); rec.Code != http.StatusOK || !reflect.DeepEqual(got, want) {
		t.Errorf("listing %d %+v, want %+v", rec.Code, got, want)
	}
	noMember(t, rec, "next", "namespace")

	first := page(t, e.do(get("/semaphores?kind=key&limit=1", acme...)))
	if len(first.Semaphores) != 1 || first.Semaphores[0].Name != "other" || first.Next != "other" {
		t.Errorf("first page %+v", first)
	}
	rest := page(t, e.do(get("/semaphores?kind=key&after="+first.Next, acme...)))
	if len(rest.Semaphores) != 2 || rest.Semaphores[0].Name != "pool-a" || rest.Next != "" {
		t.Errorf("next page %+v", rest)
	}
	if uuids := page(t, e.do(get("/semaphores?kind=uuid", acme...))); len(uuids.Semaphores) != 1 || uuids.Semaphores[0].Name != u1 {
		t.Errorf("acme's UUID semaphores %+v (its lock %s must not show)", uuids, u2)
	}
	if dev := page(t, e.do(get("/semaphores?kind=uuid", "Authorization", devKey))); len(dev.Semaphores) != 1 || dev.Semaphores[0].Name != u2 {
		t.Errorf("devco's semaphores %+v", dev)
	}
	if dev := page(t, e.do(get("/semaphores?kind=key", "Authorization", devKey))); len(dev.Semaphores) != 0 || !strings.Contains(e.do(get("/semaphores?kind=key", "Authorization", devKey)).Body.String(), `"semaphores":[]`) {
		t.Errorf("devco sees acme's semaphores: %+v", dev)
	}
	if head := e.do(head("/semaphores?kind=key", acme...)); head.Code != http.StatusOK || head.Body.Len() != 0 {
		t.Errorf("HEAD: %d %q", head.Code, head.Body)
	}
	for _, c := range []struct {
		q      req
		status int
		code   string
	}{
		{get("/semaphores?kind=key"), http.StatusUnauthorized, codeUnauthorized},
		{get("/semaphores", acme...), http.StatusBadRequest, codeInvalidBody},
		{get("/semaphores?kind=lock", acme...), http.StatusBadRequest, codeInvalidBody},
		{get("/semaphores?kind=key&limit=0", acme...), http.StatusBadRequest, codeInvalidBody},
		{get("/semaphores?kind=key&limit=1001", acme...), http.StatusBadRequest, codeInvalidBody},
		{get("/semaphores?kind=key&prefix=a*", acme...), http.StatusBadRequest, codeInvalidName},
		{get("/semaphores?kind=key&sort=name", acme...), http.StatusBadRequest, codeUnknownField},
		{get("/semaphores?kind=key", "Authorization", bannedKey), http.StatusForbidden, codeForbidden},
	} {
		checkRecProblem(t, e.do(c.q), c.status, c.code)
	}
}

// TestSemaphoreCallers: semaphore names follow the plans of §5 exactly as
// lock names do, and namespaces never see each other's semaphores.
func TestSemaphoreCallers(t *testing.T) {
	var cases []scase
	slotted := semPath("key", "build") + "/Wq3x9Zt0Rr6uKp1LmN2b4A"
	for _, name := range []string{"build", "", "a/b", "not%20valid!"} {
		sem := semPath("key", name)
		for _, q := range []req{post(sem, `{"limit":1}`), get(sem), head(sem), get(sem + "/Wq3x9Zt0Rr6uKp1LmN2b4A"), head(slotted), patch(slotted, ""), del(slotted, "")} {
			if q.method == http.MethodPost && strings.Contains(name, "/") {
				continue // a slot's path, where POST is 405
			}
			cases = append(cases,
				scase{name: "anonymous " + q.method + " " + q.path, req: q, status: http.StatusUnauthorized, code: codeUnauthorized},
				scase{name: "developer plan " + q.method + " " + q.path, req: withHeader(q, "Authorization", devKey), status: http.StatusForbidden, code: codeForbidden})
		}
	}
	for _, q := range []req{post(semU1, `{"limit":1}`), get(semU1), del(semU1+"/Wq3x9Zt0Rr6uKp1LmN2b4A", "")} {
		cases = append(cases,
			scase{name: "unknown key " + q.method, req: withHeader(q, "Authorization", badKey), status: http.StatusUnauthorized, code: codeUnauthorized},
			scase{name: "revoked key " + q.method, req: withHeader(q, "Authorization", bannedKey), status: http.StatusForbidden, code: codeForbidden},
			scase{name: "authenticator bug " + q.method, req: withHeader(q, "Authorization", brokenKey), status: http.StatusInternalServerError, code: codeInternal})
	}
	cases = append(cases, []scase{{
		name:  "namespaces are separate: the same UUID, another limit",
		setup: []req{post(semU1, `{"limit":1,"secret":"s1"}`)},
		req:   post(semU1, `{"limit":5,"secret":"s1"}`, "Authorization", proKey), status: http.StatusCreated,
		check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, setup []slotJSON) {
			got := slotBody(t, rec)
			if got.Namespace != "acme" || got.Limit != 5 {
				t.Errorf("slot %+v", got)
			}
			// Neither sees the other's slot, by semaphore or by id.
			if sem := semaphoreBody(t, e.do(get(semU1, "Authorization", proKey))); len(sem.Slots) != 1 || sem.Slots[0].Slot != got.Slot {
				t.Errorf("acme's semaphore %+v", sem)
			}
			checkRecProblem(t, e.do(get(semU1+"/"+got.Slot)), http.StatusNotFound, codeSlotNotFound)
			checkRecProblem(t, e.do(del(semU1+"/"+setup[0].Slot, `{"secret":"s1"}`, "Authorization", devKey)), http.StatusNotFound, codeSlotNotFound)
			e.mustSlot(get(semU1 + "/" + setup[0].Slot))
		},
	}, {
		name: "a developer key uses UUID semaphores in its namespace",
		req:  post(semU1, `{"limit":1}`, "Authorization", devKey), status: http.StatusCreated,
		check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, _ []slotJSON) {
			if got := slotBody(t, rec); got.Namespace != "devco" {
				t.Errorf("namespace %q", got.Namespace)
			}
		},
	}, {
		name:  "pro GET, PATCH and DELETE a key slot",
		setup: []req{post(semPath("key", "build"), `{"limit":1,"secret":"s1"}`, "Authorization", proKey)},
		req:   get(semPath("key", "build")+"/"+slot0, "Authorization", proKey), status: http.StatusOK,
		check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, setup []slotJSON) {
			path := semPath("key", "build") + "/" + setup[0].Slot
			if got := e.mustSlot(patch(path, `{"secret":"s1","expires_in":7}`, "Authorization", proKey)); got.ExpiresIn != 7 {
				t.Errorf("PATCH %+v", got)
			}
			e.mustSlot(del(path, "", "Authorization", proKey, "Locklock-Secret", "s1"))
			checkRecProblem(t, e.do(get(semPath("key", "build"), "Authorization", proKey)), http.StatusNotFound, codeSemaphoreNotFound)
		},
	}}...)
	runSemCases(t, cases)
}

func withHeader(q req, kv ...string) req {
	q.hdr = append(append([]string(nil), q.hdr...), kv...)
	return q
}

func TestSemaphoreRouteErrors(t *testing.T) {
	runSemCases(t, []scase{
		{name: "PUT semaphore", req: req{method: http.MethodPut, path: semU1, body: "{}"}, status: http.StatusMethodNotAllowed, code: codeMethodNotAllowed,
			check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, _ []slotJSON) {
				wantHeader("Allow", "GET, HEAD, POST")(t, e, rec, nil)
			}},
		{name: "DELETE semaphore", req: del(semU1, ""), status: http.StatusMethodNotAllowed, code: codeMethodNotAllowed},
		{name: "POST slot", req: post(semU1+"/Wq3x9Zt0Rr6uKp1LmN2b4A", `{"limit":1}`), status: http.StatusMethodNotAllowed, code: codeMethodNotAllowed,
			check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, _ []slotJSON) {
				wantHeader("Allow", "DELETE, GET, HEAD, PATCH")(t, e, rec, nil)
			}},
		{name: "POST list", req: post("/semaphores", ""), status: http.StatusMethodNotAllowed, code: codeMethodNotAllowed,
			check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, _ []slotJSON) {
				wantHeader("Allow", "GET, HEAD")(t, e, rec, nil)
			}},
		{name: "semaphore", req: get("/semaphore"), status: http.StatusNotFound, code: codeNotFound},
		{name: "kind without slash", req: post("/semaphore/uuid", ""), status: http.StatusNotFound, code: codeNotFound},
		{name: "unknown kind", req: post("/semaphore/other/x", ""), status: http.StatusNotFound, code: codeNotFound},
		{name: "semaphores with slash", req: get("/semaphores/"), status: http.StatusNotFound, code: codeNotFound},
	})
	e := newEnv(t)
	_ = e.engine.Close()
	rec := e.do(post(semU1, `{"limit":1}`))
	checkRecProblem(t, rec, http.StatusServiceUnavailable, codeUnavailable)
	wantHeader("Retry-After", "1")(t, e, rec, nil)
}

// An engine that stores no semaphores (here the memory engine with that
// ability hidden) answers every semaphore route with 503, saying why; its
// locks work.
func TestEngineWithoutSemaphores(t *testing.T) {
	eng := memory.New()
	t.Cleanup(func() { _ = eng.Close() })
	h := NewHandler(locklock.NewService(struct{ locklock.Engine }{eng}), WithAuthenticator(testAuth))
	e := &env{t: t, h: h}
	for _, q := range []req{post(semU1, `{"limit":1}`), get(semU1), get(semU1 + "/Wq3x9Zt0Rr6uKp1LmN2b4A"), del(semU1+"/Wq3x9Zt0Rr6uKp1LmN2b4A", ""), get("/semaphores?kind=uuid", "Authorization", proKey)} {
		p := checkRecProblem(t, e.do(q), http.StatusServiceUnavailable, codeUnavailable)
		if !strings.Contains(p.Detail, "does not store semaphores") {
			t.Errorf("%s %s: detail %q", q.method, q.path, p.Detail)
		}
	}
	if rec := e.do(post(uuidPath(u1), "")); rec.Code != http.StatusCreated {
		t.Errorf("a lock: %d %s", rec.Code, rec.Body)
	}
}
