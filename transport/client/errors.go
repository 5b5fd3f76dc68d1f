package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/locklock/locklock/internal/abbrev"
	"github.com/locklock/locklock/locklock"
)

// ErrLost: a held lock could not be confirmed in time, or the server said it
// is gone; the work it protected must stop. Hold's context ends with a cause
// wrapping it.
var ErrLost = errors.New("lock lost")

// Error is a refusal from the server: an RFC 9457 problem (API.md §4).
// errors.Is matches it against the core sentinel of its code.
type Error struct {
	Status int    // HTTP status
	Code   string // stable code, e.g. "lock_held"; empty if the server sent no problem
	Title  string
	Detail string
	// ExpiresAt is when the holder's lock expires (lock_held only).
	ExpiresAt time.Time
	// DelayedUntil is when a lock-delay ends (API.md §8): on lock_delayed,
	// and on lock_not_found for a lock in its lock-delay. Zero otherwise.
	DelayedUntil time.Time
	// RetryAfter is the server's Retry-After: when to come back after a
	// 409 (lock_held, lock_delayed, semaphore_full: when the semaphore's
	// first slot expires), 429 or 503. Zero when the server sent none.
	RetryAfter time.Duration
	// Limit is the semaphore's limit, on semaphore_full and on
	// limit_mismatch (the limit its live slots have, which the request's
	// did not match). Zero otherwise.
	Limit int
	// InUse is the sum of the weights of the semaphore's live slots, on
	// semaphore_full. Zero otherwise.
	InUse int
}

// Error is the server's detail, which already names the problem ("lock
// not found: no lock …"); Code is there for programs.
func (e *Error) Error() string {
	switch {
	case e.Detail != "":
		return e.Detail
	case e.Title != "":
		return e.Title
	}
	return fmt.Sprintf("%d %s", e.Status, http.StatusText(e.Status))
}

// sentinels maps API.md's codes to the core's errors.
var sentinels = map[string]error{
	"lock_held":              locklock.ErrHeld,
	"lock_delayed":           locklock.ErrDelayed,
	"lock_not_found":         locklock.ErrNotFound,
	"semaphore_full":         locklock.ErrSemaphoreFull,
	"limit_mismatch":         locklock.ErrLimitMismatch,
	"semaphore_not_found":    locklock.ErrSemaphoreNotFound,
	"slot_not_found":         locklock.ErrSlotNotFound,
	"secret_mismatch":        locklock.ErrSecretMismatch,
	"unauthorized":           locklock.ErrUnauthorized,
	"forbidden":              locklock.ErrForbidden,
	"rate_limited":           locklock.ErrRateLimited,
	"unavailable":            locklock.ErrUnavailable,
	"invalid_uuid":           locklock.ErrInvalidUUID,
	"invalid_name":           locklock.ErrInvalidName,
	"invalid_body":           locklock.ErrInvalidArgument,
	"unknown_field":          locklock.ErrInvalidArgument,
	"body_too_large":         locklock.ErrInvalidArgument,
	"unsupported_media_type": locklock.ErrInvalidArgument,
}

// byStatus covers answers without a problem body (a proxy in between, say).
var byStatus = map[int]error{
	http.StatusUnauthorized:       locklock.ErrUnauthorized,
	http.StatusForbidden:          locklock.ErrForbidden,
	http.StatusTooManyRequests:    locklock.ErrRateLimited,
	http.StatusServiceUnavailable: locklock.ErrUnavailable,
	http.StatusBadGateway:         locklock.ErrUnavailable,
	http.StatusGatewayTimeout:     locklock.ErrUnavailable,
}

// Unwrap gives the core sentinel of the code, so that errors.Is works.
func (e *Error) Unwrap() error {
	if err, ok := sentinels[e.Code]; ok {
		return err
	}
	if e.Code == "" {
		return byStatus[e.Status]
	}
	return nil
}

// maxErrorBody bounds what is read of an error response.
const maxErrorBody = 64 << 10

// decodeError reads a non-2xx response. A body that is not a problem still
// gives an Error with the status, and a snippet of the body as detail.
func decodeError(resp *http.Response, body []byte) *Error {
	e := &Error{Status: resp.StatusCode, RetryAfter: retryAfter(resp.Header)}
	var p struct {
		Title        string `json:"title"`
		Detail       string `json:"detail"`
		Code         string `json:"code"`
		ExpiresAt    string `json:"expires_at"`
		DelayedUntil string `json:"delayed_until"`
		Limit        int    `json:"limit"`
		InUse        int    `json:"in_use"`
	}
	if json.Unmarshal(body, &p) == nil && p.Code != "" {
		e.Code, e.Title, e.Detail = p.Code, p.Title, p.Detail
		e.Limit, e.InUse = p.Limit, p.InUse
		if t, err := time.Parse(time.RFC3339Nano, p.ExpiresAt); err == nil {
			e.ExpiresAt = t
		}
		if t, err := time.Parse(time.RFC3339Nano, p.DelayedUntil); err == nil {
			e.DelayedUntil = t
		}
		return e
	}
	e.Detail = abbrev.String(strings.TrimSpace(string(body)))
	return e
}

// retryAfter reads Retry-After in seconds (the form this API sends) or as
// an HTTP date (what a proxy may send).
func retryAfter(h http.Header) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}
