// Package keys is the model of the keys file of API.md §5 — plans, the
// anonymous policy and API keys — and an atomically swappable, compiled view
// of it for the request path. It does no HTTP.
//
// The keys file is JSON:
//
//	{
//	  "anonymous": {"plan": "developer"},
//	  "plans": {
//	    "developer": {"custom_names": false, "rate": 0, "burst": 0},
//	    "pro": {"custom_names": true, "rate": 0, "burst": 0}
//	  },
//	  "keys": [
//	    {"id": "acme-ci", "namespace": "acme", "plan": "pro", "sha256": "<64 hex digits>"}
//	  ]
//	}
//
// Only the SHA-256 of a key is stored; the key itself (made by [NewKey]) is
// shown once to the operator and never written anywhere.
//
// # Parsing decisions
//
//   - "anonymous": null turns anonymous access off (every anonymous request is
//     401). An ABSENT "anonymous" field means the default policy
//     {"plan": "developer"}, so a file that only lists keys behaves like no
//     file for anonymous callers; such a file must then define a "developer"
//     plan. [File.Anonymous] is nil exactly when anonymous access is off.
//   - An absent "plans" or "keys" is empty. null anywhere else than as the
//     value of "anonymous" is an error, as are unknown or duplicate fields
//     (names match exactly, case included), wrong types, fractional or
//     out-of-range numbers, and anything after the top-level object.
//   - rate is requests per second and burst the bucket size; rate 0 means no
//     limit. A rate above 0 needs a burst of at least 1 (a bucket of size 0
//     would refuse everything), and a burst above 0 needs a rate (a burst
//     without a rate would be silently meaningless).
//   - "operator": true on a plan lets its keys force releases (API.md §11).
//     The anonymous policy may not name such a plan: that would make
//     every caller an operator.
//   - Errors name the offending entry (plan name, key id or position) and
//     field, never a key or a hash.
package keys

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"unicode"

	"github.com/locklock/locklock/locklock"
)

// Names of the built-in plans, which [Default] defines.
const (
	PlanDeveloper = "developer"
	PlanPro       = "pro"
)

// KeyPrefix starts every key made by [NewKey], so that a leaked key is
// recognisable (secret scanners, logs).
const KeyPrefix = "llk_"

// Plan says what a caller may do: custom lock names or not, and how fast.
type Plan struct {
	// CustomNames allows /lock/key/{name} (custom lock names).
	CustomNames bool `json:"custom_names"`
	// Rate is the sustained rate in requests per second; 0 means no limit.
	Rate float64 `json:"rate"`
	// Burst is the token bucket's size; 0 when Rate is 0.
	Burst int `json:"burst"`
	// Operator lets the plan's keys end any lock or slot of their
	// namespace without its secret (API.md §11). Never for anonymous
	// callers: Validate refuses it.
	Operator bool `json:"operator,omitempty"`
}

// Key is one API key's entry. The key itself is not kept, only its SHA-256.
type Key struct {
	// ID names the key for operators, logs and rate limiting; unique.
	ID string `json:"id"`
	// Namespace is the namespace the key works in (locklock.ValidateNamespace).
	Namespace string `json:"namespace"`
	// Plan is the name of the key's plan.
	Plan string `json:"plan"`
	// SHA256 is the lowercase hex SHA-256 of the key ([HashKey]); unique.
	SHA256 string `json:"sha256"`
}

// AnonymousPolicy is the plan of callers without a key.
type AnonymousPolicy struct {
	Plan string `json:"plan"`
}

// File is the content of a keys file.
type File struct {
	// Anonymous is nil when anonymous access is off.
	Anonymous *AnonymousPolicy `json:"anonymous"`
	Plans     map[string]Plan  `json:"plans"`
	Keys      []Key            `json:"keys"`
}

// Default is what a server without a keys file uses: the developer and pro
// plans (no rate limit), anonymous callers on developer, no keys.
func Default() File {
	return File{
		Anonymous: &AnonymousPolicy{Plan: PlanDeveloper},
		Plans: map[string]Plan{
			PlanDeveloper: {CustomNames: false},
			PlanPro:       {CustomNames: true},
		},
	}
}

// HashKey is the lowercase hex SHA-256 of key, as stored in the keys file.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// NewKey makes a random API key: "llk_" and 43 base64url characters (32
// bytes from crypto/rand, no padding).
func NewKey() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("keys: random key: %w", err)
	}
	return KeyPrefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// emptyHash is the SHA-256 of the empty string: an entry with it would let
// an empty key in.
var emptyHash = HashKey("")

// Validate checks f against the rules of the package doc and returns the
// first problem found, naming the entry. Plans are checked in name order,
// then the anonymous policy, then the keys in file order.
func (f File) Validate() error {
	if err := validatePlans(f.Plans); err != nil {
		return err
	}
	names := planNames(f.Plans)
	if f.Anonymous != nil {
		p, ok := f.Plans[f.Anonymous.Plan]
		if !ok {
			return fmt.Errorf("anonymous: plan %q does not exist (%s)", f.Anonymous.Plan, describePlans(names))
		}
		if p.Operator {
			return fmt.Errorf("anonymous: plan %q is an operator plan; anonymous callers cannot be operators (give the anonymous policy a plan without \"operator\": true)", f.Anonymous.Plan)
		}
	}
	ids := make(map[string]int, len(f.Keys))
	hashes := make(map[string]int, len(f.Keys))
	for i, k := range f.Keys {
		what := keyLabel(i, k)
		if k.ID == "" {
			return fmt.Errorf("%s: id is empty", what)
		}
		if hasControl(k.ID) {
			return fmt.Errorf("%s: id contains control characters", what)
		}
		if j, dup := ids[k.ID]; dup {
			return fmt.Errorf("%s: duplicate id (also keys[%d])", what, j)
		}
		ids[k.ID] = i
		if err := locklock.ValidateNamespace(k.Namespace); err != nil {
			// Drop the "invalid argument: " of the API's sentinel.
			msg := strings.TrimPrefix(err.Error(), locklock.ErrInvalidArgument.Error()+": ")
			return fmt.Errorf("%s: %s", what, msg)
		}
		if _, ok := f.Plans[k.Plan]; !ok {
			return fmt.Errorf("%s: plan %q does not exist (%s)", what, k.Plan, describePlans(names))
		}
		if err := checkHash(k.SHA256); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if k.SHA256 == emptyHash {
			return fmt.Errorf("%s: sha256 is the hash of the empty string", what)
		}
		if j, dup := hashes[k.SHA256]; dup {
			return fmt.Errorf("%s: same sha256 as %s", what, keyLabel(j, f.Keys[j]))
		}
		hashes[k.SHA256] = i
	}
	return nil
}

func validatePlans(plans map[string]Plan) error {
	for _, name := range planNames(plans) {
		if err := validatePlan(name, plans[name]); err != nil {
			return err
		}
	}
	return nil
}

func validatePlan(name string, p Plan) error {
	if name == "" {
		return errors.New(`plans: a plan name is empty`)
	}
	if hasControl(name) {
		return fmt.Errorf("plans: plan name %q contains control characters", name)
	}
	switch {
	case math.IsNaN(p.Rate) || math.IsInf(p.Rate, 0):
		return fmt.Errorf("plan %q: rate must be a finite number", name)
	case p.Rate < 0:
		return fmt.Errorf("plan %q: rate must be 0 (no limit) or more, got %v", name, p.Rate)
	case p.Burst < 0:
		return fmt.Errorf("plan %q: burst must be 0 or more, got %d", name, p.Burst)
	case p.Rate > 0 && p.Burst < 1:
		return fmt.Errorf("plan %q: rate %v needs a burst of at least 1 (a bucket of size 0 would refuse every request)", name, p.Rate)
	case p.Rate == 0 && p.Burst > 0:
		return fmt.Errorf("plan %q: burst %d without a rate means nothing (rate 0 is no limit); set a rate or burst 0", name, p.Burst)
	}
	return nil
}

// keyLabel names the i-th key entry in messages: by id when it has one.
func keyLabel(i int, k Key) string {
	if k.ID != "" {
		return fmt.Sprintf("key %q", k.ID)
	}
	return fmt.Sprintf("keys[%d]", i)
}

func planNames(plans map[string]Plan) []string {
	names := make([]string, 0, len(plans))
	for name := range plans {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

func describePlans(names []string) string {
	if len(names) == 0 {
		return "no plans are defined"
	}
	return "plans: " + strings.Join(names, ", ")
}

func isHash(s string) bool {
	if len(s) != sha256.Size*2 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// checkHash says what is wrong with a sha256 field, never what it holds.
func checkHash(s string) error {
	switch {
	case isHash(s):
		return nil
	case len(s) != sha256.Size*2:
		return fmt.Errorf("sha256 must be 64 lowercase hex digits, got %d characters", len(s))
	case isHash(strings.ToLower(s)):
		return errors.New("sha256 must be lowercase hex; it has upper-case digits")
	default:
		return errors.New("sha256 must be 64 lowercase hex digits; it has other characters")
	}
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, unicode.IsControl)
}
