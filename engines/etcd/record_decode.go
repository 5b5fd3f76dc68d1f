package etcd

import (
	"encoding/base64"
	"strconv"
	"unicode/utf8"
)

// decodeRecord reads a record as encode writes it, without encoding/json's
// reflection: every lock put the watch reports is decoded for its event
// (see events.go), and every read too. It is strict — no whitespace, no
// escapes in strings, no unknown or misspelt fields, no null, integers
// without leading zeros, fraction or exponent — and says false for
// anything else, which parseRecord then gives to encoding/json. Whenever
// it says true, its record is the one encoding/json would give
// (FuzzDecodeRecord checks that).
func decodeRecord(b []byte) (r record, ok bool) {
	d := recordScanner{b: b}
	if !d.next('{') {
		return record{}, false
	}
	if d.next('}') {
		return r, d.i == len(b)
	}
	var seen uint16 // fields read: encoding/json merges a repeated metadata object
	for {
		name, ok := d.str()
		if !ok || !d.next(':') {
			return record{}, false
		}
		bit := uint16(1) << recordFieldIndex(name)
		if seen&bit != 0 {
			return record{}, false
		}
		seen |= bit
		switch name {
		case "acquired_at_ms":
			r.AcquiredAt, ok = d.int()
		case "expires_at_ms":
			r.ExpiresAt, ok = d.int()
		case "guard":
			var s string
			if s, ok = d.str(); ok {
				r.Guard, ok = decodeBase64(s)
			}
		case "lease":
			r.Lease, ok = d.int()
		case "holder":
			r.Holder, ok = d.str()
		case "metadata":
			r.Metadata, ok = d.strings()
		case "lock_delay_ms":
			r.LockDelay, ok = d.int()
		case "delay_lease":
			r.DelayLease, ok = d.int()
		case "token":
			// Unsigned: no sign at all (encoding/json refuses even -0);
			// beyond int64, encoding/json decides.
			if d.i < len(d.b) && d.b[d.i] == '-' {
				return record{}, false
			}
			var n int64
			n, ok = d.int()
			r.Token = uint64(n)
		case "revoked":
			r.Revoked, ok = d.bool()
		case "updated_at_ms":
			r.UpdatedAt, ok = d.int()
		default:
			return record{}, false
		}
		switch {
		case !ok:
			return record{}, false
		case d.next(','):
		case d.next('}'):
			return r, d.i == len(b)
		default:
			return record{}, false
		}
	}
}

// recordFields are the record's JSON names, as encode writes them.
var recordFields = [...]string{"acquired_at_ms", "expires_at_ms", "guard", "lease", "holder", "metadata",
	"lock_delay_ms", "delay_lease", "token", "revoked", "updated_at_ms"}

// recordFieldIndex is name's index in recordFields, or len(recordFields).
func recordFieldIndex(name string) int {
	for i, f := range recordFields {
		if f == name {
			return i
		}
	}
	return len(recordFields)
}

func decodeBase64(s string) ([]byte, bool) {
	out := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
	n, err := base64.StdEncoding.Decode(out, []byte(s))
	return out[:n], err == nil
}

type recordScanner struct {
	b []byte
	i int
}

// next consumes c if it comes next.
func (d *recordScanner) next(c byte) bool {
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// str reads a string without escapes or control characters, of valid
// UTF-8.
func (d *recordScanner) str() (string, bool) {
	if !d.next('"') {
		return "", false
	}
	start, ascii := d.i, true
	for ; d.i < len(d.b); d.i++ {
		switch c := d.b[d.i]; {
		case c == '"':
			s := d.b[start:d.i]
			d.i++
			if !ascii && !utf8.Valid(s) {
				return "", false
			}
			return string(s), true
		case c == '\\' || c < 0x20:
			return "", false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return "", false
}

// int reads an integer as JSON writes it.
func (d *recordScanner) int() (int64, bool) {
	start := d.i
	d.next('-')
	digits := d.i
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		d.i++
	}
	if d.i == digits || d.b[digits] == '0' && d.i-digits > 1 {
		return 0, false // no digits, or a leading zero
	}
	if d.i < len(d.b) && (d.b[d.i] == '.' || d.b[d.i] == 'e' || d.b[d.i] == 'E') {
		return 0, false // a number that is no integer: encoding/json refuses it
	}
	n, err := strconv.ParseInt(string(d.b[start:d.i]), 10, 64)
	return n, err == nil
}

// literal consumes lit if it comes next.
func (d *recordScanner) literal(lit string) bool {
	if len(d.b)-d.i >= len(lit) && string(d.b[d.i:d.i+len(lit)]) == lit {
		d.i += len(lit)
		return true
	}
	return false
}

func (d *recordScanner) bool() (bool, bool) {
	for _, lit := range []string{"true", "false"} {
		if len(d.b)-d.i >= len(lit) && string(d.b[d.i:d.i+len(lit)]) == lit {
			d.i += len(lit)
			return lit == "true", true
		}
	}
	return false, false
}

// strings reads an object of strings.
func (d *recordScanner) strings() (map[string]string, bool) {
	if !d.next('{') {
		return nil, false
	}
	m := make(map[string]string)
	if d.next('}') {
		return m, true
	}
	for {
		name, ok := d.str()
		if !ok || !d.next(':') {
			return nil, false
		}
		if m[name], ok = d.str(); !ok {
			return nil, false
		}
		if d.next('}') {
			return m, true
		}
		if !d.next(',') {
			return nil, false
		}
	}
}
