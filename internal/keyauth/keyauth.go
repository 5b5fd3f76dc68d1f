// Package keyauth is the authenticator of API.md §5 over the keys file
// (internal/keys): who a request acts for, from its Bearer API key and its
// Host. It is the standalone server's; transport knows only the function it
// is handed (transport.WithAuthenticator), not the keys-file format.
package keyauth

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/locklock/locklock/internal/keys"
	"github.com/locklock/locklock/locklock"
	"github.com/locklock/locklock/transport/ratelimit"
)

// Caller is who a request acts for. It is transport.Caller field for field,
// so that a caller of New converts one into the other with
// transport.Caller(c) — a conversion that stops compiling the day the two
// drift apart. It is not transport.Caller itself because transport's own
// tests authenticate with this package, and they could not if it imported
// transport.
type Caller struct {
	// Namespace holds the caller's locks.
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
	// Operator: the key's plan says "operator": true (API.md §11).
	Operator bool
	// KeyID is the key's id; "" for anonymous callers.
	KeyID string
	// Plan is the plan's name.
	Plan string
}

// Access configures New.
type Access struct {
	// Keys holds the plans, the anonymous policy and the API keys.
	Keys *keys.Store
	// BaseDomain, when set, maps a request to <ns>.<BaseDomain> to
	// namespace ns (custom subdomains).
	BaseDomain string
	// TrustedProxies are the proxies whose X-Forwarded-For is believed
	// when telling anonymous clients apart for throttling.
	TrustedProxies []netip.Prefix
}

// New returns the authenticator of API.md §5: a Bearer API key gives its
// namespace and plan; no key gives the anonymous plan in namespace public
// (or 401 when anonymous access is off); a custom subdomain needs a key of
// its namespace. Its errors wrap locklock.ErrUnauthorized or
// locklock.ErrForbidden, which transport answers with 401 and 403.
func New(a Access) func(*http.Request) (Caller, error) {
	base := strings.ToLower(strings.TrimSuffix(a.BaseDomain, "."))
	return func(r *http.Request) (Caller, error) {
		idx := a.Keys.Current() // one consistent view, even across a reload
		sub := subdomain(r.Host, base)
		presented, hasKey, err := bearer(r)
		if err != nil {
			return Caller{}, err
		}
		if !hasKey {
			if sub != "" {
				return Caller{}, fmt.Errorf("%w: namespace %s needs an API key of that namespace", locklock.ErrUnauthorized, sub)
			}
			plan, ok := idx.Anonymous()
			if !ok {
				return Caller{}, fmt.Errorf("%w: this server needs an API key (Authorization: Bearer <key>)", locklock.ErrUnauthorized)
			}
			c := Caller{
				Namespace:   locklock.DefaultNamespace,
				CustomNames: plan.CustomNames,
				Anonymous:   true,
				RateLimit:   ratelimit.Limit{Rate: plan.Rate, Burst: plan.Burst},
				Plan:        idx.AnonymousPlan(),
			}
			if !c.RateLimit.Unlimited() { // no bucket, no need to tell clients apart
				c.RateKey = "addr:" + ratelimit.ClientAddr(r.RemoteAddr, r.Header.Values("X-Forwarded-For"), a.TrustedProxies)
			}
			return c, nil
		}
		key, plan, ok := idx.Lookup(presented)
		if !ok {
			return Caller{}, fmt.Errorf("%w: unknown API key", locklock.ErrUnauthorized)
		}
		if sub != "" && sub != key.Namespace {
			return Caller{}, fmt.Errorf("%w: this API key is not for namespace %s", locklock.ErrForbidden, sub)
		}
		return Caller{
			Namespace:   key.Namespace,
			CustomNames: plan.CustomNames,
			RateKey:     "key:" + key.ID,
			RateLimit:   ratelimit.Limit{Rate: plan.Rate, Burst: plan.Burst},
			Operator:    plan.Operator,
			KeyID:       key.ID,
			Plan:        key.Plan,
		}, nil
	}
}

// bearer extracts the API key from "Authorization: Bearer <key>". A header
// in any other form is refused rather than ignored: a client that sent
// credentials must not silently become anonymous.
func bearer(r *http.Request) (string, bool, error) {
	values := r.Header.Values("Authorization")
	if len(values) == 0 {
		return "", false, nil
	}
	scheme, key, found := strings.Cut(values[0], " ")
	key = strings.TrimSpace(key)
	if len(values) > 1 || !found || !strings.EqualFold(scheme, "Bearer") || key == "" {
		return "", false, fmt.Errorf("%w: send the API key as Authorization: Bearer <key>", locklock.ErrUnauthorized)
	}
	return key, true, nil
}

// subdomain returns ns for a Host of ns.<base> where ns is a valid
// namespace; "" for the base domain itself and any other host, which are
// served as the base.
func subdomain(host, base string) string {
	if base == "" {
		return ""
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	label, ok := strings.CutSuffix(host, "."+base)
	if !ok || strings.Contains(label, ".") || locklock.ValidateNamespace(label) != nil {
		return ""
	}
	return label
}
