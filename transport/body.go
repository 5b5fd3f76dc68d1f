package transport

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/locklock/locklock/internal/abbrev"
	"github.com/locklock/locklock/internal/strictjson"
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
	fieldHolder    = "holder"
	fieldMetadata  = "metadata"
	fieldLockDelay = "lock_delay"
	fieldLimit     = "limit"  // a semaphore's (API.md §10)
	fieldWeight    = "weight" // a slot's
)

// secretHeader carries the secret for clients that cannot send a body
// (DELETE in many HTTP libraries).
const secretHeader = "Locklock-Secret"

// body is a decoded request body; nil fields were absent.
type body struct {
	secret    *string
	expiresIn *int64
	wait      *int64
	holder    *string
	// metadata is nil when the field was absent and a non-nil map (empty
	// for {}) when given: on PATCH, {} clears the lock's metadata.
	metadata  map[string]string
	lockDelay *int64
	limit     *int64
	weight    *int64
}

// acquireTerms are the fields acquires of locks and slots share: the
// lifetime and wait (zero when absent: the defaults) and the holder.
func (b body) acquireTerms() (ttl, wait time.Duration, holder string) {
	if b.expiresIn != nil {
		ttl = seconds(*b.expiresIn)
	}
	if b.wait != nil {
		wait = seconds(*b.wait)
	}
	if b.holder != nil {
		holder = *b.holder
	}
	return ttl, wait, holder
}

// readBody reads and strictly decodes the body, accepting only the allowed
// fields. Every mistake is a 4xx problem, before anything is changed.
func readBody(w http.ResponseWriter, r *http.Request, allowed ...string) (body, error) {
	// Checked before anything else, an empty body included: a client that
	// declares a coding has encoded something, and an answer that depends
	// on whether the encoded bytes happen to be empty helps nobody.
	if err := checkContentEncoding(r.Header); err != nil {
		return body{}, err
	}
	if r.ContentLength == 0 && len(r.TransferEncoding) == 0 {
		return body{}, nil // no body: the common acquire and release
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return body{}, newProblem(codeBodyTooLarge, "the body is larger than %d bytes", maxBody)
	case err != nil:
		return body{}, invalidBody("could not read the body: %s", abbrev.String(err.Error()))
	}
	if onlyJSONSpace(raw) {
		return body{}, nil
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return body{}, newProblem(codeUnsupportedMediaType, "the body must be application/json, not %q", abbrev.String(ct))
		}
	}
	if !utf8.Valid(raw) {
		// encoding/json would turn every invalid byte into U+FFFD, so two
		// different secrets could compare equal.
		return body{}, invalidBody("the body is not valid UTF-8")
	}
	return decodeObject(raw, allowed)
}

// onlyJSONSpace says whether raw is no body: empty, or nothing but the
// whitespace JSON allows between tokens (space, tab, CR, LF). Other Unicode
// whitespace (U+00A0, U+2028, …) is not JSON whitespace, so such a body is
// refused as not being a JSON object rather than taken for no body.
func onlyJSONSpace(raw []byte) bool {
	for _, c := range raw {
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return false
		}
	}
	return true
}

// checkContentEncoding refuses a body with a content coding (API.md §7):
// the server decodes none, and parsing gzip bytes as JSON, or JSON that
// claims to be gzip, would be a guess. Only "identity" (any case) may be
// listed; empty list elements are ignored, as RFC 9110 §5.6.1 asks, so an
// empty header means no coding. A list with anything else, such as
// "identity, gzip", is refused.
func checkContentEncoding(h http.Header) error {
	for _, v := range h.Values("Content-Encoding") {
		for coding := range strings.SplitSeq(v, ",") {
			coding = strings.Trim(coding, " \t")
			if coding != "" && !strings.EqualFold(coding, "identity") {
				return newProblem(codeUnsupportedMediaType,
					"Content-Encoding %q is not supported: send the body as is, without a content coding", abbrev.String(v))
			}
		}
	}
	return nil
}

// decodeObject walks the JSON token by token rather than unmarshalling into
// a struct, so that it can tell absent from null, reject duplicate and
// unknown keys, and reject anything after the object.
func decodeObject(raw []byte, allowed []string) (body, error) {
	errSyntax := func(err error) error { return invalidBody("the body is not valid JSON: %v", err) }
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return body{}, invalidBody("the body must be a JSON object, and is not valid JSON: %v", err)
	}
	if tok != json.Delim('{') {
		return body{}, invalidBody("the body must be a JSON object")
	}
	var b body
	err = strictjson.Object(dec, errSyntax, func(key string, again bool) error {
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return errSyntax(err)
		}
		if !slices.Contains(allowed, key) {
			return newProblem(codeUnknownField, "unknown field %q; allowed here: %s", abbrev.String(key), strings.Join(allowed, ", "))
		}
		if again {
			return invalidBody("field %s is given twice", key)
		}
		return b.set(key, value)
	})
	if err != nil {
		return body{}, err
	}
	if !strictjson.AtEnd(dec) {
		return body{}, invalidBody("unexpected data after the JSON object")
	}
	return b, nil
}

// atLeast reads a field of whole seconds that must be at least least; nil
// with the problem otherwise.
func atLeast(key string, value json.RawMessage, least int64) (*int64, error) {
	n, err := integer(key, value)
	if err != nil {
		return nil, err
	}
	if n < least {
		unit := "seconds"
		if least == 1 {
			unit = "second"
		}
		return nil, invalidBody("field %s must be at least %d %s, got %d", key, least, unit, n)
	}
	return &n, nil
}

// ruleText is a core validation error's message without its sentinel's
// prefix, to follow "field NAME" in a problem.
func ruleText(err error) string {
	return strings.TrimPrefix(err.Error(), locklock.ErrInvalidArgument.Error()+": ")
}

func (b *body) set(key string, value json.RawMessage) error {
	switch key {
	case fieldSecret:
		s, err := text(key, value)
		if err != nil {
			return err
		}
		if s == "" {
			// Empty would mean "unprotected" to the Service; a client that
			// sends a secret means to protect the lock.
			return invalidBody("field secret must be 1-%d bytes, got an empty string", locklock.MaxSecretLen)
		}
		// The rule every secret follows, however it came (the header
		// too); whether it may create a lock is the Service's to judge.
		if err := locklock.ValidateSecret(s); err != nil {
			return invalidBody("field %s", ruleText(err))
		}
		b.secret = &s
	case fieldExpiresIn:
		// Zero means "default" to the Service, so it must not get it.
		n, err := atLeast(key, value, 1)
		b.expiresIn = n
		return err
	case fieldWait:
		n, err := atLeast(key, value, 0)
		b.wait = n
		return err
	case fieldHolder:
		if value[0] == 'n' {
			// A lock's holder can be replaced but not removed: null is
			// refused rather than read as "no holder" (or, on PATCH,
			// "leave it"), which a client sending it did not mean.
			return invalidBody("field holder must be a string, got null; a holder can be replaced but not removed")
		}
		s, err := text(key, value)
		if err != nil {
			return err
		}
		// Empty would mean "no holder" to the Service's acquire: refuse it
		// here, with the rule's own words.
		if err := locklock.ValidateHolder(s); err != nil {
			return invalidBody("field %s", ruleText(err))
		}
		b.holder = &s
	case fieldMetadata:
		md, err := metadata(value)
		if err != nil {
			return err
		}
		b.metadata = md
	case fieldLockDelay:
		n, err := atLeast(key, value, 0)
		b.lockDelay = n
		return err
	case fieldLimit:
		n, err := units(key, value, locklock.MaxSemaphoreLimit)
		b.limit = n
		return err
	case fieldWeight:
		// Its upper bound is the limit, which the Service checks; zero
		// would mean "default" to it, so the floor is checked here.
		n, err := units(key, value, locklock.MaxSemaphoreLimit)
		b.weight = n
		return err
	}
	return nil
}

// units reads a count of a semaphore's units: an integer from 1 to most.
func units(key string, value json.RawMessage, most int64) (*int64, error) {
	if jsonType(value) != "number" {
		return nil, invalidBody("field %s must be an integer from 1 to %d, got %s", key, most, jsonType(value))
	}
	n, err := strconv.ParseInt(string(value), 10, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return nil, invalidBody("field %s must be a whole number from 1 to %d, got %s", key, most, abbrev.String(string(value)))
	}
	if err != nil || n < 1 || n > most {
		return nil, invalidBody("field %s must be an integer from 1 to %d, got %s", key, most, abbrev.String(string(value)))
	}
	return &n, nil
}

// text decodes a JSON string for the field key. encoding/json decodes an
// escaped unpaired surrogate ("\ud800") to U+FFFD, so "\ud800", "\ud801" and
// a real U+FFFD would be one string: such escapes are refused, so that
// distinct secrets never collide and a holder or label reads back as sent.
func text(key string, value json.RawMessage) (string, error) {
	var s string
	if value[0] != '"' || json.Unmarshal(value, &s) != nil {
		return "", invalidBody("field %s must be a string, got %s", key, jsonType(value))
	}
	if loneSurrogateEscape(value) {
		return "", invalidBody("field %s contains an escaped unpaired surrogate (such as \\ud800), which is no character", key)
	}
	return s, nil
}

// metadata decodes the metadata object as strictly as the body itself:
// string values only, each name once. The limits of API.md §8 are
// locklock.ValidateMetadata's, checked here too so that the problem names
// the field before anything else is looked at.
func metadata(value json.RawMessage) (map[string]string, error) {
	if value[0] != '{' {
		return nil, invalidBody("field metadata must be an object of strings, got %s; {} clears it", jsonType(value))
	}
	dec := json.NewDecoder(bytes.NewReader(value))
	_, _ = dec.Token() // '{': value is valid JSON, an object
	errSyntax := func(err error) error { return invalidBody("field metadata is not valid JSON: %v", err) }
	md := map[string]string{}
	err := strictjson.Object(dec, errSyntax, func(name string, again bool) error {
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return errSyntax(err)
		}
		if again {
			return invalidBody("field metadata: name %q is given twice", abbrev.String(name))
		}
		s, err := text(fmt.Sprintf("metadata[%q]", abbrev.String(name)), v)
		if err != nil {
			return err
		}
		md[name] = s
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := locklock.ValidateMetadata(md); err != nil {
		return nil, invalidBody("field %s", ruleText(err))
	}
	return md, nil
}

// loneSurrogateEscape reports whether the JSON string literal str (quotes
// included, already known to be valid JSON) escapes a UTF-16 surrogate that
// is not part of a high-low pair.
func loneSurrogateEscape(str []byte) bool {
	escapedUnit := func(i int) (rune, bool) { // the \uXXXX at str[i:], if any
		if i+6 > len(str) || str[i] != '\\' || str[i+1] != 'u' {
			return 0, false
		}
		n, err := strconv.ParseUint(string(str[i+2:i+6]), 16, 16)
		return rune(n), err == nil
	}
	for i := 0; i < len(str); i++ {
		if str[i] != '\\' {
			continue
		}
		unit, ok := escapedUnit(i)
		if !ok {
			i++ // a two-character escape such as \\ or \": skip its second byte
			continue
		}
		switch {
		case utf16.IsSurrogate(unit) && unit < 0xDC00: // high: a low must follow
			low, ok := escapedUnit(i + 6)
			if !ok || low < 0xDC00 || low > 0xDFFF {
				return true
			}
			i += 11
		case utf16.IsSurrogate(unit): // a low one alone
			return true
		default:
			i += 5
		}
	}
	return false
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
		return 0, invalidBody("field %s must be a whole number of seconds, got %s", key, abbrev.String(string(value)))
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
	}
	// The same rule as a body's secret (API.md §7). net/http has already
	// trimmed spaces and tabs at either end, which is why a new secret may
	// not have any there (the Service's rule).
	if err := locklock.ValidateSecret(values[0]); err != nil {
		return "", invalidBody("header %s: %s", secretHeader, ruleText(err))
	}
	if b.secret != nil && *b.secret != values[0] {
		return "", invalidBody("header %s and field secret differ", secretHeader)
	}
	return values[0], nil
}
