package abbrev

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestAbbreviate: client input in messages is cut to a short prefix, on a
// rune boundary.
func TestString(t *testing.T) {
	if got := String("short"); got != "short" {
		t.Errorf("String(short) = %q", got)
	}
	exact := strings.Repeat("x", Len)
	if got := String(exact); got != exact {
		t.Errorf("a string of exactly the limit was cut: %q", got)
	}
	for _, s := range []string{strings.Repeat("a", 60000), strings.Repeat("é", 100), "x" + strings.Repeat("😀", 40), strings.Repeat("\xff", 100)} {
		got := String(s)
		body, ok := strings.CutSuffix(got, "…")
		if !ok || len(body) > Len || len(body) < Len-utf8.UTFMax || !strings.HasPrefix(s, body) {
			t.Errorf("String(%d bytes) = %q", len(s), got)
		}
		if utf8.ValidString(s) && !utf8.ValidString(got) {
			t.Errorf("Abbreviate cut a rune: %q", got)
		}
	}
}
