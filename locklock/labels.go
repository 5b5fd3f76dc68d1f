package locklock

import (
	"encoding/json"
	"fmt"
	"maps"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/locklock/locklock/internal/abbrev"
)

// Limits of API.md §8.
const (
	MaxHolderLen        = 128
	MaxMetadataMembers  = 16
	MaxMetadataNameLen  = 64
	MaxMetadataValueLen = 256
	MaxMetadataJSON     = 2 << 10
	DefaultMaxLockDelay = 60 * time.Second
)

// ValidateHolder checks a holder: 1 to MaxHolderLen bytes of UTF-8 without
// control characters.
func ValidateHolder(holder string) error {
	if holder == "" || len(holder) > MaxHolderLen {
		return invalidf("holder must be 1-%d bytes, got %d", MaxHolderLen, len(holder))
	}
	if problem := plainText(holder); problem != "" {
		return invalidf("holder %s", problem)
	}
	return nil
}

// ValidateMetadata checks metadata: at most MaxMetadataMembers members,
// names of 1 to MaxMetadataNameLen characters of A-Z a-z 0-9 . _ -, values
// of 0 to MaxMetadataValueLen bytes of UTF-8 without control characters, and
// at most MaxMetadataJSON bytes as compact JSON. Every message names the
// field and the offending member (abbreviated), never more of the input.
func ValidateMetadata(md map[string]string) error {
	if len(md) > MaxMetadataMembers {
		return invalidf("metadata has %d members; at most %d are allowed", len(md), MaxMetadataMembers)
	}
	for name, value := range md {
		if name == "" || len(name) > MaxMetadataNameLen || !metadataName(name) {
			return invalidf("metadata name %q must be 1-%d characters of A-Z a-z 0-9 . _ -", abbrev.String(name), MaxMetadataNameLen)
		}
		if len(value) > MaxMetadataValueLen {
			return invalidf("metadata value of %q must be at most %d bytes, got %d", name, MaxMetadataValueLen, len(value))
		}
		if problem := plainText(value); problem != "" {
			return invalidf("metadata value of %q %s", name, problem)
		}
	}
	if n := MetadataSize(md); n > MaxMetadataJSON {
		return invalidf("metadata is %d bytes as compact JSON; at most %d are allowed", n, MaxMetadataJSON)
	}
	return nil
}

// MetadataSize is the length of md as compact JSON.
func MetadataSize(md map[string]string) int {
	if len(md) == 0 {
		return 2
	}
	b, _ := json.Marshal(md) // a map of strings always marshals
	return len(b)
}

func metadataName(name string) bool {
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// plainText says what is wrong with s as text for people — invalid UTF-8
// or a control character (Unicode category Cc) — or "" when nothing is.
func plainText(s string) string {
	if !utf8.ValidString(s) {
		return "must be valid UTF-8"
	}
	for i, r := range s {
		if unicode.Is(unicode.Cc, r) {
			return fmt.Sprintf("must not contain control characters (U+%04X at byte %d)", r, i)
		}
	}
	return ""
}

// Change is what a refresh or PATCH changes in a live lock. Its zero value
// changes nothing.
type Change struct {
	// ExpiresAt, when not zero, is the lock's new expiry.
	ExpiresAt time.Time
	// Holder, when not nil, replaces the holder.
	Holder *string
	// Metadata, when SetMetadata, replaces the metadata (nil or empty
	// clears it).
	Metadata    map[string]string
	SetMetadata bool
}

// Apply returns l with c applied. The token, the acquisition time, the
// guard and the lock-delay never change.
func (c Change) Apply(l Lock) Lock {
	c.apply(&l.ExpiresAt, &l.Holder, &l.Metadata)
	return l
}

// apply sets what c changes of a lock or a slot.
func (c Change) apply(expiresAt *time.Time, holder *string, metadata *map[string]string) {
	if !c.ExpiresAt.IsZero() {
		*expiresAt = c.ExpiresAt
	}
	if c.Holder != nil {
		*holder = *c.Holder
	}
	if c.SetMetadata {
		*metadata = nil
		if len(c.Metadata) > 0 {
			*metadata = maps.Clone(c.Metadata)
		}
	}
}

// ChangesExpiry says whether applying c moves the lock's expiry.
func (c Change) ChangesExpiry() bool { return !c.ExpiresAt.IsZero() }
