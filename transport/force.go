package transport

import (
	"fmt"
	"net/http"

	"github.com/locklock/locklock/locklock"
)

// forceHeader asks a DELETE for a forced release (API.md §11): an
// operator ends a lock or a slot without its secret.
const forceHeader = "Locklock-Force"

// forced reads Locklock-Force on a DELETE: false when it is absent, true
// when an operator sent "true". Anyone else who sends it is refused (403)
// before its value is judged (400), as a caller who may not use key routes
// is refused whatever name it sent. The header asks for more than a
// release, so a refusal never falls back to an ordinary release.
func forced(r *http.Request, c Caller) (bool, error) {
	values := r.Header.Values(forceHeader)
	switch {
	case len(values) == 0:
		return false, nil
	case c.Anonymous:
		return false, fmt.Errorf("%w: %s needs an API key on an operator plan", locklock.ErrForbidden, forceHeader)
	case !c.Operator:
		return false, fmt.Errorf("%w: %s needs an API key on an operator plan; this key's plan is not one", locklock.ErrForbidden, forceHeader)
	case len(values) > 1:
		return false, invalidBody("header %s is given more than once", forceHeader)
	case values[0] != "true":
		return false, invalidBody("header %s must be \"true\" (or left out)", forceHeader)
	}
	return true, nil
}

// logForced writes the audit line of a forced release: who (the key's id)
// ended what, and its fencing token — never a secret.
func (h *handler) logForced(c Caller, id locklock.ID, token uint64, slot string) {
	attrs := []any{"key_id", c.KeyID, "namespace", id.Namespace, "kind", string(id.Kind), "name", id.Name, "token", token}
	if slot != "" {
		attrs = append(attrs, "slot", slot)
	}
	h.log.Info("forced release", attrs...)
}
