package transport

import (
	"strconv"
	"time"

	"github.com/locklock/locklock/locklock"
)

// wireTimeLayout is API.md's time format: UTC, milliseconds (the Service's
// precision), a literal Z.
const wireTimeLayout = "2006-01-02T15:04:05.000Z"

func formatTime(t time.Time) string { return t.UTC().Format(wireTimeLayout) }

func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, wireTimeLayout)
	return append(b, '"')
}

// lockJSON is the lock object of API.md §3. It is built field by field from
// locklock.Lock so that the guard can never leak into a response.
type lockJSON struct {
	Namespace    string        `json:"namespace"`
	Kind         locklock.Kind `json:"kind"`
	Name         string        `json:"name"`
	AcquiredAt   string        `json:"acquired_at"`
	ExpiresAt    string        `json:"expires_at"`
	ExpiresIn    int64         `json:"expires_in"`
	FencingToken uint64        `json:"fencing_token"`
	Protected    bool          `json:"protected"`
	// Holder, Metadata and LockDelay (whole seconds) appear only when set
	// (API.md §8).
	Holder    string            `json:"holder,omitempty"`
	Metadata  map[string]string `json:"metadata,omitempty"`
	LockDelay int64             `json:"lock_delay,omitempty"`
}

func lockOf(l locklock.Lock) lockJSON {
	return lockJSON{
		Namespace:    l.Namespace,
		Kind:         l.Kind,
		Name:         l.Name,
		AcquiredAt:   formatTime(l.AcquiredAt),
		ExpiresAt:    formatTime(l.ExpiresAt),
		ExpiresIn:    expiresIn(l),
		FencingToken: l.Token,
		Protected:    l.Protected(),
		Holder:       l.Holder,
		Metadata:     l.Metadata,
		LockDelay:    int64(l.LockDelay / time.Second),
	}
}

// expiresIn is the whole seconds left, rounded down, as of the Service's
// reading of its clock, so the answer is consistent with expires_at.
func expiresIn(l locklock.Lock) int64 { return int64(l.Remaining() / time.Second) }

type releasedJSON struct {
	Released bool     `json:"released"`
	Lock     lockJSON `json:"lock"`
}

// listJSON is one page of GET /locks. Next is omitted on the last page.
type listJSON struct {
	Locks []lockJSON `json:"locks"`
	Next  string     `json:"next,omitempty"`
}

// appendLock appends l as JSON, exactly as encoding/json writes lockOf(l)
// (with HTML escaping off, as encode does), without the strings lockOf
// makes; or returns nil when a string needs escaping (names are validated
// to plain ASCII, so that is never expected for them; a holder or a label
// may need it) or the lock has metadata, whose members encoding/json sorts:
// encoding/json then does it.
func appendLock(b []byte, l locklock.Lock) []byte {
	if len(l.Metadata) > 0 {
		return nil
	}
	for _, s := range [...]string{l.Namespace, string(l.Kind), l.Name, l.Holder} {
		if !plainJSON(s) {
			return nil
		}
	}
	b = append(b, `{"namespace":"`...)
	b = append(b, l.Namespace...)
	b = append(b, `","kind":"`...)
	b = append(b, l.Kind...)
	b = append(b, `","name":"`...)
	b = append(b, l.Name...)
	b = append(b, `","acquired_at":`...)
	b = appendTime(b, l.AcquiredAt)
	b = append(b, `,"expires_at":`...)
	b = appendTime(b, l.ExpiresAt)
	b = append(b, `,"expires_in":`...)
	b = strconv.AppendInt(b, expiresIn(l), 10)
	b = append(b, `,"fencing_token":`...)
	b = strconv.AppendUint(b, l.Token, 10)
	b = append(b, `,"protected":`...)
	b = strconv.AppendBool(b, l.Protected())
	if l.Holder != "" {
		b = append(b, `,"holder":"`...)
		b = append(b, l.Holder...)
		b = append(b, '"')
	}
	if delay := int64(l.LockDelay / time.Second); delay != 0 {
		b = append(b, `,"lock_delay":`...)
		b = strconv.AppendInt(b, delay, 10)
	}
	return append(b, '}')
}

// plainJSON reports a string that JSON carries as is: printable ASCII
// without quotes or backslashes.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
