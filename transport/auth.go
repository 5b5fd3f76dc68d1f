package transport

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/locklock/locklock/locklock"
)

// Authenticator failures. An authenticator returns an error wrapping one of
// these to get 401 unauthorized or 403 forbidden; any other error is mapped
// like a Service error (for example ErrUnavailable gives 503).
var (
	ErrUnauthorized = errors.New("unauthorized")
	ErrForbidden    = errors.New("forbidden")
)

// Caller is who a request acts for, as decided by the authenticator.
type Caller struct {
	// Namespace holds the caller's locks. It must pass
	// locklock.ValidateNamespace; an invalid one is a server bug (500).
	Namespace string
	// CustomNames allows the /lock/key/... routes (the "pro" plan).
	CustomNames bool
	// Anonymous is true when the request carried no API key.
	Anonymous bool
}

// AnonymousCaller is the caller of a request without an API key: the public
// namespace, UUID locks only.
func AnonymousCaller() Caller {
	return Caller{Namespace: locklock.DefaultNamespace, Anonymous: true}
}

// anonymous is the default authenticator: everyone is anonymous.
func anonymous(*http.Request) (Caller, error) { return AnonymousCaller(), nil }

// caller runs the authenticator and checks what it returned.
func (h *handler) caller(r *http.Request) (Caller, error) {
	c, err := h.auth(r)
	if err != nil {
		return Caller{}, err
	}
	if err := locklock.ValidateNamespace(c.Namespace); err != nil {
		// Not %w: this is our bug, not the client's bad input, so it
		// must not map to 400.
		return Caller{}, fmt.Errorf("authenticator returned a bad namespace: %v", err)
	}
	return c, nil
}

// mayUseKeys is the plan check for /lock/key/... routes.
func mayUseKeys(c Caller) error {
	switch {
	case c.CustomNames:
		return nil
	case c.Anonymous:
		return fmt.Errorf("%w: custom lock names need an API key (Authorization: Bearer <key>)", ErrUnauthorized)
	default:
		return fmt.Errorf("%w: your plan does not allow custom lock names", ErrForbidden)
	}
}
