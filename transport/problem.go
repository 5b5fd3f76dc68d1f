package transport

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/locklock/locklock/locklock"
)

// Stable error codes of API.md §4.
const (
	codeInvalidUUID          = "invalid_uuid"
	codeInvalidName          = "invalid_name"
	codeInvalidBody          = "invalid_body"
	codeUnknownField         = "unknown_field"
	codeBodyTooLarge         = "body_too_large"
	codeUnsupportedMediaType = "unsupported_media_type"
	codeLockHeld             = "lock_held"
	codeLockDelayed          = "lock_delayed"
	codeLockNotFound         = "lock_not_found"
	codeSemaphoreFull        = "semaphore_full"
	codeLimitMismatch        = "limit_mismatch"
	codeSemaphoreNotFound    = "semaphore_not_found"
	codeSlotNotFound         = "slot_not_found"
	codeSecretMismatch       = "secret_mismatch"
	codeUnauthorized         = "unauthorized"
	codeForbidden            = "forbidden"
	codeRateLimited          = "rate_limited"
	codeMethodNotAllowed     = "method_not_allowed"
	codeNotFound             = "not_found"
	codeUnavailable          = "unavailable"
	codeInternal             = "internal"
)

// codeInfo gives each code its one status and fixed title, so that a code
// can never appear with two different statuses.
var codeInfo = map[string]struct {
	status int
	title  string
}{
	codeInvalidUUID:          {http.StatusBadRequest, "Invalid UUID"},
	codeInvalidName:          {http.StatusBadRequest, "Invalid lock name"},
	codeInvalidBody:          {http.StatusBadRequest, "Invalid request"},
	codeUnknownField:         {http.StatusBadRequest, "Unknown field"},
	codeBodyTooLarge:         {http.StatusRequestEntityTooLarge, "Request body too large"},
	codeUnsupportedMediaType: {http.StatusUnsupportedMediaType, "Unsupported media type"},
	codeLockHeld:             {http.StatusConflict, "Lock is held"},
	codeLockDelayed:          {http.StatusConflict, "Lock is delayed"},
	codeLockNotFound:         {http.StatusNotFound, "Lock not found"},
	codeSemaphoreFull:        {http.StatusConflict, "Semaphore is full"},
	codeLimitMismatch:        {http.StatusConflict, "Semaphore limit mismatch"},
	codeSemaphoreNotFound:    {http.StatusNotFound, "Semaphore not found"},
	codeSlotNotFound:         {http.StatusNotFound, "Slot not found"},
	codeSecretMismatch:       {http.StatusForbidden, "Secret does not match"},
	codeUnauthorized:         {http.StatusUnauthorized, "Unauthorized"},
	codeForbidden:            {http.StatusForbidden, "Forbidden"},
	codeRateLimited:          {http.StatusTooManyRequests, "Too many requests"},
	codeMethodNotAllowed:     {http.StatusMethodNotAllowed, "Method not allowed"},
	codeNotFound:             {http.StatusNotFound, "Not found"},
	codeUnavailable:          {http.StatusServiceUnavailable, "Service unavailable"},
	codeInternal:             {http.StatusInternalServerError, "Internal server error"},
}

// problem is an RFC 9457 problem document. It is also an error, so the
// transport's own rejections travel the same path as the Service's errors.
type problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail"`
	Code      string `json:"code"`
	ExpiresAt string `json:"expires_at,omitempty"`
	// DelayedUntil is when a lock-delay ends (API.md §8): on lock_delayed,
	// and on lock_not_found for a lock in its delay.
	DelayedUntil string `json:"delayed_until,omitempty"`
	// Limit is the semaphore's limit, on semaphore_full and
	// limit_mismatch; InUse the sum of its live slots' weights, on
	// semaphore_full (API.md §10). Pointers, so that 0 in use shows.
	Limit *int `json:"limit,omitempty"`
	InUse *int `json:"in_use,omitempty"`

	retryAfter int // seconds; 0 sends no Retry-After
}

func (p *problem) Error() string { return p.Code + ": " + p.Detail }

func newProblem(code, format string, args ...any) *problem {
	info := codeInfo[code]
	return &problem{
		Type:   "urn:locklock:error:" + code,
		Title:  info.title,
		Status: info.status,
		Detail: fmt.Sprintf(format, args...),
		Code:   code,
	}
}

func invalidBody(format string, args ...any) *problem {
	return newProblem(codeInvalidBody, format, args...)
}

// toProblem is the one mapping from errors to HTTP problems.
func toProblem(err error) *problem {
	var p *problem
	var held *locklock.HeldError
	var delayed *locklock.DelayedError
	var notFound *locklock.NotFoundError
	var full *locklock.FullError
	var mismatch *locklock.LimitMismatchError
	switch {
	case errors.As(err, &p):
		return p
	case errors.Is(err, locklock.ErrUnauthorized):
		return newProblem(codeUnauthorized, "%s", err)
	case errors.Is(err, locklock.ErrForbidden):
		return newProblem(codeForbidden, "%s", err)
	case errors.As(err, &held):
		return lockHeld(held)
	case errors.Is(err, locklock.ErrHeld):
		return lockHeld(&locklock.HeldError{})
	case errors.As(err, &delayed):
		return lockDelayed(delayed)
	case errors.Is(err, locklock.ErrDelayed):
		p := newProblem(codeLockDelayed, "%s", err)
		p.retryAfter = 1
		return p
	case errors.As(err, &full):
		return semaphoreFull(full)
	case errors.Is(err, locklock.ErrSemaphoreFull):
		p := newProblem(codeSemaphoreFull, "%s", err)
		p.retryAfter = 1
		return p
	case errors.As(err, &mismatch):
		p := newProblem(codeLimitMismatch, "%s", mismatch)
		p.Limit = &mismatch.Limit
		return p
	case errors.Is(err, locklock.ErrLimitMismatch):
		return newProblem(codeLimitMismatch, "%s", err)
	case errors.Is(err, locklock.ErrSemaphoreNotFound):
		return newProblem(codeSemaphoreNotFound, "%s", err)
	case errors.Is(err, locklock.ErrSlotNotFound):
		return newProblem(codeSlotNotFound, "%s", err)
	case errors.Is(err, locklock.ErrInvalidUUID):
		return newProblem(codeInvalidUUID, "%s", err)
	case errors.Is(err, locklock.ErrInvalidName):
		return newProblem(codeInvalidName, "%s", err)
	case errors.Is(err, locklock.ErrInvalidArgument):
		return newProblem(codeInvalidBody, "%s", err)
	case errors.Is(err, locklock.ErrNotFound):
		p := newProblem(codeLockNotFound, "%s", err)
		if errors.As(err, &notFound) && !notFound.DelayedUntil.IsZero() {
			p.DelayedUntil = formatTime(notFound.DelayedUntil)
		}
		return p
	case errors.Is(err, locklock.ErrSecretMismatch):
		return newProblem(codeSecretMismatch, "%s", err)
	case errors.Is(err, locklock.ErrShuttingDown):
		return unavailable("the server is shutting down")
	case errors.Is(err, locklock.ErrTooManyWaiters):
		return unavailable("too many clients are already waiting for locks and semaphores; retry later")
	case errors.Is(err, locklock.ErrNoSemaphores):
		return unavailable("this server's storage engine does not store semaphores")
	case errors.Is(err, locklock.ErrNoEvents):
		return unavailable("this server's storage engine does not report events, so it cannot be watched")
	case errors.Is(err, locklock.ErrTooManyWatchers):
		return unavailable(strings.TrimPrefix(err.Error(), locklock.ErrUnavailable.Error()+": "))
	case errors.Is(err, locklock.ErrStorageFull):
		return unavailable("the server's disk is nearly full, so it refuses this change until space is freed; reads still work; retry later")
	case errors.Is(err, locklock.ErrUnavailable):
		return unavailable("storage is unavailable; retry later")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return unavailable("the request was cancelled or timed out")
	default:
		return newProblem(codeInternal, "internal error; the server logged the details")
	}
}

func unavailable(detail string) *problem {
	p := newProblem(codeUnavailable, "%s", detail)
	p.retryAfter = 1
	return p
}

// lockHeld tells the client when to come back: when the holder's lock
// expires, rounded up so that a retry then does not arrive early.
func lockHeld(held *locklock.HeldError) *problem {
	p := newProblem(codeLockHeld, "%s", held)
	p.retryAfter = 1
	if !held.Lock.ExpiresAt.IsZero() {
		p.ExpiresAt = formatTime(held.Lock.ExpiresAt)
		p.retryAfter = max(1, ceilSeconds(held.Lock.Remaining()))
	}
	return p
}

// lockDelayed tells the client when the lock-delay ends, rounded up like
// lock_held's Retry-After: an acquire before then is refused again.
func lockDelayed(delayed *locklock.DelayedError) *problem {
	p := newProblem(codeLockDelayed, "%s", delayed)
	until := delayed.Lock.DelayedUntil()
	p.DelayedUntil = formatTime(until)
	p.retryAfter = 1
	if !delayed.Lock.ObservedAt.IsZero() { // the Service always sets it
		p.retryAfter = max(1, ceilSeconds(until.Sub(delayed.Lock.ObservedAt)))
	}
	return p
}

// semaphoreFull tells the client the semaphore's limit and use, and when to
// come back: when its earliest slot expires (the latest moment room comes
// without a release), rounded up like lock_held's Retry-After.
func semaphoreFull(full *locklock.FullError) *problem {
	p := newProblem(codeSemaphoreFull, "%s", full)
	p.Limit, p.InUse = &full.Limit, &full.InUse
	p.retryAfter = 1
	if !full.FreesAt.IsZero() && !full.ObservedAt.IsZero() {
		p.retryAfter = max(1, ceilSeconds(full.FreesAt.Sub(full.ObservedAt)))
	}
	return p
}

// ceilSeconds rounds up to whole seconds, as Retry-After and the RateLimit
// headers count: a client that waits that long is never early.
func ceilSeconds(d time.Duration) int {
	return int((d + time.Second - 1) / time.Second)
}

func writeProblem(w http.ResponseWriter, r *http.Request, p *problem) {
	if p.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(p.retryAfter))
	}
	if p.Status == http.StatusUnauthorized {
		// RFC 9110 §15.5.2: a 401 names the scheme that would work.
		w.Header().Set("WWW-Authenticate", `Bearer realm="locklock"`)
	}
	writeBody(w, r, p.Status, "application/problem+json", p)
}
