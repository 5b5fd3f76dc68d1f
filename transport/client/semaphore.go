package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/locklock/locklock/internal/abbrev"
	"github.com/locklock/locklock/locklock"
)

// Semaphore is a handle on one semaphore (API.md §10): up to Limit units
// held at once, in slots of a weight each. Making one sends nothing; the
// semaphore exists on the server while it has live slots.
type Semaphore struct {
	c      *Client
	target Target
	limit  int
}

// Semaphore returns a handle on the semaphore t (named as locks are, in a
// space of its own) with the given limit (1–10,000). Only acquires send the
// limit: while the semaphore has live slots, theirs must match it
// (otherwise locklock.ErrLimitMismatch); other calls work whatever the
// handle's limit.
func (c *Client) Semaphore(t Target, limit int) *Semaphore {
	return &Semaphore{c: c, target: t, limit: limit}
}

// Target is the semaphore's name.
func (s *Semaphore) Target() Target { return s.target }

// Limit is the limit the handle's acquires send.
func (s *Semaphore) Limit() int { return s.limit }

// Slot is the slot object of the API (API.md §10): one holder's share of a
// semaphore.
type Slot struct {
	// Namespace, Kind and Name name the semaphore the slot belongs to.
	Namespace string        `json:"namespace"`
	Kind      locklock.Kind `json:"kind"`
	Name      string        `json:"name"`
	// ID is the slot's random id (22 URL-safe characters), which release,
	// refresh and patch name it by.
	ID string `json:"slot"`
	// Limit is the semaphore's limit; Weight how many of its units the
	// slot holds.
	Limit      int       `json:"limit"`
	Weight     int       `json:"weight"`
	AcquiredAt time.Time `json:"acquired_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	// ExpiresIn is the whole seconds that were left when the server answered.
	ExpiresIn int64 `json:"expires_in"`
	// FencingToken rises per semaphore, across all its slots.
	FencingToken uint64 `json:"fencing_token"`
	// Protected says that a secret guards the slot.
	Protected bool `json:"protected"`
	// Holder says who holds the slot; empty when none was given.
	Holder string `json:"holder,omitempty"`
	// Metadata are the slot's labels; nil when there are none.
	Metadata map[string]string `json:"metadata,omitempty"`

	// Secret is the secret this client acquired the slot with, as for a
	// Lock: only Acquire and Hold fill it in, and it is never marshalled.
	Secret string `json:"-"`
	// Created is true when this call took the slot (201), false when it
	// found a slot of the semaphore already held with the same secret.
	Created bool `json:"-"`
}

// Target is the semaphore's target.
func (sl Slot) Target() Target { return Target{Kind: sl.Kind, Name: sl.Name} }

// SemaphoreState is a semaphore as GET answers it: its limit, the units in
// use, and a page of its live slots by fencing token.
type SemaphoreState struct {
	Namespace string        `json:"namespace"`
	Kind      locklock.Kind `json:"kind"`
	Name      string        `json:"name"`
	Limit     int           `json:"limit"`
	// InUse is the sum of the weights of all live slots, not only the
	// page's.
	InUse int    `json:"in_use"`
	Slots []Slot `json:"slots"`
	// Next is the WithAfter of the following page; empty on the last.
	Next string `json:"next,omitempty"`
}

// Acquire takes a slot (POST). Options: WithWeight (default 1), WithSecret
// (default: a random secret made here, returned in Slot.Secret),
// Unprotected, WithTTL (default: the server's, 30 days), WithWait,
// WithHolder, WithMetadata. WithLockDelay is refused: semaphores have none.
//
// As for a lock, a lost answer is safely retried: the server answers a
// retry with the secret of a live slot with 200 and that slot unchanged.
// A slot that does not fit is an error matching locklock.ErrSemaphoreFull
// (errors.As with *Error gives Limit, InUse and RetryAfter); a limit other
// than the live slots' one matching locklock.ErrLimitMismatch (with the
// semaphore's Limit). Neither is retried.
func (s *Semaphore) Acquire(ctx context.Context, opts ...LockOption) (Slot, error) {
	o := callOpts(opts)
	if err := s.checkAcquire(o); err != nil {
		return Slot{}, err
	}
	body := lockBody{Limit: s.limit}
	if o.weight != nil {
		body.Weight = *o.weight
	}
	var sl Slot
	secret, created, err := s.c.create(ctx, s.target.semaphorePath(), o, body, &sl)
	if err != nil {
		return Slot{}, err
	}
	sl.Secret, sl.Created = secret, created
	return sl, nil
}

// checkAcquire refuses, before any request, what the server would: a bad
// name, limit or weight, and a lock-delay.
func (s *Semaphore) checkAcquire(o callOptions) error {
	if err := s.target.Validate(); err != nil {
		return err
	}
	if s.limit < 1 || s.limit > locklock.MaxSemaphoreLimit {
		return fmt.Errorf("%w: semaphore limit %d: want 1 to %d", locklock.ErrInvalidArgument, s.limit, locklock.MaxSemaphoreLimit)
	}
	if o.weight != nil && (*o.weight < 1 || *o.weight > s.limit) {
		return fmt.Errorf("%w: weight %d: want 1 to the limit, %d", locklock.ErrInvalidArgument, *o.weight, s.limit)
	}
	if o.lockDelay != 0 {
		return fmt.Errorf("%w: a lock-delay is a lock's, not a semaphore's", locklock.ErrInvalidArgument)
	}
	return nil
}

// slotPath is the path of the slot id, checked first: the target against
// the name rules, the id against the form of slot ids. A malformed id
// names no slot, as the server would say.
func (s *Semaphore) slotPath(id string) (string, error) {
	if err := s.target.Validate(); err != nil {
		return "", err
	}
	if !locklock.ValidSlotID(id) {
		return "", fmt.Errorf("%w: %q is not a slot id (%d URL-safe characters)", locklock.ErrSlotNotFound, abbrev.String(id), locklock.SlotIDLen)
	}
	return s.target.semaphorePath() + "/" + id, nil
}

// slotOpts are o with sl's secret when o gives none.
func slotOpts(sl Slot, opts []LockOption) callOptions {
	o := callOpts(opts)
	if o.secret == nil && sl.Secret != "" {
		o.secret = &sl.Secret
	}
	return o
}

// Release frees the slot sl.ID of this semaphore (DELETE) and returns it
// as it was: sl may be what Acquire returned, or just Slot{ID: id}. The
// secret is sl.Secret (as Acquire returned it), unless WithSecret or
// Unprotected says otherwise. A slot that is gone matches
// locklock.ErrSlotNotFound. As a lock's, a release is retried only after
// failures that certainly did nothing.
func (s *Semaphore) Release(ctx context.Context, sl Slot, opts ...LockOption) (Slot, error) {
	path, err := s.slotPath(sl.ID)
	if err != nil {
		return Slot{}, err
	}
	var out struct {
		Slot Slot `json:"slot"`
	}
	o := slotOpts(sl, opts)
	_, err = s.c.do(ctx, request{method: http.MethodDelete, path: path, body: secretBody(o), force: o.force}, &out)
	return out.Slot, err
}

// Refresh extends the slot sl.ID (PATCH): it now expires WithTTL from now
// (default: the server's default lifetime); its fencing token, holder and
// metadata stay. The secret is as for Release.
func (s *Semaphore) Refresh(ctx context.Context, sl Slot, opts ...LockOption) (Slot, error) {
	o := slotOpts(sl, opts)
	o.holder, o.metadata, o.setMeta = nil, nil, false
	return s.patch(ctx, sl.ID, o)
}

// Patch changes the slot sl.ID (PATCH) and returns it as it is after, as
// Client.Patch does a lock: WithHolder and WithMetadata replace its labels,
// WithTTL moves its expiry. The secret is as for Release.
func (s *Semaphore) Patch(ctx context.Context, sl Slot, opts ...LockOption) (Slot, error) {
	return s.patch(ctx, sl.ID, slotOpts(sl, opts))
}

func (s *Semaphore) patch(ctx context.Context, id string, o callOptions) (Slot, error) {
	path, err := s.slotPath(id)
	if err != nil {
		return Slot{}, err
	}
	var sl Slot
	err = s.c.patchAt(ctx, path, o, &sl)
	return sl, err
}

// Slot returns the live slot id; locklock.ErrSlotNotFound otherwise.
func (s *Semaphore) Slot(ctx context.Context, id string) (Slot, error) {
	path, err := s.slotPath(id)
	if err != nil {
		return Slot{}, err
	}
	var sl Slot
	_, err = s.c.do(ctx, request{method: http.MethodGet, path: path, idempotent: true}, &sl)
	return sl, err
}

// PageOption selects a page of a semaphore's slots, for Semaphore.Get.
type PageOption func(*pageOptions)

type pageOptions struct {
	size  int
	after string
}

// WithPageSize lists at most n slots (1–1000; 0: the server's default,
// 1000).
func WithPageSize(n int) PageOption { return func(o *pageOptions) { o.size = n } }

// WithAfter lists the slots after the previous page: its Next.
func WithAfter(next string) PageOption { return func(o *pageOptions) { o.after = next } }

// Get returns the semaphore with a page of its live slots, by fencing token
// (WithPageSize, WithAfter); locklock.ErrSemaphoreNotFound when it has no
// live slot.
func (s *Semaphore) Get(ctx context.Context, opts ...PageOption) (SemaphoreState, error) {
	if err := s.target.Validate(); err != nil {
		return SemaphoreState{}, err
	}
	var o pageOptions
	for _, f := range opts {
		f(&o)
	}
	q := url.Values{}
	if o.size > 0 {
		q.Set("limit", strconv.Itoa(o.size))
	}
	if o.after != "" {
		q.Set("after", o.after)
	}
	path := s.target.semaphorePath()
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var st SemaphoreState
	_, err := s.c.do(ctx, request{method: http.MethodGet, path: path, idempotent: true}, &st)
	return st, err
}

// SemaphoreSummary is a semaphore in a listing: its slots counted, not
// listed. Its namespace is the caller's.
type SemaphoreSummary struct {
	Name  string        `json:"name"`
	Kind  locklock.Kind `json:"kind"`
	Limit int           `json:"limit"`
	InUse int           `json:"in_use"`
	Slots int           `json:"slots"`
}

// SemaphorePage is one page of ListSemaphores. Next is empty on the last
// page.
type SemaphorePage struct {
	Semaphores []SemaphoreSummary `json:"semaphores"`
	Next       string             `json:"next"`
}

// ListSemaphores returns a page of the semaphores with live slots of the
// API key's namespace, ordered by name, selected as List selects locks.
// Listing needs an API key.
func (c *Client) ListSemaphores(ctx context.Context, o ListOptions) (SemaphorePage, error) {
	var p SemaphorePage
	err := c.list(ctx, "/semaphores", o, &p)
	return p, err
}
