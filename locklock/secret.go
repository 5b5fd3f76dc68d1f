package locklock

import (
	"unicode"
	"unicode/utf8"
)

// ValidateSecret checks a secret as a request presents it (API.md §7): 1 to
// MaxSecretLen bytes of UTF-8 without control characters (Unicode category
// Cc). Every transport applies it to every secret, whatever carried it (an
// HTTP body or header), so that one secret cannot be accepted one way and
// refused another. U+FFFD is an ordinary character here; a transport whose
// decoder turns malformed input into U+FFFD (a JSON escape of a lone
// surrogate) must refuse that input itself, or two different secrets would
// compare equal.
//
// The message never quotes the secret.
func ValidateSecret(secret string) error {
	if secret == "" || len(secret) > MaxSecretLen {
		return invalidf("secret must be 1-%d bytes, got %d", MaxSecretLen, len(secret))
	}
	if !utf8.ValidString(secret) {
		return invalidf("secret must be valid UTF-8")
	}
	for i, r := range secret {
		if unicode.Is(unicode.Cc, r) {
			return invalidf("secret must not contain control characters (U+%04X at byte %d)", r, i)
		}
	}
	return nil
}

// ValidateNewSecret checks a secret that may create a lock: ValidateSecret,
// and no space or tab at either end. HTTP trims those from header values, so
// a lock made with such a secret could be released or refreshed only through
// a body. Secrets that only open an existing lock (release, refresh) are
// compared as given and checked with ValidateSecret alone.
func ValidateNewSecret(secret string) error {
	if err := ValidateSecret(secret); err != nil {
		return err
	}
	if isBlank(secret[0]) || isBlank(secret[len(secret)-1]) {
		return invalidf("a new secret must not start or end with a space or tab (HTTP trims them from the Locklock-Secret header)")
	}
	return nil
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' }
