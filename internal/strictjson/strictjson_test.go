package strictjson

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// walk reads doc's top-level object, recording each member as name=value
// (with a "!" for a repeated name), and whether nothing followed it.
func walk(t *testing.T, doc string) (members []string, end bool, err error) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(doc))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("%s: not an object: %v %v", doc, tok, err)
	}
	syntax := func(err error) error { return fmt.Errorf("syntax: %w", err) }
	err = Object(dec, syntax, func(name string, again bool) error {
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return syntax(err)
		}
		if again {
			name += "!"
		}
		members = append(members, name+"="+string(v))
		if name == "stop" {
			return errors.New("stopped")
		}
		return nil
	})
	if err != nil {
		return members, false, err
	}
	return members, AtEnd(dec), nil
}

func TestObject(t *testing.T) {
	cases := []struct {
		doc     string
		members []string
		end     bool
		err     string // prefix of the error, "" for none
	}{
		{`{}`, nil, true, ""},
		{` {"a":1, "b":{"a":2}} `, []string{"a=1", `b={"a":2}`}, true, ""},
		{`{"a":1,"a":2}`, []string{"a=1", "a!=2"}, true, ""},
		{`{"a":1,"A":2}`, []string{"a=1", "A=2"}, true, ""}, // names match exactly
		{`{"a":1,"stop":2,"c":3}`, []string{"a=1", "stop=2"}, false, "stopped"},
		{`{"a":1}{}`, []string{"a=1"}, false, ""},
		{`{"a":1} x`, []string{"a=1"}, false, ""},
		{`{"a":1`, []string{"a=1"}, false, "syntax: "},
		{`{"a":1,}`, []string{"a=1"}, false, "syntax: "},
	}
	for _, c := range cases {
		members, end, err := walk(t, c.doc)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%s: unexpected error %v", c.doc, err)
		case c.err != "" && (err == nil || !strings.HasPrefix(err.Error(), c.err)):
			t.Errorf("%s: error %v, want one starting %q", c.doc, err, c.err)
		}
		if !reflect.DeepEqual(members, c.members) || end != c.end {
			t.Errorf("%s: members %q, at end %v; want %q, %v", c.doc, members, end, c.members, c.end)
		}
	}
}
