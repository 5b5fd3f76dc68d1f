package transport

import (
	"strings"
	"testing"

	"github.com/locklock/locklock/engines/memory"
	"github.com/locklock/locklock/locklock"
)

// TestRouteLabels: Route names every served route by a template of Routes, and
// anything else "unmatched" — metrics labels come from this fixed set.
func TestRouteLabels(t *testing.T) {
	for path, want := range map[string]string{
		"/lock/uuid/" + u1:             "/lock/uuid/{uuid}",
		"/lock/uuid/":                  "/lock/uuid/{uuid}",
		"/lock/key/a/b":                "/lock/key/{name}",
		"/locks":                       "/locks",
		"/openapi.json":                "/openapi.json",
		"/locks/x":                     "unmatched",
		"/lock/other/x":                "unmatched",
		"/" + u1:                       "unmatched",
		"/healthz":                     "unmatched",
		"/lock/uuid" + "/../x/y":       "/lock/uuid/{uuid}",
		"/lock/uuid/" + u1 + "/events": "/lock/uuid/{uuid}/events",
		"/lock/key/a/events":           "/lock/key/{name}/events",
		"/lock/key/events":             "/lock/key/{name}",
		"/events":                      "/events",
		"/semaphore/uuid/" + u1:        "/semaphore/uuid/{uuid}",
		"/semaphore/uuid/":             "/semaphore/uuid/{uuid}",
		"/semaphore/uuid/" + u1 + "/x": "/semaphore/uuid/{uuid}/{slot}",
		"/semaphore/uuid/" + u1 + "/":  "/semaphore/uuid/{uuid}/{slot}",
		"/semaphore/key/a/b/c":         "/semaphore/key/{name}/{slot}",
		"/semaphore/key/a":             "/semaphore/key/{name}",
		"/semaphores":                  "/semaphores",
		"/semaphores/x":                "unmatched",
		"/semaphore/other/x":           "unmatched",
		"/semaphore":                   "unmatched",
	} {
		if got := Route(path); got != want {
			t.Errorf("Route(%q) = %q, want %q", path, got, want)
		}
	}
	served := NewHandler(locklock.NewService(memory.New())).(*router).routes()
	if len(served) != len(Routes()) {
		t.Errorf("%d routes served, Routes lists %d", len(served), len(Routes()))
	}
	for _, ms := range served {
		// Give a template's parameter a value.
		example, rest, found := strings.Cut(ms.template, "{")
		if found {
			_, suffix, _ := strings.Cut(rest, "}")
			example += "x" + suffix
		}
		if got := Route(example); got != ms.template {
			t.Errorf("served route %s is labelled %q", ms.template, got)
		}
	}
}
