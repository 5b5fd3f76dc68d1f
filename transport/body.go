package transport

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/locklock/locklock/locklock"
)

// maxBody is API.md's body limit.
const maxBody = 8 << 10

// Body fields. Names are matched exactly: "Secret" or "expire_in" must not
// be taken for something they are not.
const (
	fieldSecret    = "secret"
	fieldExpiresIn = "expires_in"
	fieldWait      = "wait"
)

// secretHeader carries the secret for clients that cannot send a body
// (DELETE in many HTTP libraries).
const secretHeader = "Locklock-Secret"

// body is a decoded request body; nil fields were absent.
type body struct {
	secret    *string
	expiresIn *int64
	wait      *int64
}

// readBody reads and strictly decodes the body, accepting only the allowed
// fields. Every mistake is a 4xx problem, before anything is changed.
func readBody(w http.ResponseWriter, r *http.Request, allowed ...string) (body, error) {
	if r.ContentLength == 0 && len(r.TransferEncoding) == 0 {
		return body{}, nil // no body: the common acquire and release
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return body{}, newProblem(codeBodyTooLarge, "the body is larger than %d bytes", maxBody)
	case err != nil:
		return body{}, invalidBody("could not read the body: %v", err)
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return body{}, nil
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return body{}, newProblem(codeUnsupportedMediaType, "the body must be application/json, not %q", ct)
		}
	}
	if !utf8.Valid(raw) {
		// encoding/json would turn every invalid byte into U+FFFD, so two
		// different secrets could compare equal.
		return body{}, invalidBody("the body is not valid UTF-8")
	}
	return decodeObject(raw, allowed)
}

// decodeObject walks the JSON token by token rather than unmarshalling into
// a struct, so that it can tell absent from null, reject duplicate and
// unknown keys, and reject anything after the object.
func decodeObject(raw []byte, allowed []string) (body, error) {
	errSyntax := func(err error) error { return invalidBody("the body is not valid JSON: %v", err) }
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return body{}, errSyntax(err)
	}
	if tok != json.Delim('{') {
		return body{}, invalidBody("the body must be a JSON object")
	}
	var b body
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return body{}, errSyntax(err)
		}
		key, _ := tok.(string) // keys are always strings in valid JSON
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return body{}, errSyntax(err)
		}
		if !slices.Contains(allowed, key) {
			return body{}, newProblem(codeUnknownField, "unknown field %q; allowed here: %s", locklock.Abbreviate(key), strings.Join(allowed, ", "))
		}
		if seen[key] {
			return body{}, invalidBody("field %s is given twice", key)
		}
		seen[key] = true
		if err := b.set(key, value); err != nil {
			return body{}, err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return body{}, errSyntax(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return body{}, invalidBody("unexpected data after the JSON object")
	}
	return b, nil
}

func (b *body) set(key string, value json.RawMessage) error {
	switch key {
	case fieldSecret:
		var s string
		if value[0] != '"' || json.Unmarshal(value, &s) != nil {
			return invalidBody("field secret must be a string, got %s", jsonType(value))
		}
		if strings.ContainsRune(s, utf8.RuneError) {
			// An unpaired surrogate escape ("\ud800") decodes to U+FFFD
			// too: refuse rather than let distinct secrets collide.
			return invalidBody("field secret must not contain U+FFFD or unpaired surrogate escapes")
		}
		if s == "" {
			// Empty would mean "unprotected" to the Service; a client that
			// sends a secret means to protect the lock.
			return invalidBody("field secret must be 1-256 bytes, got an empty string")
		}
		b.secret = &s
	case fieldExpiresIn:
		n, err := integer(key, value)
		if err != nil {
			return err
		}
		if n < 1 {
			// Zero means "default" to the Service, so it must not get it.
			return invalidBody("field expires_in must be at least 1 second, got %d", n)
		}
		b.expiresIn = &n
	case fieldWait:
		n, err := integer(key, value)
		if err != nil {
			return err
		}
		if n < 0 {
			return invalidBody("field wait must be at least 0 seconds, got %d", n)
		}
		b.wait = &n
	}
	return nil
}

// integer parses a whole number of seconds that fits in an int64.
func integer(key string, value json.RawMessage) (int64, error) {
	if jsonType(value) != "number" {
		return 0, invalidBody("field %s must be an integer number of seconds, got %s", key, jsonType(value))
	}
	n, err := strconv.ParseInt(string(value), 10, 64)
	if errors.Is(err, strconv.ErrRange) {
		return 0, invalidBody("field %s is out of range", key)
	}
	if err != nil {
		return 0, invalidBody("field %s must be a whole number of seconds, got %s", key, locklock.Abbreviate(string(value)))
	}
	return n, nil
}

// jsonType names the type of a valid JSON value for error messages.
func jsonType(v json.RawMessage) string {
	switch v[0] {
	case '"':
		return "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	default:
		return "number"
	}
}

// seconds converts without overflowing: a count too large for a Duration
// becomes the largest Duration, which the Service then rejects as above its
// maximum with its own message.
func seconds(n int64) time.Duration {
	if n > math.MaxInt64/int64(time.Second) {
		return math.MaxInt64
	}
	return time.Duration(n) * time.Second
}

// secretOf merges the header and the body secret; "" means none was given.
func secretOf(r *http.Request, b body) (string, error) {
	values := r.Header.Values(secretHeader)
	switch {
	case len(values) == 0:
		if b.secret == nil {
			return "", nil
		}
		return *b.secret, nil
	case len(values) > 1:
		return "", invalidBody("header %s is given more than once", secretHeader)
	case values[0] == "":
		return "", invalidBody("header %s must not be empty", secretHeader)
	case !utf8.ValidString(values[0]):
		return "", invalidBody("header %s is not valid UTF-8", secretHeader)
	case b.secret != nil && *b.secret != values[0]:
		return "", invalidBody("header %s and field secret differ", secretHeader)
	}
	return values[0], nil
}
