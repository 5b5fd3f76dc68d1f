package keys

import (
	"bytes"
	"encoding/json"
	"fmt"
)

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
