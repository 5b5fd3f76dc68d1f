package transport

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/locklock/locklock/locklock"
)

// Semaphores (API.md §10). Their names follow the lock routes' rules and
// plans (lockCaller), in a space of their own.

// semaphoreMethods are a semaphore route's handlers; routePrefix is the
// path before the semaphore's name.
func (h *handler) semaphoreMethods(kind locklock.Kind, routePrefix string) map[string]http.HandlerFunc {
	return map[string]http.HandlerFunc{
		// Acquiring takes no query parameters (API.md §7), as a lock's.
		http.MethodPost: h.semaphoreOp(kind, routePrefix, nil, h.acquireSlot),
		http.MethodGet:  h.semaphoreOp(kind, routePrefix, []string{paramLimit, paramAfter}, h.inspectSemaphore),
		http.MethodHead: h.semaphoreOp(kind, routePrefix, []string{paramLimit, paramAfter}, h.inspectSemaphore),
	}
}

// slotMethods are a slot route's handlers.
func (h *handler) slotMethods(kind locklock.Kind, routePrefix string) map[string]http.HandlerFunc {
	return map[string]http.HandlerFunc{
		http.MethodGet:    h.slotOp(kind, routePrefix, h.inspectSlot),
		http.MethodHead:   h.slotOp(kind, routePrefix, h.inspectSlot),
		http.MethodPatch:  h.slotOp(kind, routePrefix, h.patchSlot),
		http.MethodDelete: h.slotOp(kind, routePrefix, h.releaseSlot),
	}
}

// semaphoreFunc serves one method on one semaphore; q is its query.
type semaphoreFunc func(w http.ResponseWriter, r *http.Request, id locklock.ID, q url.Values) error

// semaphoreOp resolves the caller and the semaphore's ID as lockOp does a
// lock's, and parses the query, taking only params.
func (h *handler) semaphoreOp(kind locklock.Kind, routePrefix string, params []string, op semaphoreFunc) http.HandlerFunc {
	skip := len(h.prefix) + len(routePrefix)
	return func(w http.ResponseWriter, r *http.Request) {
		_, id, err := h.lockCaller(w, r, kind, r.URL.Path[skip:])
		var q url.Values
		if err == nil {
			q, err = parseQuery(r.URL.RawQuery, params...)
		}
		if err == nil {
			err = op(w, r, id, q)
		}
		if err != nil {
			h.fail(w, r, err)
		}
	}
}

// slotFunc serves one method on one slot.
type slotFunc func(w http.ResponseWriter, r *http.Request, c Caller, id locklock.ID, slot string) error

// slotOp cuts the rest of the path at its last slash into the semaphore's
// name and the slot id (which has no slash), resolves the caller and the
// semaphore's ID, and refuses any query parameter. A malformed slot id is
// the Service's to judge: it names no slot (404).
func (h *handler) slotOp(kind locklock.Kind, routePrefix string, op slotFunc) http.HandlerFunc {
	skip := len(h.prefix) + len(routePrefix)
	return func(w http.ResponseWriter, r *http.Request) {
		rest := r.URL.Path[skip:]
		cut := strings.LastIndexByte(rest, '/') // the router matched one
		c, id, err := h.lockCaller(w, r, kind, rest[:cut])
		if err == nil {
			_, err = parseQuery(r.URL.RawQuery)
		}
		if err == nil {
			err = op(w, r, c, id, rest[cut+1:])
		}
		if err != nil {
			h.fail(w, r, err)
		}
	}
}

func (h *handler) acquireSlot(w http.ResponseWriter, r *http.Request, id locklock.ID, _ url.Values) error {
	b, err := readBody(w, r, fieldLimit, fieldWeight, fieldSecret, fieldExpiresIn, fieldWait, fieldHolder, fieldMetadata)
	if err != nil {
		return err
	}
	if b.limit == nil {
		// No default: a limit the caller did not choose would silently
		// decide how many may hold the semaphore.
		return invalidBody("field limit is required: an integer from 1 to %d", locklock.MaxSemaphoreLimit)
	}
	req := locklock.SlotRequest{ID: id, Limit: int(*b.limit), Metadata: b.metadata}
	if req.Secret, err = secretOf(r, b); err != nil {
		return err
	}
	if b.weight != nil {
		req.Weight = int(*b.weight)
	}
	req.TTL, req.Wait, req.Holder = b.acquireTerms()
	// r.Context(): a client that disconnects stops its wait, and the
	// Service then gives up (or gives back) the slot.
	sl, created, err := h.svc.AcquireSlot(r.Context(), req)
	if err != nil {
		return err
	}
	writeJSON(w, r, acquiredStatus(created), slotOf(sl))
	return nil
}

// inspectSemaphore serves GET and HEAD of a semaphore: a page of its slots
// by fencing token (?limit=, ?after=).
func (h *handler) inspectSemaphore(w http.ResponseWriter, r *http.Request, id locklock.ID, q url.Values) error {
	req := locklock.SemaphoreRequest{ID: id}
	if q.Has(paramLimit) {
		n, err := strconv.Atoi(q.Get(paramLimit))
		if err != nil || n < 1 || n > locklock.MaxSlotsPage {
			// Zero would mean "all" (a full page) to the Service.
			return invalidBody("query parameter limit must be an integer from 1 to %d", locklock.MaxSlotsPage)
		}
		req.Limit = n
	}
	if q.Has(paramAfter) {
		if _, err := strconv.ParseUint(q.Get(paramAfter), 10, 64); err != nil {
			return invalidBody("query parameter after must be a fencing token (a decimal number): the previous page's next")
		}
		req.After = q.Get(paramAfter)
	}
	sem, err := h.svc.GetSemaphore(r.Context(), req)
	if err != nil {
		return err
	}
	writeJSON(w, r, http.StatusOK, semaphoreOf(sem))
	return nil
}

func (h *handler) inspectSlot(w http.ResponseWriter, r *http.Request, _ Caller, id locklock.ID, slot string) error {
	sl, err := h.svc.GetSlot(r.Context(), id, slot)
	if err != nil {
		return err
	}
	writeJSON(w, r, http.StatusOK, slotOf(sl))
	return nil
}

// patchSlot serves PATCH of a slot, as patch does a lock's: a refresh, a
// new holder or new metadata, or any of them at once.
func (h *handler) patchSlot(w http.ResponseWriter, r *http.Request, _ Caller, id locklock.ID, slot string) error {
	b, err := readBody(w, r, fieldSecret, fieldExpiresIn, fieldHolder, fieldMetadata)
	if err != nil {
		return err
	}
	req := locklock.PatchRequest{ID: id, Holder: b.holder, Metadata: b.metadata, SetMetadata: b.metadata != nil}
	if req.Secret, err = secretOf(r, b); err != nil {
		return err
	}
	if b.expiresIn != nil {
		req.TTL = seconds(*b.expiresIn)
	}
	sl, err := h.svc.PatchSlot(r.Context(), slot, req)
	if err != nil {
		return err
	}
	writeJSON(w, r, http.StatusOK, slotOf(sl))
	return nil
}

func (h *handler) releaseSlot(w http.ResponseWriter, r *http.Request, c Caller, id locklock.ID, slot string) error {
	force, err := forced(r, c)
	if err != nil {
		return err
	}
	s, err := releaseSecret(w, r)
	if err != nil {
		return err
	}
	var sl locklock.Slot
	if force {
		if sl, err = h.svc.RevokeSlot(r.Context(), id, slot); err == nil {
			h.logForced(c, id, sl.Token, slot)
		}
	} else {
		sl, err = h.svc.ReleaseSlot(r.Context(), id, slot, s)
	}
	if err != nil {
		return err
	}
	writeJSON(w, r, http.StatusOK, releasedSlotJSON{Released: true, Slot: slotOf(sl)})
	return nil
}

// listSemaphores serves GET and HEAD /semaphores: a page of the caller's
// namespace, with the query of /locks.
func (h *handler) listSemaphores(w http.ResponseWriter, r *http.Request) {
	if err := h.serveSemaphoreList(w, r); err != nil {
		h.fail(w, r, err)
	}
}

func (h *handler) serveSemaphoreList(w http.ResponseWriter, r *http.Request) error {
	c, err := h.caller(w, r)
	if err != nil {
		return err
	}
	if c.Anonymous {
		return fmt.Errorf("%w: listing semaphores needs an API key (Authorization: Bearer <key>)", locklock.ErrUnauthorized)
	}
	req, err := listRequest(c.Namespace, r.URL.RawQuery)
	if err != nil {
		return err
	}
	page, err := h.svc.ListSemaphores(r.Context(), req)
	if err != nil {
		return err
	}
	out := semaphoreListJSON{Semaphores: make([]semaphoreSummaryJSON, 0, len(page.Semaphores)), Next: page.Next}
	for _, s := range page.Semaphores {
		out.Semaphores = append(out.Semaphores, semaphoreSummaryJSON{Name: s.Name, Kind: s.Kind, Limit: s.Limit, InUse: s.InUse, Slots: s.Slots})
	}
	writeJSON(w, r, http.StatusOK, out)
	return nil
}
