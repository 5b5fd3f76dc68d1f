package client

import (
	"fmt"
	"maps"
	"net/url"
	"strings"
	"time"

	"github.com/locklock/locklock/internal/abbrev"
	"github.com/locklock/locklock/locklock"
)

// Target names a lock: a UUID lock (everyone) or a custom-named one (plans
// with custom names). Its text form is "uuid/<uuid>" or "key/<name>", as on
// the command line. It names a semaphore too (Client.Semaphore), in a space
// of its own: a lock and a semaphore may share a name.
type Target struct {
	Kind locklock.Kind
	Name string
}

// UUID is the target of the UUID lock id.
func UUID(id string) Target { return Target{Kind: locklock.KindUUID, Name: id} }

// Key is the target of the custom-named lock name.
func Key(name string) Target { return Target{Kind: locklock.KindKey, Name: name} }

// ParseTarget reads "uuid/<uuid>" or "key/<name>" and checks the name
// against the API's rules, so a typo fails before any request is made.
func ParseTarget(s string) (Target, error) {
	kind, name, ok := strings.Cut(s, "/")
	if !ok {
		return Target{}, fmt.Errorf("%w: lock %q: want uuid/<uuid> or key/<name>", locklock.ErrInvalidArgument, abbrev.String(s))
	}
	t := Target{Kind: locklock.Kind(kind), Name: name}
	return t, t.Validate()
}

// Validate checks the target against the API's name rules.
func (t Target) Validate() error {
	if t.Kind != locklock.KindUUID && t.Kind != locklock.KindKey {
		return fmt.Errorf("%w: lock kind %q: want uuid or key", locklock.ErrInvalidArgument, abbrev.String(string(t.Kind)))
	}
	_, err := locklock.NewID(locklock.DefaultNamespace, t.Kind, t.Name)
	return err
}

func (t Target) String() string { return string(t.Kind) + "/" + t.Name }

func (t Target) path() string { return "/lock/" + string(t.Kind) + "/" + url.PathEscape(t.Name) }

// semaphorePath is the path of the semaphore of the same name.
func (t Target) semaphorePath() string {
	return "/semaphore/" + string(t.Kind) + "/" + url.PathEscape(t.Name)
}

// Lock is the lock object of the API (API.md §3).
type Lock struct {
	Namespace  string        `json:"namespace"`
	Kind       locklock.Kind `json:"kind"`
	Name       string        `json:"name"`
	AcquiredAt time.Time     `json:"acquired_at"`
	ExpiresAt  time.Time     `json:"expires_at"`
	// ExpiresIn is the whole seconds that were left when the server answered.
	ExpiresIn int64 `json:"expires_in"`
	// FencingToken is greater than every token issued before for this
	// lock name. Hand it to the resource the lock protects, so that the
	// resource can refuse a holder whose lock has since passed to another.
	FencingToken uint64 `json:"fencing_token"`
	// Protected says that a secret guards the lock.
	Protected bool `json:"protected"`
	// Holder says who holds the lock; empty when none was given.
	Holder string `json:"holder,omitempty"`
	// Metadata are the lock's labels; nil when there are none.
	Metadata map[string]string `json:"metadata,omitempty"`
	// LockDelay is the lock's lock-delay in whole seconds; 0 for none.
	LockDelay int64 `json:"lock_delay,omitempty"`

	// Secret is the secret this client acquired the lock with — the
	// caller's, or one the client made — needed to release or refresh it.
	// Only Acquire and Hold fill it in; the server never returns it, and it
	// is never marshalled.
	Secret string `json:"-"`
	// Created is true when this call took a free lock (201), false when it
	// found the lock already held with the same secret (200: a retry).
	Created bool `json:"-"`
}

// Target is the lock's target, for Release, Refresh and Get.
func (l Lock) Target() Target { return Target{Kind: l.Kind, Name: l.Name} }

// LockOption is an option of one call.
type LockOption func(*callOptions)

type callOptions struct {
	secret    *string
	ttl       time.Duration
	wait      time.Duration
	margin    time.Duration // Hold and Do only
	holder    *string
	metadata  map[string]string // with setMeta: never nil
	setMeta   bool
	lockDelay time.Duration
	weight    *int // slots only
	force     bool // Release only
}

// WithSecret sets the lock's secret. Acquire without it makes a random one
// (returned in Lock.Secret); Release and Refresh of a protected lock need it.
func WithSecret(s string) LockOption { return func(o *callOptions) { o.secret = &s } }

// Forced makes a Release an operator's forced release (Locklock-Force:
// true, API.md §11): the lock or slot ends whatever its secret, announced
// as `revoked`, and a lock's lock-delay starts as on expiry. Only an API
// key on a plan with "operator": true may do it; any other gets an error
// matching locklock.ErrForbidden. Other calls ignore it.
func Forced() LockOption { return func(o *callOptions) { o.force = true } }

// Unprotected acquires without a secret: anyone may then release the lock
// (the API's seed behaviour). Such an acquire is not retried after a
// failure that may have taken the lock, since a retry would find the lock
// held and could not tell it was its own.
func Unprotected() LockOption { return func(o *callOptions) { o.secret = new(string) } }

// WithTTL sets the lock's lifetime (expires_in) for Acquire, Refresh, Hold
// and Do. The API counts whole seconds: a fraction is rounded up.
func WithTTL(d time.Duration) LockOption { return func(o *callOptions) { o.ttl = d } }

// WithWait makes Acquire, Hold and Do wait up to d for a held lock (a long
// poll on the server, in whole seconds rounded up) instead of failing at once.
func WithWait(d time.Duration) LockOption { return func(o *callOptions) { o.wait = d } }

// WithSafetyMargin makes Hold and Do end their context this long before the
// lock would lapse when no refresh has been confirmed: the time the work
// needs to stop, plus any clock drift to allow for. The default is a fifth
// of the TTL; it must be less than two thirds of it, since a refresh is due
// every third.
func WithSafetyMargin(d time.Duration) LockOption { return func(o *callOptions) { o.margin = d } }

// WithHolder says who holds the lock (a host, a job id; 1–128 bytes, no
// control characters), for Acquire, Hold, Do and Patch. It is not a
// secret: everyone who may read the lock sees it. On Acquire an empty
// holder is none; on Patch it is refused (a holder can be replaced, not
// removed).
func WithHolder(h string) LockOption { return func(o *callOptions) { o.holder = &h } }

// WithMetadata sets the lock's labels (at most 16; names of A-Z a-z 0-9 .
// _ -, values of at most 256 bytes), for Acquire, Hold, Do and Patch. On
// Patch it replaces the lock's metadata as a whole, and an empty or nil map
// clears it. The map is copied.
func WithMetadata(md map[string]string) LockOption {
	md = maps.Clone(md)
	if md == nil {
		md = map[string]string{}
	}
	return func(o *callOptions) { o.metadata, o.setMeta = md, true }
}

// WithLockDelay gives the lock a lock-delay, for Acquire, Hold and Do: if
// it expires, nobody else may take it for d after its expiry (API.md §8);
// this client's own secret may. Whole seconds, rounded up; at most the
// server's maximum (default 60 s).
func WithLockDelay(d time.Duration) LockOption { return func(o *callOptions) { o.lockDelay = d } }

// WithWeight sets how many of a semaphore's units a slot holds (1 to the
// semaphore's limit; default 1), for Semaphore.Acquire, Hold and Do: a
// reader takes 1, a writer the whole limit. Locks have no weight: their
// Acquire refuses it.
func WithWeight(w int) LockOption { return func(o *callOptions) { o.weight = &w } }

func callOpts(opts []LockOption) callOptions {
	var o callOptions
	for _, f := range opts {
		f(&o)
	}
	return o
}

// wholeSeconds rounds up: a lock lives at least as long as asked, and a
// wait lasts at least as long.
func wholeSeconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}
