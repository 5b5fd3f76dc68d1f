package client

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/locklock/locklock/locklock"
)

// lockBody is the JSON body of acquire, release, refresh and patch, of a
// lock or of a slot.
type lockBody struct {
	Secret    string  `json:"secret,omitempty"`
	ExpiresIn int64   `json:"expires_in,omitempty"`
	Wait      int64   `json:"wait,omitempty"`
	Holder    *string `json:"holder,omitempty"`
	// Metadata is a pointer so that an empty map is sent as {} (which
	// clears the metadata on PATCH) and an absent one not at all.
	Metadata  *map[string]string `json:"metadata,omitempty"`
	LockDelay int64              `json:"lock_delay,omitempty"`
	// Limit and Weight are a slot's, on its acquire only.
	Limit  int `json:"limit,omitempty"`
	Weight int `json:"weight,omitempty"`
}

// Acquire takes the lock (POST). Options: WithSecret (default: a random
// secret made here, returned in Lock.Secret), Unprotected, WithTTL (default:
// the server's, 30 days), WithWait, WithHolder, WithMetadata, WithLockDelay.
//
// Because the lock carries a secret, a lost answer is safely retried: the
// server answers a retry from the holder with 200 and the lock unchanged
// (whatever holder or metadata the retry carries). A lock held by someone
// else is an error matching locklock.ErrHeld (errors.As with *Error gives
// ExpiresAt and RetryAfter), one that a lock-delay keeps free an error
// matching locklock.ErrDelayed (with DelayedUntil and RetryAfter); neither
// is retried.
func (c *Client) Acquire(ctx context.Context, t Target, opts ...LockOption) (Lock, error) {
	if err := t.Validate(); err != nil {
		return Lock{}, err
	}
	o := callOpts(opts)
	if o.weight != nil {
		return Lock{}, fmt.Errorf("%w: a weight is a semaphore's, not a lock's (see Client.Semaphore)", locklock.ErrInvalidArgument)
	}
	var l Lock
	secret, created, err := c.create(ctx, t.path(), o, lockBody{LockDelay: wholeSeconds(o.lockDelay)}, &l)
	if err != nil {
		return Lock{}, err
	}
	l.Secret, l.Created = secret, created
	return l, nil
}

// create POSTs the acquire of a lock or a slot at path: body with the
// secret, lifetime, wait and labels of o filled in. It returns the secret
// (the caller's, or a random one made here) and whether this call took the
// lock or slot.
func (c *Client) create(ctx context.Context, path string, o callOptions, body lockBody, out any) (secret string, created bool, err error) {
	if err := o.checkDurations(); err != nil {
		return "", false, err
	}
	secret = rand.Text() // 128 random bits
	if o.secret != nil {
		secret = *o.secret
	}
	body.Secret, body.ExpiresIn, body.Wait = secret, wholeSeconds(o.ttl), wholeSeconds(o.wait)
	if o.holder != nil && *o.holder != "" {
		body.Holder = o.holder
	}
	if len(o.metadata) > 0 {
		body.Metadata = &o.metadata
	}
	status, err := c.do(ctx, request{
		method:     http.MethodPost,
		path:       path,
		body:       body,
		idempotent: secret != "",
	}, out)
	if err != nil {
		return "", false, err
	}
	// A 200 is a lock (or slot) already held with this secret. A secret
	// made here is known to nobody else, so what it holds is this call's
	// own: an earlier attempt took it and its answer was lost.
	return secret, status == http.StatusCreated || (o.secret == nil && status == http.StatusOK), nil
}

// checkDurations refuses a negative TTL, wait or lock-delay, which would
// otherwise round to 0 and so ask for the server's default (30 days for a
// TTL): a deadline already past (WithTTL(time.Until(deadline))) is a
// mistake.
func (o callOptions) checkDurations() error {
	if o.ttl < 0 || o.wait < 0 || o.lockDelay < 0 {
		return fmt.Errorf("%w: negative TTL %v, wait %v or lock-delay %v", locklock.ErrInvalidArgument, o.ttl, o.wait, o.lockDelay)
	}
	return nil
}

// Release frees the lock (DELETE) and returns it as it was. A protected lock
// needs WithSecret, unless an operator forces the release (Forced). A lock that is gone (released, expired, never taken)
// matches locklock.ErrNotFound.
//
// A release is retried only after failures that certainly did nothing: had
// an earlier attempt freed the lock, a retry would report ErrNotFound.
func (c *Client) Release(ctx context.Context, t Target, opts ...LockOption) (Lock, error) {
	if err := t.Validate(); err != nil {
		return Lock{}, err
	}
	o := callOpts(opts)
	var out struct {
		Lock Lock `json:"lock"`
	}
	_, err := c.do(ctx, request{method: http.MethodDelete, path: t.path(), body: secretBody(o), force: o.force}, &out)
	return out.Lock, err
}

// Refresh extends the lock (PATCH): it now expires WithTTL from now (default:
// the server's default lifetime); its fencing token, holder and metadata
// stay (WithHolder and WithMetadata are Patch's). A protected lock needs
// WithSecret.
func (c *Client) Refresh(ctx context.Context, t Target, opts ...LockOption) (Lock, error) {
	o := callOpts(opts)
	o.holder, o.metadata, o.setMeta = nil, nil, false
	return c.patch(ctx, t, o)
}

// Patch changes the lock (PATCH) and returns it as it is after: WithHolder
// and WithMetadata replace its holder and metadata (an empty map clears
// it), WithTTL makes it expire that long from now. Without WithTTL, a Patch
// with WithHolder or WithMetadata leaves the expiry as it is — how a leader
// publishes a new address without touching its term; one with none of the
// three extends by the server's default lifetime, as Refresh does. The
// fencing token and the lock-delay stay. A protected lock needs WithSecret.
// A lock that is gone, or in its lock-delay, matches locklock.ErrNotFound.
func (c *Client) Patch(ctx context.Context, t Target, opts ...LockOption) (Lock, error) {
	return c.patch(ctx, t, callOpts(opts))
}

func (c *Client) patch(ctx context.Context, t Target, o callOptions) (Lock, error) {
	if err := t.Validate(); err != nil {
		return Lock{}, err
	}
	var l Lock
	err := c.patchAt(ctx, t.path(), o, &l)
	return l, err
}

// patchAt PATCHes the lock or slot at path with o's secret, lifetime and
// labels.
func (c *Client) patchAt(ctx context.Context, path string, o callOptions, out any) error {
	if err := o.checkDurations(); err != nil {
		return err
	}
	body := secretBody(o)
	body.ExpiresIn = wholeSeconds(o.ttl)
	body.Holder = o.holder
	if o.setMeta {
		body.Metadata = &o.metadata
	}
	// Idempotent: it sets values, so a second copy sets the same ones.
	_, err := c.do(ctx, request{method: http.MethodPatch, path: path, body: body, idempotent: true}, out)
	return err
}

func secretBody(o callOptions) lockBody {
	if o.secret == nil {
		return lockBody{}
	}
	return lockBody{Secret: *o.secret}
}

// Get returns the lock if it is held; locklock.ErrNotFound otherwise.
func (c *Client) Get(ctx context.Context, t Target) (Lock, error) {
	if err := t.Validate(); err != nil {
		return Lock{}, err
	}
	var l Lock
	_, err := c.do(ctx, request{method: http.MethodGet, path: t.path(), idempotent: true}, &l)
	return l, err
}

// ListOptions selects a page of List or ListSemaphores.
type ListOptions struct {
	Kind   locklock.Kind // uuid (the default) or key
	Prefix string        // only names starting with this
	Limit  int           // at most this many (0: the server's default)
	After  string        // the previous page's Next
}

// Page is one page of List. Next is empty on the last page.
type Page struct {
	Locks []Lock `json:"locks"`
	Next  string `json:"next"`
}

// List returns a page of the held locks of the API key's namespace, ordered
// by name. Listing needs an API key.
func (c *Client) List(ctx context.Context, o ListOptions) (Page, error) {
	var p Page
	err := c.list(ctx, "/locks", o, &p)
	return p, err
}

// list GETs the page of the listing at path that o selects.
func (c *Client) list(ctx context.Context, path string, o ListOptions, out any) error {
	_, err := c.do(ctx, request{method: http.MethodGet, path: path + "?" + o.query(), idempotent: true}, out)
	return err
}

// query is the listing's query string, for /locks and /semaphores.
func (o ListOptions) query() string {
	q := url.Values{}
	kind := o.Kind
	if kind == "" {
		kind = locklock.KindUUID
	}
	q.Set("kind", string(kind))
	if o.Prefix != "" {
		q.Set("prefix", o.Prefix)
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.After != "" {
		q.Set("after", o.After)
	}
	return q.Encode()
}
