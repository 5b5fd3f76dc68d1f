// Package client is the Go client of the Locklock HTTP API.
//
//	c, err := client.New("http://127.0.0.1:8080", client.WithAPIKey(key))
//	lock, err := c.Acquire(ctx, client.Key("nightly-report"), client.WithTTL(time.Minute))
//	...
//	_, err = c.Release(ctx, lock.Target(), client.WithSecret(lock.Secret))
//
// or, keeping the lock alive for as long as the work runs:
//
//	err := c.Do(ctx, client.Key("nightly-report"), func(ctx context.Context, l client.Lock) error {
//		return report(ctx, l.FencingToken) // ctx ends if the lock may be lost
//	})
//
// A semaphore (API.md §10) lets up to its limit of units be held at once,
// in slots of a weight each — N workers on a quota, or readers (weight 1)
// and a writer (weight limit). Its slots are taken, kept and released the
// same ways:
//
//	renders := c.Semaphore(client.Key("render-farm"), 4)
//	err := renders.Do(ctx, func(ctx context.Context, s client.Slot) error {
//		return render(ctx, s.FencingToken) // at most 4 at once; ctx ends if the slot may be lost
//	}, client.WithWait(time.Minute))
//
// or one call at a time: renders.Acquire (client.WithWeight for more than
// one unit), renders.Release(ctx, slot), Refresh, Patch, Get (the limit,
// the units in use and the slots), and c.ListSemaphores and
// c.WatchSemaphore.
//
// Errors match the core's sentinels with errors.Is (locklock.ErrHeld,
// ErrDelayed, ErrNotFound, ErrSecretMismatch, ErrUnauthorized, ErrForbidden,
// ErrRateLimited, ErrUnavailable, and for semaphores ErrSemaphoreFull,
// ErrLimitMismatch, ErrSemaphoreNotFound, ErrSlotNotFound, …); errors.As
// with *Error gives the HTTP details, such as the server's Retry-After, a
// lock-delay's DelayedUntil, or a full semaphore's Limit and InUse.
package client

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// APIPrefix is where a standalone server serves the API. New appends it to
// a base URL that has no path of its own. It is the prefix's one home: the
// server (package app) mounts the API here, and a transport test holds the
// OpenAPI document's server URL to it.
const APIPrefix = "/v1/api"

// Retry defaults: enough to ride out a server restart or an etcd election
// (a few seconds) without hiding a lasting outage.
const (
	defaultRetries   = 5
	defaultBackoff   = 100 * time.Millisecond
	defaultMaxBackof = 5 * time.Second
)

// Client talks to one Locklock server (or a load balancer in front of
// several). It is safe for concurrent use.
type Client struct {
	base       string // scheme://host/prefix, no trailing slash
	apiKey     string
	http       *http.Client
	userAgent  string
	retries    int
	backoff    time.Duration
	maxBackoff time.Duration
	slotFeeds  slotFeeds // the semaphore streams its HeldSlots share
}

// Option configures a Client.
type Option func(*Client)

// WithAPIKey sends key as "Authorization: Bearer <key>" on every request.
func WithAPIKey(key string) Option { return func(c *Client) { c.apiKey = key } }

// WithHTTPClient sets the HTTP client (for TLS settings, proxies, a custom
// transport). The default is a client of its own with keep-alive
// connections and no overall timeout: each call is bounded by its context,
// because an acquire with a wait legitimately takes long.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.http = hc } }

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option { return func(c *Client) { c.userAgent = ua } }

// WithRetries sets how often a call is retried after a 503, a 429 or a
// network failure (see the Client's methods for which calls retry which
// failures). Zero turns retrying off.
func WithRetries(n int) Option { return func(c *Client) { c.retries = max(n, 0) } }

// WithBackoff sets the first retry delay and its cap; each retry doubles the
// delay, with jitter. A server's Retry-After, if longer, wins.
func WithBackoff(first, most time.Duration) Option {
	return func(c *Client) { c.backoff, c.maxBackoff = first, max(first, most) }
}

// New returns a client for the server at baseURL. A URL without a path
// ("http://127.0.0.1:8080") gets the standalone server's /v1/api; a URL
// with one is used as given, for a handler mounted under another prefix.
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("client: bad server URL %q: %v", baseURL, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("client: server URL %q must be http:// or https:// with a host", baseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("client: server URL %q must not have a query or fragment", baseURL)
	}
	if strings.Trim(u.Path, "/") == "" {
		u.Path, u.RawPath = APIPrefix, ""
	}
	c := &Client{
		base:       strings.TrimSuffix(u.String(), "/"),
		http:       &http.Client{Transport: defaultTransport()},
		userAgent:  "locklock-go-client",
		retries:    defaultRetries,
		backoff:    defaultBackoff,
		maxBackoff: defaultMaxBackof,
	}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// defaultTransport keeps enough idle connections for a busy program that
// shares one Client between many goroutines (net/http's default keeps 2
// per host, so the rest would reconnect on every call).
func defaultTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64
	return t
}

// BaseURL is the API base every path is appended to.
func (c *Client) BaseURL() string { return c.base }
