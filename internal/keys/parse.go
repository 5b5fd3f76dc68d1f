package keys

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Parse decodes and validates a keys file (see the package doc for the
// rules). Its errors do not name a file; [Load] adds the path.
func Parse(data []byte) (File, error) {
	sawAnonymous, err := checkShape(data)
	if err != nil {
		return File{}, err
	}
	// checkShape has vetted every name, type and number, so this cannot
	// fail on the things encoding/json is lax about (case-insensitive
	// names, duplicates, nulls).
	var f File
	if err := json.Unmarshal(data, &f); err != nil {
		return File{}, fmt.Errorf("invalid keys file: %w", err)
	}
	if !sawAnonymous {
		f.Anonymous = &AnonymousPolicy{Plan: PlanDeveloper}
	}
	if f.Plans == nil {
		f.Plans = map[string]Plan{}
	}
	if len(f.Keys) == 0 {
		f.Keys = nil // as in Default
	}
	if err := validatePlans(f.Plans); err != nil {
		return File{}, err
	}
	if _, ok := f.Plans[PlanDeveloper]; !sawAnonymous && !ok {
		return File{}, fmt.Errorf(`anonymous: with no "anonymous" field anonymous callers get plan %q, which does not exist (%s); define it, or set "anonymous": null to turn anonymous access off`,
			PlanDeveloper, describePlans(planNames(f.Plans)))
	}
	if err := f.Validate(); err != nil {
		return File{}, err
	}
	return f, nil
}

// Load reads and parses the keys file at path. A missing file is an error:
// an operator who names a keys file means it.
func Load(path string) (File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return File{}, err // *PathError: names the file and the reason
	}
	f, err := Parse(data)
	if err != nil {
		return File{}, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// Marshal renders f as a keys file: fields in the order anonymous, plans
// (sorted by name), keys (in order), one line per plan and per key, and a
// final newline. Parse(Marshal(f)) gives f back for a valid f.
func Marshal(f File) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("{\n  \"anonymous\": ")
	if f.Anonymous == nil {
		b.WriteString("null")
	} else if err := writeCompact(&b, f.Anonymous); err != nil {
		return nil, err
	}
	b.WriteString(",\n  \"plans\": {")
	for i, name := range planNames(f.Plans) {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("\n    ")
		if err := writeCompact(&b, name); err != nil {
			return nil, err
		}
		b.WriteString(": ")
		if err := writeCompact(&b, f.Plans[name]); err != nil {
			return nil, err
		}
	}
	if len(f.Plans) > 0 {
		b.WriteString("\n  ")
	}
	b.WriteString("},\n  \"keys\": [")
	for i, k := range f.Keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("\n    ")
		if err := writeCompact(&b, k); err != nil {
			return nil, err
		}
	}
	if len(f.Keys) > 0 {
		b.WriteString("\n  ")
	}
	b.WriteString("]\n}\n")
	return b.Bytes(), nil
}

// writeCompact writes v as one line of JSON with a space after each ':'
// and ',' between fields (our values hold no nested objects).
func writeCompact(b *bytes.Buffer, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("keys: marshal: %w", err)
	}
	out := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if _, isString := v.(string); isString {
		b.Write(out)
		return nil
	}
	// Add spaces outside strings only.
	inString, escaped := false, false
	for _, c := range out {
		b.WriteByte(c)
		switch {
		case escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case !inString && (c == ':' || c == ','):
			b.WriteByte(' ')
		}
	}
	return nil
}

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
	if _, err := c.dec.Token(); err != io.EOF {
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
func (c *checker) object(s *shape, where string) (map[string]bool, error) {
	seen := map[string]bool{}
	for c.dec.More() {
		tok, err := c.dec.Token()
		if err != nil {
			return nil, c.syntax(err)
		}
		name := tok.(string) // object keys are strings in valid JSON
		if s.kind == kindMap {
			if seen[name] {
				return nil, fmt.Errorf("%s: %s %q is given twice", where, s.label, name)
			}
			seen[name] = true
			if err := c.value(s.elem, fmt.Sprintf("%s %q", s.label, name)); err != nil {
				return nil, err
			}
			continue
		}
		fs := s.field(name)
		if fs == nil {
			return nil, fmt.Errorf("%sunknown field %q; allowed: %s", prefix(where), name, allowed(s))
		}
		if seen[name] {
			return nil, fmt.Errorf("%sfield %q is given twice", prefix(where), name)
		}
		seen[name] = true
		if err := c.value(fs, prefix(where)+strconv.Quote(name)); err != nil {
			return nil, err
		}
	}
	if _, err := c.dec.Token(); err != nil { // '}'
		return nil, c.syntax(err)
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
