package keyauth_test

import (
	"errors"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/locklock/locklock/internal/keyauth"
	"github.com/locklock/locklock/internal/keys"
	"github.com/locklock/locklock/locklock"
	"github.com/locklock/locklock/transport/ratelimit"
)

const (
	proKey = "llk_pro-test-key"
	devKey = "llk_dev-test-key"
	opsKey = "llk_ops-test-key"
)

// TestNew: who each request acts for, and which sentinel each refusal wraps
// (transport turns them into 401 and 403); the handler-level behaviour is
// transport's access_test.go.
func TestNew(t *testing.T) {
	slow := ratelimit.Limit{Rate: 1, Burst: 2}
	auth := keyauth.New(keyauth.Access{
		Keys: keys.NewStore(keys.NewIndex(keys.File{
			Anonymous: &keys.AnonymousPolicy{Plan: keys.PlanDeveloper},
			Plans: map[string]keys.Plan{
				keys.PlanDeveloper: {Rate: slow.Rate, Burst: slow.Burst},
				keys.PlanPro:       {CustomNames: true},
				"ops":              {CustomNames: true, Operator: true},
			},
			Keys: []keys.Key{
				{ID: "acme-ci", Namespace: "acme", Plan: keys.PlanPro, SHA256: keys.HashKey(proKey)},
				{ID: "dev", Namespace: "devco", Plan: keys.PlanDeveloper, SHA256: keys.HashKey(devKey)},
				{ID: "acme-oncall", Namespace: "acme", Plan: "ops", SHA256: keys.HashKey(opsKey)},
			},
		})),
		BaseDomain:     "locks.example.com",
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")},
	})
	cases := []struct {
		name   string
		host   string
		hdr    []string
		remote string
		want   keyauth.Caller
		err    error
	}{
		{name: "pro key", hdr: []string{"Authorization", "Bearer " + proKey},
			want: keyauth.Caller{Namespace: "acme", CustomNames: true, RateKey: "key:acme-ci", KeyID: "acme-ci", Plan: keys.PlanPro}},
		{name: "scheme in any case", hdr: []string{"Authorization", "bearer " + devKey},
			want: keyauth.Caller{Namespace: "devco", RateKey: "key:dev", RateLimit: slow, KeyID: "dev", Plan: keys.PlanDeveloper}},
		{name: "operator key", hdr: []string{"Authorization", "Bearer " + opsKey},
			want: keyauth.Caller{Namespace: "acme", CustomNames: true, RateKey: "key:acme-oncall", Operator: true, KeyID: "acme-oncall", Plan: "ops"}},
		{name: "anonymous, bucket per address", remote: "198.51.100.7:4000",
			want: keyauth.Caller{Namespace: locklock.DefaultNamespace, Anonymous: true, RateKey: "addr:198.51.100.7", RateLimit: slow, Plan: keys.PlanDeveloper}},
		{name: "anonymous behind a trusted proxy", remote: "192.0.2.1:4000", hdr: []string{"X-Forwarded-For", "203.0.113.9"},
			want: keyauth.Caller{Namespace: locklock.DefaultNamespace, Anonymous: true, RateKey: "addr:203.0.113.9", RateLimit: slow, Plan: keys.PlanDeveloper}},
		{name: "its own subdomain", host: "acme.locks.example.com", hdr: []string{"Authorization", "Bearer " + proKey},
			want: keyauth.Caller{Namespace: "acme", CustomNames: true, RateKey: "key:acme-ci", KeyID: "acme-ci", Plan: keys.PlanPro}},
		{name: "unknown key", hdr: []string{"Authorization", "Bearer llk_nope"}, err: locklock.ErrUnauthorized},
		{name: "not bearer", hdr: []string{"Authorization", "Basic YTpi"}, err: locklock.ErrUnauthorized},
		{name: "two headers", hdr: []string{"Authorization", "Bearer " + proKey, "Authorization", "Bearer " + proKey}, err: locklock.ErrUnauthorized},
		{name: "another namespace's subdomain", host: "devco.locks.example.com", hdr: []string{"Authorization", "Bearer " + proKey}, err: locklock.ErrForbidden},
		{name: "anonymous on a subdomain", host: "acme.locks.example.com", err: locklock.ErrUnauthorized},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/lock/uuid/x", nil)
			if c.host != "" {
				r.Host = c.host
			}
			if c.remote != "" {
				r.RemoteAddr = c.remote
			}
			for i := 0; i < len(c.hdr); i += 2 {
				r.Header.Add(c.hdr[i], c.hdr[i+1])
			}
			got, err := auth(r)
			if c.err != nil {
				if !errors.Is(err, c.err) {
					t.Fatalf("error %v, want one wrapping %v", err, c.err)
				}
				if got != (keyauth.Caller{}) {
					t.Errorf("a refusal returned caller %+v", got)
				}
				return
			}
			if err != nil || got != c.want {
				t.Errorf("got %+v, %v; want %+v", got, err, c.want)
			}
		})
	}
}
