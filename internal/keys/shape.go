package keys

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/locklock/locklock/internal/strictjson"
)

// The shape of a keys file, checked token by token so that errors can name
// the entry and field, and so that what encoding/json lets through
// (duplicate or differently-cased names, null, fractions into ints) is
// refused.

type kind int

const (
	kindObject kind = iota // fixed fields
	kindMap                // any names, values of one shape
	kindArray
	kindString
	kindNumber
	kindInt
	kindBool
)

type shape struct {
	kind     kind
	fields   []field // kindObject, in document order
	elem     *shape  // kindMap values, kindArray elements
	label    string  // kindMap and kindArray: how an element is named
	nullable bool
}

type field struct {
	name  string
	shape *shape
}

func (s *shape) field(name string) *shape {
	for _, f := range s.fields {
		if f.name == name {
			return f.shape
		}
	}
	return nil
}

var (
	planShape = &shape{kind: kindObject, fields: []field{
		{"custom_names", &shape{kind: kindBool}},
		{"rate", &shape{kind: kindNumber}},
		{"burst", &shape{kind: kindInt}},
		{"operator", &shape{kind: kindBool}},
	}}
	keyShape = &shape{kind: kindObject, fields: []field{
		{"id", &shape{kind: kindString}},
		{"namespace", &shape{kind: kindString}},
		{"plan", &shape{kind: kindString}},
		{"sha256", &shape{kind: kindString}},
	}}
	fileShape = &shape{kind: kindObject, fields: []field{
		{"anonymous", &shape{kind: kindObject, nullable: true, fields: []field{
			{"plan", &shape{kind: kindString}},
		}}},
		{"plans", &shape{kind: kindMap, elem: planShape, label: "plan"}},
		{"keys", &shape{kind: kindArray, elem: keyShape, label: "keys"}},
	}}
)

// checkShape reports whether the top-level "anonymous" field is present.
func checkShape(data []byte) (sawAnonymous bool, err error) {
	if !utf8.Valid(data) {
		return false, errors.New("invalid keys file: not valid UTF-8")
	}
	c := &checker{dec: json.NewDecoder(bytes.NewReader(data)), data: data}
	c.dec.UseNumber()
	tok, err := c.dec.Token()
	if err == io.EOF {
		return false, errors.New("invalid keys file: empty; it must be a JSON object")
	}
	if err != nil {
		return false, c.syntax(err)
	}
	if tok != json.Delim('{') {
		return false, fmt.Errorf("invalid keys file: it must be a JSON object, not %s", describe(tok))
	}
	seen, err := c.object(fileShape, "")
	if err != nil {
		return false, err
	}
	if !strictjson.AtEnd(c.dec) {
		return false, errors.New("invalid keys file: unexpected data after the JSON object")
	}
	return seen["anonymous"], nil
}

type checker struct {
	dec  *json.Decoder
	data []byte
}

// object checks the fields of an object whose '{' has been read; where
// names it ("" at the top level, `plan "pro"`, `keys[2]`, `"anonymous"`).
// It returns the names it saw.
func (c *checker) object(s *shape, where string) (map[string]bool, error) {
	seen := map[string]bool{}
	err := strictjson.Object(c.dec, c.syntax, func(name string, again bool) error {
		if s.kind == kindMap {
			if again {
				return fmt.Errorf("%s: %s %q is given twice", where, s.label, name)
			}
			seen[name] = true
			return c.value(s.elem, fmt.Sprintf("%s %q", s.label, name))
		}
		fs := s.field(name)
		if fs == nil {
			return fmt.Errorf("%sunknown field %q; allowed: %s", prefix(where), name, allowed(s))
		}
		if again {
			return fmt.Errorf("%sfield %q is given twice", prefix(where), name)
		}
		seen[name] = true
		return c.value(fs, prefix(where)+strconv.Quote(name))
	})
	if err != nil {
		return nil, err
	}
	return seen, nil
}

// value checks one value against s; what names it in messages.
func (c *checker) value(s *shape, what string) error {
	tok, err := c.dec.Token()
	if err != nil {
		return c.syntax(err)
	}
	if tok == nil {
		if s.nullable {
			return nil
		}
		return fmt.Errorf("%s must not be null", what)
	}
	switch s.kind {
	case kindObject, kindMap:
		if tok != json.Delim('{') {
			return fmt.Errorf("%s must be an object, not %s", what, describe(tok))
		}
		_, err := c.object(s, what)
		return err
	case kindArray:
		if tok != json.Delim('[') {
			return fmt.Errorf("%s must be an array, not %s", what, describe(tok))
		}
		for i := 0; c.dec.More(); i++ {
			if err := c.value(s.elem, fmt.Sprintf("%s[%d]", s.label, i)); err != nil {
				return err
			}
		}
		if _, err := c.dec.Token(); err != nil { // ']'
			return c.syntax(err)
		}
		return nil
	case kindString:
		if _, ok := tok.(string); !ok {
			return fmt.Errorf("%s must be a string, not %s", what, describe(tok))
		}
		return nil
	case kindBool:
		if _, ok := tok.(bool); !ok {
			return fmt.Errorf("%s must be true or false, not %s", what, describe(tok))
		}
		return nil
	case kindNumber:
		n, ok := tok.(json.Number)
		if !ok {
			return fmt.Errorf("%s must be a number, not %s", what, describe(tok))
		}
		if f, err := strconv.ParseFloat(string(n), 64); err != nil || math.IsInf(f, 0) {
			return fmt.Errorf("%s: %s is out of range", what, n)
		}
		return nil
	case kindInt:
		n, ok := tok.(json.Number)
		if !ok {
			return fmt.Errorf("%s must be a whole number, not %s", what, describe(tok))
		}
		if _, err := strconv.ParseInt(string(n), 10, strconv.IntSize); err != nil {
			if strings.ContainsAny(string(n), ".eE") {
				return fmt.Errorf("%s must be a whole number, not %s", what, n)
			}
			return fmt.Errorf("%s: %s is out of range", what, n)
		}
		return nil
	}
	panic("keys: unknown shape")
}

// syntax turns a decoder error into a message with a line number.
func (c *checker) syntax(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return errors.New("invalid keys file: unexpected end of JSON")
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line := 1 + bytes.Count(c.data[:min(int(se.Offset), len(c.data))], []byte("\n"))
		return fmt.Errorf("invalid keys file: line %d: %v", line, se)
	}
	return fmt.Errorf("invalid keys file: %w", err)
}

func prefix(where string) string {
	if where == "" {
		return ""
	}
	return where + ": "
}

func allowed(s *shape) string {
	names := make([]string, len(s.fields))
	for i, f := range s.fields {
		names[i] = f.name
	}
	return strings.Join(names, ", ")
}

// describe names a token's JSON type without its value (which could be a
// key pasted in the wrong place).
func describe(tok json.Token) string {
	switch tok.(type) {
	case json.Delim:
		if tok == json.Delim('[') {
			return "an array"
		}
		return "an object"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", tok)
}
