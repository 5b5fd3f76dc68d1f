package transport

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/locklock/locklock/locklock"
)

// The handler mounted under /v1/api, by http.StripPrefix and by
// WithPathPrefix, answers the same.
func TestMountedUnderPrefix(t *testing.T) {
	t.Run("StripPrefix", func(t *testing.T) {
		e := newEnv(t)
		mux := http.NewServeMux()
		mux.Handle("/v1/api/", http.StripPrefix("/v1/api", e.h))
		testMounted(t, mux)
	})
	t.Run("WithPathPrefix", func(t *testing.T) {
		e := newEnv(t, WithPathPrefix("/v1/api/"))
		testMounted(t, e.h)
		// Nothing outside the prefix is served, not even the bare routes.
		for _, path := range []string{"/lock/uuid/" + u1, "/locks", "/openapi.json", "/v1/apilock/uuid/" + u1, "/v1/api"} {
			checkRecProblem(t, e.do(get(path)), http.StatusNotFound, codeNotFound)
		}
	})
}

func testMounted(t *testing.T, h http.Handler) {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	do := func(method, path, body string) *http.Response {
		t.Helper()
		r, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(r)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	if resp := do(http.MethodPost, "/v1/api/lock/uuid/"+u1, secretS1); resp.StatusCode != http.StatusCreated {
		t.Fatalf("acquire: %s", resp.Status)
	}
	if resp := do(http.MethodGet, "/v1/api/lock/uuid/"+strings.ToUpper(u1), ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("inspect: %s", resp.Status)
	}
	checkResponseProblem(t, do(http.MethodGet, "/v1/api/lock/uuid/nope", ""), http.StatusBadRequest, codeInvalidUUID)
	checkResponseProblem(t, do(http.MethodGet, "/v1/api/nope", ""), http.StatusNotFound, codeNotFound)
	resp := do(http.MethodPut, "/v1/api/locks", "")
	checkResponseProblem(t, resp, http.StatusMethodNotAllowed, codeMethodNotAllowed)
	if resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("Allow %q", resp.Header.Get("Allow"))
	}
	if resp := do(http.MethodDelete, "/v1/api/lock/uuid/"+u1, `{"secret":"s1"}`); resp.StatusCode != http.StatusOK {
		t.Fatalf("release: %s", resp.Status)
	}
	// A slot's path is cut into name and id after the prefix.
	resp = do(http.MethodPost, "/v1/api/semaphore/uuid/"+u1, `{"limit":1}`)
	var sl slotJSON
	if err := json.NewDecoder(resp.Body).Decode(&sl); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("acquire a slot: %s, %v", resp.Status, err)
	}
	if resp := do(http.MethodGet, "/v1/api/semaphore/uuid/"+u1+"/"+sl.Slot, ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("inspect the slot: %s", resp.Status)
	}
	checkResponseProblem(t, do(http.MethodGet, "/v1/api/semaphore/uuid/nope/"+sl.Slot, ""), http.StatusBadRequest, codeInvalidUUID)
	if resp := do(http.MethodDelete, "/v1/api/semaphore/uuid/"+u1+"/"+sl.Slot, ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("release the slot: %s", resp.Status)
	}
}

// Server-side failures are logged for the operator, without the request's
// secrets or credentials.
func TestLogging(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := newEnv(t, WithLogger(log))

	e.engine.failGet = errors.New("disk on fire")
	checkRecProblem(t, e.do(get(uuidPath(u1), "Locklock-Secret", "header-secret", "Authorization", proKey)),
		http.StatusInternalServerError, codeInternal)
	_ = e.engine.Close()
	checkRecProblem(t, e.do(post(uuidPath(u1), `{"secret":"body-secret"}`, "Authorization", proKey)),
		http.StatusServiceUnavailable, codeUnavailable)
	// Client errors are the client's business, not the operator's.
	checkRecProblem(t, e.do(post(uuidPath("nope"), `{"secret":"body-secret"}`)), http.StatusBadRequest, codeInvalidUUID)

	out := buf.String()
	for _, want := range []string{"level=ERROR", "disk on fire", "level=WARN", locklock.ErrClosed.Error()} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	for _, leak := range []string{"header-secret", "body-secret", "Bearer", "pro", "nope"} {
		if strings.Contains(out, leak) {
			t.Errorf("log contains %q:\n%s", leak, out)
		}
	}
	if n := strings.Count(out, "\n"); n != 2 {
		t.Errorf("%d log lines, want 2:\n%s", n, out)
	}
}
