package transport

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/locklock/locklock/locklock"
)

// Query parameters of GET /locks.
const (
	paramKind   = "kind"
	paramPrefix = "prefix"
	paramLimit  = "limit"
	paramAfter  = "after"
)

// list serves GET and HEAD /locks: a page of the caller's namespace.
func (h *handler) list(w http.ResponseWriter, r *http.Request) {
	if err := h.serveList(w, r); err != nil {
		h.fail(w, r, err)
	}
}

func (h *handler) serveList(w http.ResponseWriter, r *http.Request) error {
	c, err := h.caller(w, r)
	if err != nil {
		return err
	}
	if c.Anonymous {
		return fmt.Errorf("%w: listing locks needs an API key (Authorization: Bearer <key>)", locklock.ErrUnauthorized)
	}
	req, err := listRequest(c.Namespace, r.URL.RawQuery)
	if err != nil {
		return err
	}
	page, err := h.svc.List(r.Context(), req)
	if err != nil {
		return err
	}
	out := listJSON{Locks: make([]lockJSON, 0, len(page.Locks)), Next: page.Next}
	for _, l := range page.Locks {
		out.Locks = append(out.Locks, lockOf(l))
	}
	writeJSON(w, r, http.StatusOK, out)
	return nil
}

// listRequest parses the query strictly, like a body: a misspelt parameter
// must not silently widen or narrow the listing.
func listRequest(namespace, rawQuery string) (locklock.ListRequest, error) {
	req := locklock.ListRequest{Namespace: namespace}
	q, err := parseQuery(rawQuery, paramKind, paramPrefix, paramLimit, paramAfter)
	if err != nil {
		return req, err
	}

	switch kind := locklock.Kind(q.Get(paramKind)); kind {
	case locklock.KindUUID, locklock.KindKey:
		req.Kind = kind
	default:
		return req, invalidBody("query parameter kind must be %q or %q", locklock.KindUUID, locklock.KindKey)
	}

	if q.Has(paramLimit) {
		n, err := strconv.Atoi(q.Get(paramLimit))
		if err != nil || n < 1 {
			// Zero would mean "default" to the Service.
			return req, invalidBody("query parameter limit must be an integer from 1 to %d", locklock.MaxListLimit)
		}
		req.Limit = n
	}

	req.Prefix, req.After = q.Get(paramPrefix), q.Get(paramAfter)
	if req.Kind == locklock.KindUUID {
		// UUIDs are stored in lower case; match them case-insensitively.
		req.Prefix, req.After = strings.ToLower(req.Prefix), strings.ToLower(req.After)
	}
	// A prefix or cursor is (the start of) a lock name, so the name rules
	// apply; NewID is the one place that knows them.
	if req.Prefix != "" {
		if _, err := locklock.NewID(namespace, locklock.KindKey, req.Prefix); err != nil {
			return req, fmt.Errorf("query parameter prefix: %w", err)
		}
	}
	if req.After != "" {
		if _, err := locklock.NewID(namespace, locklock.KindKey, req.After); err != nil {
			return req, invalidBody("query parameter after must be a lock name: %v", err)
		}
	}
	return req, nil
}
