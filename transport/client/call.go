package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"time"
)

// maxBody bounds a successful response (a list page of 1000 locks is about
// 300 KB).
const maxBody = 4 << 20

// request is one API call, re-sent as is on a retry.
type request struct {
	method string
	path   string // relative to the base, query included
	body   any    // marshalled to JSON; nil sends no body
	// idempotent: sending it twice does what sending it once does, so any
	// failure may be retried. Otherwise only failures that certainly did
	// nothing are (429, a refused connection).
	idempotent bool
	// force sends Locklock-Force: true (a forced release, API.md §11).
	force bool
}

// do sends req, retrying as the Client allows, and decodes a 2xx body into
// out. It reports the final status.
func (c *Client) do(ctx context.Context, req request, out any) (int, error) {
	var payload []byte
	if req.body != nil {
		var err error
		if payload, err = json.Marshal(req.body); err != nil {
			return 0, fmt.Errorf("client: encode request: %w", err)
		}
	}
	for attempt := 0; ; attempt++ {
		status, err := c.once(ctx, req, payload, out)
		if err == nil {
			return status, nil
		}
		if attempt >= c.retries || !retryable(err, req.idempotent) {
			return status, err
		}
		if !c.sleep(ctx, c.delay(attempt, err)) {
			return status, err
		}
	}
}

func (c *Client) once(ctx context.Context, req request, payload []byte, out any) (int, error) {
	var body io.Reader
	if payload != nil {
		body = bytes.NewReader(payload)
	}
	hr, err := http.NewRequestWithContext(ctx, req.method, c.base+req.path, body)
	if err != nil {
		return 0, fmt.Errorf("client: %w", err)
	}
	if payload != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	hr.Header.Set("Accept", "application/json, application/problem+json")
	hr.Header.Set("User-Agent", c.userAgent)
	if req.force {
		hr.Header.Set("Locklock-Force", "true")
	}
	if c.apiKey != "" {
		hr.Header.Set("Authorization", "Bearer "+c.apiKey)
	}
	resp, err := c.http.Do(hr)
	if err != nil {
		// net/http's error names the URL, which is useful, but keep the
		// context's own error findable for callers.
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return resp.StatusCode, decodeError(resp, raw)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("client: read response: %w", err)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, fmt.Errorf("client: %s %s: unexpected response: %w", req.method, req.path, err)
		}
	}
	return resp.StatusCode, nil
}

// retryable decides whether a failed attempt may be sent again.
func retryable(err error, idempotent bool) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var apiErr *Error
	if errors.As(err, &apiErr) {
		switch apiErr.Status {
		case http.StatusTooManyRequests:
			return true // refused before anything was looked at
		case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
			// The storage may have applied the change before it failed to
			// answer (an etcd commit whose reply was lost).
			return idempotent
		}
		return false
	}
	return idempotent || notSent(err)
}

// notSent reports a connection that could not be made: the request never
// reached the server.
func notSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// delay is the pause before retry number attempt+1: exponential backoff
// with equal jitter (half fixed, half random, so that many clients shaken
// loose by one outage do not return in step), but never shorter than the
// server's Retry-After.
func (c *Client) delay(attempt int, err error) time.Duration {
	d := c.backoff << min(attempt, 20)
	if d <= 0 || d > c.maxBackoff {
		d = c.maxBackoff
	}
	d = d/2 + rand.N(d/2+1)
	var apiErr *Error
	if errors.As(err, &apiErr) && apiErr.RetryAfter > d {
		d = apiErr.RetryAfter
	}
	return d
}

// sleep waits d unless ctx ends first, or would end before d is over: a
// retry that cannot be made in time is not waited for.
func (c *Client) sleep(ctx context.Context, d time.Duration) bool {
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < d {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
