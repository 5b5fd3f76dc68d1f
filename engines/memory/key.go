package memory

import (
	"encoding/hex"
	"strings"
	"time"

	"github.com/locklock/locklock/internal/uuidtext"
	"github.com/locklock/locklock/locklock"
)

const uuidLen = 36 // textual

// canonicalUUID decodes the name of a UUID lock written as the core writes
// it (lower case); anything else is kept by its generic key, so that
// decoding always gives back exactly the name that was stored.
func canonicalUUID(id locklock.ID) (raw [16]byte, ok bool) {
	if id.Kind != locklock.KindUUID || len(id.Name) != uuidLen {
		return raw, false
	}
	var digits [32]byte
	n := 0
	for i := 0; i < uuidLen; i++ {
		c := id.Name[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return raw, false
			}
			continue
		}
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return raw, false
		}
		digits[n] = c
		n++
	}
	_, err := hex.Decode(raw[:], digits[:])
	return raw, err == nil
}

func uuidText(raw [16]byte) string { return string(uuidtext.Append(nil, raw)) }

// A generic key is kind, 0, namespace, 0, name. IDs never hold a 0 byte
// (the core validates them; an engine used directly with one would only see
// two such IDs share a key if both had zeros in the same places).
func appendGenericKey(b []byte, id locklock.ID) []byte {
	b = append(b, id.Kind...)
	b = append(b, 0)
	b = append(b, id.Namespace...)
	b = append(b, 0)
	return append(b, id.Name...)
}

func parseGenericKey(key string) locklock.ID {
	kind, rest, _ := strings.Cut(key, "\x00")
	ns, name, _ := strings.Cut(rest, "\x00")
	return locklock.ID{Namespace: ns, Kind: locklock.Kind(kind), Name: name}
}

// genericKeyMatches says whether key belongs to namespace ns and kind k,
// without decoding it.
func genericKeyMatches(key, ns string, k locklock.Kind) bool {
	rest, ok := strings.CutPrefix(key, string(k))
	if !ok || len(rest) < len(ns)+2 || rest[0] != 0 || rest[len(ns)+1] != 0 {
		return false
	}
	return rest[1:len(ns)+1] == ns
}

func unixMilli(ms int64) time.Time { return time.UnixMilli(ms).UTC() }
