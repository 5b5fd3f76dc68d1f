// Package strictjson is the part of strict JSON decoding that the keys file
// (internal/keys) and request bodies (transport) share: walking an object
// member by member so that a name given twice is noticed (encoding/json
// keeps the last one silently), and refusing anything after the top-level
// value. What a member may be, and every message, stay with each caller:
// the two speak to different people (an operator editing a file, an API
// client) in different words.
package strictjson

import (
	"encoding/json"
	"io"
)

// Object walks the members of the JSON object whose '{' dec has just
// returned, in document order, and consumes the closing '}'. For each
// member it reads the name and calls member, which must read the value from
// dec; again reports that the name was given before in this object (names
// match exactly, case included), leaving it to the caller to judge a
// duplicate at the point its own rules want. Object stops at member's first
// error and returns it as is; a failure of dec itself goes through syntax,
// which turns it into the caller's message.
func Object(dec *json.Decoder, syntax func(error) error, member func(name string, again bool) error) error {
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return syntax(err)
		}
		name, _ := tok.(string) // names are always strings in valid JSON
		again := seen[name]
		seen[name] = true
		if err := member(name, again); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // '}'
		return syntax(err)
	}
	return nil
}

// AtEnd reports whether dec has nothing left but whitespace: a document is
// one value, and data after it (a second value, or garbage) is refused
// rather than ignored.
func AtEnd(dec *json.Decoder) bool {
	_, err := dec.Token()
	return err == io.EOF
}
