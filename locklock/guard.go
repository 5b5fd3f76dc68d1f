package locklock

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"log/slog"
)

const (
	guardSaltLen = 16
	guardLen     = guardSaltLen + sha256.Size
)

// Guard is the stored form of a lock's secret: a random per-lock salt followed
// by HMAC-SHA256(salt, secret). The plain secret is never stored. An empty
// Guard means the lock is unprotected.
//
// A fast keyed hash rather than a password KDF is deliberate: secrets are
// checked on every release and refresh of a service built for tens of
// thousands of operations per second, and the salt already defeats
// precomputed tables across locks. Clients that need protection against
// offline guessing from a stolen data directory should use random secrets
// (the Go client does by default).
//
// Guard never prints its bytes: String, GoString, MarshalText and LogValue
// are redacted.
type Guard string

// NewGuard salts and hashes secret. An empty secret gives the zero Guard.
func NewGuard(secret string) Guard {
	if secret == "" {
		return ""
	}
	var salt [guardSaltLen]byte
	_, _ = rand.Read(salt[:]) // crypto/rand.Read never fails on supported platforms.
	return Guard(append(salt[:], mac(salt[:], secret)...))
}

// Protected says whether the guard holds a secret.
func (g Guard) Protected() bool { return g != "" }

// Admits reports whether secret opens the guard, in constant time with
// respect to the stored hash. An unprotected guard admits any secret.
func (g Guard) Admits(secret string) bool {
	if !g.Protected() {
		return true
	}
	if len(g) != guardLen {
		return false
	}
	salt := []byte(g[:guardSaltLen])
	return hmac.Equal(mac(salt, secret), []byte(g[guardSaltLen:]))
}

func mac(salt []byte, secret string) []byte {
	h := hmac.New(sha256.New, salt)
	h.Write([]byte(secret))
	return h.Sum(nil)
}

// String redacts the guard.
func (g Guard) String() string {
	if g.Protected() {
		return "[protected]"
	}
	return "[unprotected]"
}

// GoString redacts the guard in %#v.
func (g Guard) GoString() string { return g.String() }

// MarshalText redacts the guard in JSON (a Lock marshalled or logged by a
// JSON handler) and every other text encoding.
func (g Guard) MarshalText() ([]byte, error) { return []byte(g.String()), nil }

// LogValue redacts the guard in log/slog output.
func (g Guard) LogValue() slog.Value { return slog.StringValue(g.String()) }
