package transport

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/locklock/locklock/locklock"
)

// Holders, metadata and lock-delay over HTTP (API.md §8).

const labelled = `{"secret":"s1","expires_in":60,"holder":"host-7:4242","metadata":{"addr":"10.0.0.7:8080","role":"leader"},"lock_delay":15}`

// wantStored checks the lock as the Service holds it.
func wantStored(t *testing.T, e *env, holder string, md map[string]string, delay time.Duration) {
	t.Helper()
	l, err := e.get("public", locklock.KindUUID, u1)
	if err != nil {
		t.Fatalf("stored lock: %v", err)
	}
	if l.Holder != holder || !reflect.DeepEqual(l.Metadata, md) || l.LockDelay != delay {
		t.Errorf("stored holder %q, metadata %v, lock-delay %v; want %q, %v, %v", l.Holder, l.Metadata, l.LockDelay, holder, md, delay)
	}
}

// noMember checks that the raw JSON answer has none of the members.
func noMember(t *testing.T, rec *httptest.ResponseRecorder, names ...string) {
	t.Helper()
	for _, n := range names {
		if strings.Contains(rec.Body.String(), `"`+n+`"`) {
			t.Errorf("the answer shows %s: %s", n, rec.Body)
		}
	}
}

func TestLabelsAcquire(t *testing.T) {
	md := map[string]string{"addr": "10.0.0.7:8080", "role": "leader"}
	long := map[string]string{strings.Repeat("N", locklock.MaxMetadataNameLen): "v"}
	for i := range locklock.MaxMetadataMembers - 1 {
		long[fmt.Sprintf("n%02d", i)] = "v"
	}
	long["n00"] = strings.Repeat("v", locklock.MaxMetadataValueLen)
	long["n01"] = ""
	runCases(t, []tcase{{
		name: "holder, metadata and lock_delay are kept and shown",
		req:  post(uuidPath(u1), labelled), status: http.StatusCreated,
		check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, _ []lockJSON) {
			got := lockBody(t, rec)
			if got.Holder != "host-7:4242" || !reflect.DeepEqual(got.Metadata, md) || got.LockDelay != 15 {
				t.Errorf("lock %+v", got)
			}
			wantStored(t, e, "host-7:4242", md, 15*time.Second)
			if again := e.must(get(uuidPath(u1))); !reflect.DeepEqual(again, got) {
				t.Errorf("GET %+v, want %+v", again, got)
			}
		},
	}, {
		name: "text that needs escaping reads back as sent",
		req:  post(uuidPath(u1), `{"holder":"ü✓ <b>&\"q\\ \ud83d\ude00","metadata":{"a.b_c-D":"x\"<y>\\\u00a0","e":""}}`), status: http.StatusCreated,
		check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, _ []lockJSON) {
			want := map[string]string{"a.b_c-D": "x\"<y>\\\u00a0", "e": ""}
			got := lockBody(t, rec)
			if got.Holder != "ü✓ <b>&\"q\\ 😀" || !reflect.DeepEqual(got.Metadata, want) {
				t.Errorf("lock %+v", got)
			}
			wantStored(t, e, "ü✓ <b>&\"q\\ 😀", want, 0)
		},
	}, {
		name: "none set: no holder, metadata or lock_delay in the lock object",
		req:  post(uuidPath(u1), `{"metadata":{},"lock_delay":0}`), status: http.StatusCreated,
		check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, _ []lockJSON) {
			noMember(t, rec, "holder", "metadata", "lock_delay")
			wantStored(t, e, "", nil, 0)
		},
	}, {
		name: "at the limits",
		req: post(uuidPath(u1), fmt.Sprintf(`{"holder":%q,"metadata":%s,"lock_delay":60}`,
			strings.Repeat("h", locklock.MaxHolderLen), mustJSON(t, long))),
		status: http.StatusCreated,
		check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, _ []lockJSON) {
			wantStored(t, e, strings.Repeat("h", locklock.MaxHolderLen), long, 60*time.Second)
		},
	}, {
		name:  "a retry with the same secret changes nothing, whatever it carries",
		setup: []req{post(uuidPath(u1), labelled)},
		req:   post(uuidPath(u1), `{"secret":"s1","holder":"other","metadata":{"x":"y"},"lock_delay":1}`), status: http.StatusOK,
		check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, setup []lockJSON) {
			if got := lockBody(t, rec); !reflect.DeepEqual(got, setup[0]) {
				t.Errorf("lock %+v, want %+v", got, setup[0])
			}
			wantStored(t, e, "host-7:4242", md, 15*time.Second)
		},
	}, {
		name:   "key route",
		req:    post(keyPath("leader"), `{"holder":"h","metadata":{"k":"v"}}`, "Authorization", proKey),
		status: http.StatusCreated,
		check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, _ []lockJSON) {
			if got := lockBody(t, rec); got.Holder != "h" || got.Metadata["k"] != "v" {
				t.Errorf("lock %+v", got)
			}
		},
	}})
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	return strings.TrimSpace(string(encode(v)))
}

// TestLabelsRejected: every bad holder, metadata or lock_delay is a 400
// naming the field, on acquire and on PATCH, and changes nothing (runCases
// compares every lock before and after).
func TestLabelsRejected(t *testing.T) {
	held := []req{post(uuidPath(u1), labelled)}
	members := func(n int, value string) string {
		var parts []string
		for i := range n {
			parts = append(parts, fmt.Sprintf(`"m%02d":%q`, i, value))
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
	type bodyCase struct{ fields, code, mention string }
	labels := []bodyCase{
		{`"holder":null`, codeInvalidBody, "holder"},
		{`"holder":1`, codeInvalidBody, "holder"},
		{`"holder":["h"]`, codeInvalidBody, "holder"},
		{`"holder":""`, codeInvalidBody, "holder"},
		{`"holder":"` + strings.Repeat("h", locklock.MaxHolderLen+1) + `"`, codeInvalidBody, "holder"},
		{`"holder":"` + strings.Repeat("ü", locklock.MaxHolderLen/2) + `x"`, codeInvalidBody, "holder"}, // 129 bytes, 65 characters
		{`"holder":"a\u0000"`, codeInvalidBody, "holder"},
		{`"holder":"a\tb"`, codeInvalidBody, "holder"},
		{"\"holder\":\"a\u0085\"", codeInvalidBody, "holder"},
		{`"holder":"a\ud800"`, codeInvalidBody, "holder"},
		{`"holder":"\udc00x"`, codeInvalidBody, "holder"},
		{`"holder":"a","holder":"a"`, codeInvalidBody, "holder"},
		{`"Holder":"a"`, codeUnknownField, "Holder"},
		{`"metadata":null`, codeInvalidBody, "metadata"},
		{`"metadata":"k=v"`, codeInvalidBody, "metadata"},
		{`"metadata":[]`, codeInvalidBody, "metadata"},
		{`"metadata":{"k":1}`, codeInvalidBody, "metadata"},
		{`"metadata":{"k":null}`, codeInvalidBody, "metadata"},
		{`"metadata":{"k":true}`, codeInvalidBody, "metadata"},
		{`"metadata":{"k":{"a":"b"}}`, codeInvalidBody, "metadata"},
		{`"metadata":{"k":["v"]}`, codeInvalidBody, "metadata"},
		{`"metadata":{"k":"a","k":"b"}`, codeInvalidBody, "metadata"},
		{`"metadata":{"k":"a\ud800"}`, codeInvalidBody, "metadata"},
		{`"metadata":{"k":"a\nb"}`, codeInvalidBody, "metadata"},
		{`"metadata":{"k":"\u007f"}`, codeInvalidBody, "metadata"},
		{`"metadata":{"k":"` + strings.Repeat("v", locklock.MaxMetadataValueLen+1) + `"}`, codeInvalidBody, "metadata"},
		{`"metadata":{"":"v"}`, codeInvalidBody, "metadata"},
		{`"metadata":{"a b":"v"}`, codeInvalidBody, "metadata"},
		{`"metadata":{"a:b":"v"}`, codeInvalidBody, "metadata"},
		{`"metadata":{"ü":"v"}`, codeInvalidBody, "metadata"},
		{`"metadata":{"\ud800":"v"}`, codeInvalidBody, "metadata"},
		{`"metadata":{"` + strings.Repeat("n", locklock.MaxMetadataNameLen+1) + `":"v"}`, codeInvalidBody, "metadata"},
		{`"metadata":` + members(locklock.MaxMetadataMembers+1, ""), codeInvalidBody, "metadata"},
		{`"metadata":` + members(9, strings.Repeat("v", 250)), codeInvalidBody, "metadata"}, // over 2 KiB
		{`"metadata":{},"metadata":{}`, codeInvalidBody, "metadata"},
		{`"Metadata":{}`, codeUnknownField, "Metadata"},
	}
	delays := []bodyCase{
		{`"lock_delay":null`, codeInvalidBody, "lock_delay"},
		{`"lock_delay":"5"`, codeInvalidBody, "lock_delay"},
		{`"lock_delay":1.5`, codeInvalidBody, "lock_delay"},
		{`"lock_delay":1e1`, codeInvalidBody, "lock_delay"},
		{`"lock_delay":-1`, codeInvalidBody, "lock_delay"},
		{`"lock_delay":61`, codeInvalidBody, "lock_delay"},
		{`"lock_delay":9223372036854775807`, codeInvalidBody, "lock_delay"},
		{`"lock_delay":99999999999999999999`, codeInvalidBody, "lock_delay"},
		{`"lock_delay":5,"lock_delay":5`, codeInvalidBody, "lock_delay"},
		{`"lockDelay":5`, codeUnknownField, "lockDelay"},
	}
	var cases []tcase
	add := func(q req, bc bodyCase) {
		cases = append(cases, tcase{
			name: q.method + " " + q.body, setup: held, req: q,
			status: http.StatusBadRequest, code: bc.code,
			check: wantDetail(http.StatusBadRequest, bc.code, bc.mention),
		})
	}
	for _, bc := range append(labels, delays...) {
		add(post(uuidPath(u2), `{"secret":"s2",`+bc.fields+`}`), bc)
	}
	for _, bc := range labels {
		add(patch(uuidPath(u1), `{"secret":"s1",`+bc.fields+`}`), bc)
	}
	// PATCH cannot change the lock-delay; DELETE takes none of them.
	add(patch(uuidPath(u1), `{"secret":"s1","lock_delay":5}`), bodyCase{code: codeUnknownField, mention: "lock_delay"})
	add(patch(uuidPath(u1), `{"secret":"s1","wait":5,"holder":"x"}`), bodyCase{code: codeUnknownField, mention: "wait"})
	for _, f := range []string{`"holder":"x"`, `"metadata":{}`, `"lock_delay":0`} {
		add(del(uuidPath(u1), `{"secret":"s1",`+f+`}`), bodyCase{code: codeUnknownField, mention: strings.Split(f, `"`)[1]})
	}
	runCases(t, cases)
}

// TestPatchLabels: PATCH replaces holder and metadata and keeps the token;
// without expires_in it leaves the expiry alone, unless it carries none of
// the three (a plain refresh, by the default lifetime).
func TestPatchLabels(t *testing.T) {
	held := []req{post(uuidPath(u1), labelled)} // expires 15:05:05.123
	md := map[string]string{"addr": "10.0.0.7:8080", "role": "leader"}
	patched := func(holder string, md map[string]string, expiresAt string, expiresIn int64) func(*testing.T, *env, *httptest.ResponseRecorder, []lockJSON) {
		return func(t *testing.T, e *env, rec *httptest.ResponseRecorder, setup []lockJSON) {
			t.Helper()
			want := setup[0]
			want.Holder, want.Metadata, want.ExpiresAt, want.ExpiresIn = holder, md, expiresAt, expiresIn
			if got := lockBody(t, rec); !reflect.DeepEqual(got, want) {
				t.Errorf("lock\n %+v, want\n %+v", got, want)
			}
			wantStored(t, e, holder, md, 15*time.Second)
			if l, _ := e.get("public", locklock.KindUUID, u1); formatTime(l.ExpiresAt) != expiresAt || l.Token != setup[0].FencingToken {
				t.Errorf("stored expiry %s, token %d", formatTime(l.ExpiresAt), l.Token)
			}
		}
	}
	unchangedExpiry := "2026-11-26T15:05:05.123Z"
	runCases(t, []tcase{{
		name: "holder only: expiry and token stay", setup: held, advance: 10 * time.Second,
		req: patch(uuidPath(u1), `{"secret":"s1","holder":"host-8:1"}`), status: http.StatusOK,
		check: patched("host-8:1", md, unchangedExpiry, 50),
	}, {
		name: "metadata only: replaced as a whole", setup: held, advance: 10 * time.Second,
		req: patch(uuidPath(u1), `{"secret":"s1","metadata":{"addr":"10.0.0.8:8080"}}`), status: http.StatusOK,
		check: patched("host-7:4242", map[string]string{"addr": "10.0.0.8:8080"}, unchangedExpiry, 50),
	}, {
		name: "metadata {} clears it", setup: held, advance: 10 * time.Second,
		req: patch(uuidPath(u1), `{"secret":"s1","metadata":{}}`), status: http.StatusOK,
		check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, setup []lockJSON) {
			patched("host-7:4242", nil, unchangedExpiry, 50)(t, e, rec, setup)
			noMember(t, rec, "metadata")
		},
	}, {
		name: "all three at once", setup: held, advance: 10 * time.Second,
		req:    patch(uuidPath(u1), `{"secret":"s1","expires_in":120,"holder":"b","metadata":{"k":"v"}}`),
		status: http.StatusOK,
		check:  patched("b", map[string]string{"k": "v"}, "2026-11-26T15:06:15.123Z", 120),
	}, {
		name: "none of them: the default lifetime, labels kept", setup: held, advance: 10 * time.Second,
		req: patch(uuidPath(u1), `{"secret":"s1"}`), status: http.StatusOK,
		check: patched("host-7:4242", md, "2026-12-26T15:04:15.123Z", 2592000),
	}, {
		name: "secret in the header", setup: held,
		req: patch(uuidPath(u1), `{"holder":"b"}`, "Locklock-Secret", "s1"), status: http.StatusOK,
		check: patched("b", md, unchangedExpiry, 60),
	}, {
		name: "unprotected lock, no secret", setup: []req{post(uuidPath(u1), `{"expires_in":60,"lock_delay":15}`)},
		req: patch(uuidPath(u1), `{"holder":"anyone"}`), status: http.StatusOK,
		check: patched("anyone", nil, unchangedExpiry, 60),
	},
		{name: "wrong secret", setup: held, req: patch(uuidPath(u1), `{"secret":"s2","holder":"b"}`), status: http.StatusForbidden, code: codeSecretMismatch},
		{name: "missing secret", setup: held, req: patch(uuidPath(u1), `{"metadata":{}}`), status: http.StatusForbidden, code: codeSecretMismatch},
		{name: "never acquired", req: patch(uuidPath(u1), `{"holder":"b"}`), status: http.StatusNotFound, code: codeLockNotFound},
		{name: "expired", setup: held, advance: time.Minute + 15*time.Second, req: patch(uuidPath(u1), `{"secret":"s1","holder":"b"}`), status: http.StatusNotFound, code: codeLockNotFound},
	})
}

// The lock-delay: a lock taken at 15:04:05.123 for 5 s with a 10 s delay
// expires at 15:04:10.123 and keeps others off until 15:04:20.123.
const (
	delayedLock  = `{"secret":"s1","expires_in":5,"lock_delay":10,"holder":"a"}`
	delayedUntil = "2026-11-26T15:04:20.123Z"
)

// wantDelayed checks a lock_delayed problem: delayed_until and Retry-After.
func wantDelayed(retryAfter string) func(*testing.T, *env, *httptest.ResponseRecorder, []lockJSON) {
	return func(t *testing.T, e *env, rec *httptest.ResponseRecorder, _ []lockJSON) {
		t.Helper()
		p := checkRecProblem(t, rec, http.StatusConflict, codeLockDelayed)
		if p.DelayedUntil != delayedUntil || p.Title != "Lock is delayed" || p.ExpiresAt != "" {
			t.Errorf("problem %+v, want delayed_until %s", p, delayedUntil)
		}
		wantHeader("Retry-After", retryAfter)(t, e, rec, nil)
	}
}

// wantNotFound checks a lock_not_found problem and its delayed_until ("":
// none).
func wantNotFound(until string) func(*testing.T, *env, *httptest.ResponseRecorder, []lockJSON) {
	return func(t *testing.T, _ *env, rec *httptest.ResponseRecorder, _ []lockJSON) {
		t.Helper()
		if p := checkRecProblem(t, rec, http.StatusNotFound, codeLockNotFound); p.DelayedUntil != until {
			t.Errorf("delayed_until %q, want %q", p.DelayedUntil, until)
		}
	}
}

func TestLockDelay(t *testing.T) {
	taken := []req{post(uuidPath(u1), delayedLock)}
	newToken := func(t *testing.T, e *env, rec *httptest.ResponseRecorder, setup []lockJSON) {
		if got := lockBody(t, rec); got.FencingToken <= setup[0].FencingToken {
			t.Errorf("token %d, not above %d", got.FencingToken, setup[0].FencingToken)
		}
	}
	runCases(t, []tcase{
		{name: "another secret, mid-delay", setup: taken, advance: 5500 * time.Millisecond,
			req: post(uuidPath(u1), `{"secret":"s2"}`), status: http.StatusConflict, code: codeLockDelayed, check: wantDelayed("10")},
		{name: "no secret, at the expiry", setup: taken, advance: 5 * time.Second,
			req: post(uuidPath(u1), ""), status: http.StatusConflict, code: codeLockDelayed, check: wantDelayed("10")},
		{name: "Retry-After is at least 1", setup: taken, advance: 14999 * time.Millisecond,
			req: post(uuidPath(u1), ""), status: http.StatusConflict, code: codeLockDelayed, check: wantDelayed("1")},
		{name: "the delay is over", setup: taken, advance: 15 * time.Second,
			req: post(uuidPath(u1), `{"secret":"s2"}`), status: http.StatusCreated, check: newToken},
		{name: "the lost holder's secret takes it back", setup: taken, advance: 5500 * time.Millisecond,
			req: post(uuidPath(u1), `{"secret":"s1","holder":"a2"}`), status: http.StatusCreated,
			check: func(t *testing.T, e *env, rec *httptest.ResponseRecorder, setup []lockJSON) {
				newToken(t, e, rec, setup)
				if got := lockBody(t, rec); got.Holder != "a2" || got.LockDelay != 0 {
					t.Errorf("reclaimed lock %+v: the new acquire's own fields", got)
				}
			}},
		{name: "released by its holder: no delay", setup: append(taken, del(uuidPath(u1), `{"secret":"s1"}`)),
			req: post(uuidPath(u1), `{"secret":"s2"}`), status: http.StatusCreated, check: newToken},
		{name: "GET mid-delay", setup: taken, advance: 6 * time.Second,
			req: get(uuidPath(u1)), status: http.StatusNotFound, code: codeLockNotFound, check: wantNotFound(delayedUntil)},
		{name: "HEAD mid-delay", setup: taken, advance: 6 * time.Second,
			req: head(uuidPath(u1)), status: http.StatusNotFound},
		{name: "DELETE mid-delay", setup: taken, advance: 6 * time.Second,
			req: del(uuidPath(u1), `{"secret":"s1"}`), status: http.StatusNotFound, code: codeLockNotFound, check: wantNotFound(delayedUntil)},
		{name: "PATCH mid-delay", setup: taken, advance: 6 * time.Second,
			req: patch(uuidPath(u1), `{"secret":"s1","holder":"b"}`), status: http.StatusNotFound, code: codeLockNotFound, check: wantNotFound(delayedUntil)},
		{name: "GET after the delay", setup: taken, advance: 15 * time.Second,
			req: get(uuidPath(u1)), status: http.StatusNotFound, code: codeLockNotFound, check: wantNotFound("")},
		{name: "GET, never acquired", req: get(uuidPath(u1)), status: http.StatusNotFound, code: codeLockNotFound, check: wantNotFound("")},
		{name: "without lock_delay, free at the expiry", setup: []req{post(uuidPath(u1), `{"secret":"s1","expires_in":5}`)}, advance: 5 * time.Second,
			req: post(uuidPath(u1), `{"secret":"s2"}`), status: http.StatusCreated},
	})
}

// TestWaitThroughLockDelay: a waiter keeps waiting while the lock-delay
// runs and gets the lock when it ends; one whose wait ends first gets
// lock_delayed.
func TestWaitThroughLockDelay(t *testing.T) {
	t.Run("granted when the delay ends", func(t *testing.T) {
		e := newEnv(t)
		old := e.must(post(uuidPath(u1), delayedLock))
		e.clock.Advance(6 * time.Second)
		done := startWaiter(t, e, `{"secret":"s2","wait":30}`)
		e.clock.Advance(8 * time.Second) // 1 s of delay left
		select {
		case rec := <-done:
			t.Fatalf("granted during the delay: %d %s", rec.Code, rec.Body)
		case <-time.After(50 * time.Millisecond):
		}
		e.clock.Advance(time.Second)
		rec := within(t, done, "the waiter's answer")
		if rec.Code != http.StatusCreated {
			t.Fatalf("waiter: %d %s", rec.Code, rec.Body)
		}
		if got := lockBody(t, rec); got.FencingToken <= old.FencingToken || got.AcquiredAt != delayedUntil {
			t.Errorf("waiter's lock %+v, want one acquired at %s", got, delayedUntil)
		}
	})
	t.Run("the wait ends first", func(t *testing.T) {
		e := newEnv(t)
		e.must(post(uuidPath(u1), delayedLock))
		e.clock.Advance(6 * time.Second)
		done := startWaiter(t, e, `{"secret":"s2","wait":3}`)
		e.clock.Advance(3 * time.Second)
		rec := within(t, done, "the waiter's answer")
		wantDelayed("6")(t, e, rec, nil)
	})
}
