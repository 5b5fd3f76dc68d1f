package transport

import (
	"net/http"

	"github.com/locklock/locklock/locklock"
)

// lockFunc serves one method on one lock.
type lockFunc func(w http.ResponseWriter, r *http.Request, c Caller, id locklock.ID) error

// lockOp resolves the caller and the lock ID, then runs op; any error on
// the way becomes the response. The lock's name is the rest of the path
// after routePrefix, which the router has matched.
func (h *handler) lockOp(kind locklock.Kind, routePrefix string, op lockFunc) http.HandlerFunc {
	skip := len(h.prefix) + len(routePrefix)
	return func(w http.ResponseWriter, r *http.Request) {
		c, id, err := h.lockCaller(w, r, kind, r.URL.Path[skip:])
		if err == nil {
			// Lock routes take no query parameters (API.md §7): a
			// ?secret=… that was ignored would leave an open lock.
			_, err = parseQuery(r.URL.RawQuery)
		}
		if err == nil {
			err = op(w, r, c, id)
		}
		if err != nil {
			h.fail(w, r, err)
		}
	}
}

// lockCaller resolves the caller, then the lock's ID: the caller is checked
// before the name, so that a caller who may not use key routes gets 401/403
// whatever name it sent.
func (h *handler) lockCaller(w http.ResponseWriter, r *http.Request, kind locklock.Kind, name string) (Caller, locklock.ID, error) {
	c, err := h.caller(w, r)
	if err != nil {
		return Caller{}, locklock.ID{}, err
	}
	if kind == locklock.KindKey {
		if err := mayUseKeys(c); err != nil {
			return Caller{}, locklock.ID{}, err
		}
	}
	id, err := locklock.NewID(c.Namespace, kind, name)
	return c, id, err
}

func (h *handler) acquire(w http.ResponseWriter, r *http.Request, _ Caller, id locklock.ID) error {
	b, err := readBody(w, r, fieldSecret, fieldExpiresIn, fieldWait, fieldHolder, fieldMetadata, fieldLockDelay)
	if err != nil {
		return err
	}
	req := locklock.AcquireRequest{ID: id, Metadata: b.metadata}
	if req.Secret, err = secretOf(r, b); err != nil {
		return err
	}
	req.TTL, req.Wait, req.Holder = b.acquireTerms()
	if b.lockDelay != nil {
		req.LockDelay = seconds(*b.lockDelay)
	}
	// r.Context(): a client that disconnects stops its wait, and the
	// Service then gives up (or gives back) the lock.
	l, created, err := h.svc.Acquire(r.Context(), req)
	if err != nil {
		return err
	}
	writeLock(w, r, acquiredStatus(created), l)
	return nil
}

// acquiredStatus is an acquire's answer: 201 for a new lock or slot, 200
// for one the caller already held (a retry).
func acquiredStatus(created bool) int {
	if created {
		return http.StatusCreated
	}
	return http.StatusOK
}

// release serves DELETE: a release by the holder, or an operator's forced
// release (Locklock-Force), which ignores the secret.
func (h *handler) release(w http.ResponseWriter, r *http.Request, c Caller, id locklock.ID) error {
	force, err := forced(r, c)
	if err != nil {
		return err
	}
	s, err := releaseSecret(w, r)
	if err != nil {
		return err
	}
	var l locklock.Lock
	if force {
		if l, err = h.svc.Revoke(r.Context(), id); err == nil {
			h.logForced(c, id, l.Token, "")
		}
	} else {
		l, err = h.svc.Release(r.Context(), id, s)
	}
	if err != nil {
		return err
	}
	writeReleased(w, r, l)
	return nil
}

// releaseSecret reads a DELETE's secret, from its body or header.
func releaseSecret(w http.ResponseWriter, r *http.Request) (string, error) {
	b, err := readBody(w, r, fieldSecret)
	if err != nil {
		return "", err
	}
	return secretOf(r, b)
}

// inspect serves GET and HEAD; a body, if any, is ignored.
func (h *handler) inspect(w http.ResponseWriter, r *http.Request, _ Caller, id locklock.ID) error {
	l, err := h.svc.Get(r.Context(), id)
	if err != nil {
		return err
	}
	writeLock(w, r, http.StatusOK, l)
	return nil
}

// patch serves PATCH: a refresh (expires_in), a new holder or new metadata,
// or any of them at once (API.md §3, §8).
func (h *handler) patch(w http.ResponseWriter, r *http.Request, _ Caller, id locklock.ID) error {
	b, err := readBody(w, r, fieldSecret, fieldExpiresIn, fieldHolder, fieldMetadata)
	if err != nil {
		return err
	}
	req := locklock.PatchRequest{ID: id, Holder: b.holder, Metadata: b.metadata, SetMetadata: b.metadata != nil}
	if req.Secret, err = secretOf(r, b); err != nil {
		return err
	}
	// Zero TTL: the default lifetime for a plain refresh, the expiry as it
	// is when holder or metadata change (the Service's rule).
	if b.expiresIn != nil {
		req.TTL = seconds(*b.expiresIn)
	}
	l, err := h.svc.Patch(r.Context(), req)
	if err != nil {
		return err
	}
	writeLock(w, r, http.StatusOK, l)
	return nil
}
