package transport

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/locklock/locklock/locklock"
	"github.com/locklock/locklock/transport/ratelimit"
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
	// RateKey names the caller's token bucket: one per API key, one per
	// client address for anonymous callers.
	RateKey string
	// RateLimit is the caller's plan's request rate; zero means unlimited.
	RateLimit ratelimit.Limit
	// Operator lets the caller end any lock or slot of its namespace
	// without its secret (Locklock-Force, API.md §11). Never set it for
	// anonymous callers.
	Operator bool
	// KeyID names the caller's API key in the audit line of a forced
	// release and in /whoami; "" for anonymous callers.
	KeyID string
	// Plan names the caller's plan, for /whoami; "" when not known.
	Plan string
}

// AnonymousCaller is the caller of a request without an API key: the public
// namespace, UUID locks only.
func AnonymousCaller() Caller {
	return Caller{Namespace: locklock.DefaultNamespace, Anonymous: true}
}

// anonymous is the default authenticator: everyone is anonymous.
func anonymous(*http.Request) (Caller, error) { return AnonymousCaller(), nil }

// caller runs the authenticator, checks what it returned, and charges the
// caller's token bucket (setting the RateLimit headers).
func (h *handler) caller(w http.ResponseWriter, r *http.Request) (Caller, error) {
	c, err := h.auth(r)
	if err != nil {
		return Caller{}, err
	}
	if err := locklock.ValidateNamespace(c.Namespace); err != nil {
		// Not %w: this is our bug, not the client's bad input, so it
		// must not map to 400.
		return Caller{}, fmt.Errorf("authenticator returned a bad namespace: %v", err)
	}
	if h.limiter != nil {
		if err := throttle(w, h.limiter.Allow(c.RateKey, c.RateLimit)); err != nil {
			return Caller{}, err
		}
	}
	return c, nil
}

// throttle sets the RateLimit headers of a limited caller and refuses a
// request over the rate. Header values are whole seconds, rounded up.
func throttle(w http.ResponseWriter, d ratelimit.Decision) error {
	if !d.Limited {
		return nil
	}
	h := w.Header()
	h.Set("RateLimit-Limit", strconv.Itoa(d.Limit))
	h.Set("RateLimit-Remaining", strconv.Itoa(d.Remaining))
	h.Set("RateLimit-Reset", strconv.Itoa(ceilSeconds(d.Reset)))
	if d.Allowed {
		return nil
	}
	p := newProblem(codeRateLimited, "too many requests: the plan allows %d at once, refilling over time; retry in %d s", d.Limit, ceilSeconds(d.RetryAfter))
	p.retryAfter = max(ceilSeconds(d.RetryAfter), 1)
	return p
}

// mayUseKeys is the plan check for /lock/key/... routes.
func mayUseKeys(c Caller) error {
	switch {
	case c.CustomNames:
		return nil
	case c.Anonymous:
		return fmt.Errorf("%w: custom lock names need an API key (Authorization: Bearer <key>)", locklock.ErrUnauthorized)
	default:
		return fmt.Errorf("%w: your plan does not allow custom lock names", locklock.ErrForbidden)
	}
}
