// Package abbrev cuts client input down to what an error message or a log
// line may quote: API.md §7 allows them to quote client input only as a
// short prefix, so that hostile input cannot blow them up. The core, the
// transport and the client use it.
package abbrev

import "unicode/utf8"

// Len is how many bytes of client input String keeps.
const Len = 64

// String shortens s to at most Len bytes followed by "…". The cut falls on
// a rune boundary, so that valid UTF-8 stays valid.
func String(s string) string {
	if len(s) <= Len {
		return s
	}
	cut := Len
	for i := 0; i < utf8.UTFMax-1 && cut > 0 && !utf8.RuneStart(s[cut]); i++ {
		cut--
	}
	return s[:cut] + "…"
}
