package transport

import (
	"net/url"
	"slices"
	"strings"

	"github.com/locklock/locklock/internal/abbrev"
)

// parseQuery reads a query string strictly, like a body (API.md §7): every
// parameter must be one of allowed (none on lock routes), given once, and
// well-formed. A misspelt or unexpected parameter must not pass silently: a
// caller who sends ?secret=… believes the lock is protected.
//
// Parameters are judged in the order they appear, so the problem always
// names the first bad one. Empty pieces ("?", "?&") name no parameter and
// are ignored; "?=x" names the parameter "" and is refused like any other
// unknown one.
func parseQuery(rawQuery string, allowed ...string) (url.Values, error) {
	q := url.Values{}
	for rest := rawQuery; rest != ""; {
		var piece string
		piece, rest, _ = strings.Cut(rest, "&")
		if piece == "" {
			continue
		}
		rawKey, rawValue, _ := strings.Cut(piece, "=")
		key, err := url.QueryUnescape(rawKey)
		if err != nil {
			return nil, invalidBody("malformed query parameter name %q", abbrev.String(rawKey))
		}
		if !slices.Contains(allowed, key) {
			return nil, unknownParameter(key, allowed)
		}
		if strings.Contains(rawValue, ";") {
			// What url.ParseQuery refuses too: ";" is no separator.
			return nil, invalidBody("query parameter %s contains a semicolon; separate parameters with &", key)
		}
		value, err := url.QueryUnescape(rawValue)
		if err != nil {
			return nil, invalidBody("malformed value of query parameter %s", key)
		}
		if q.Has(key) {
			return nil, invalidBody("query parameter %s is given more than once", key)
		}
		q.Set(key, value)
	}
	return q, nil
}

func unknownParameter(key string, allowed []string) *problem {
	if len(allowed) == 0 {
		return newProblem(codeUnknownField, "unknown query parameter %q; this route takes none", abbrev.String(key))
	}
	return newProblem(codeUnknownField, "unknown query parameter %q; allowed here: %s", abbrev.String(key), strings.Join(allowed, ", "))
}
