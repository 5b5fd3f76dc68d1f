// Package leakcheck finds a secret in stored bytes: the secret itself or its
// plain SHA-256, raw, in hex or in base64 (either alphabet, any alignment).
// The engines' secrets-at-rest tests use it on Badger's files and etcd's
// values, which must hold secrets only as salted hashes.
package leakcheck

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
)

// Forms is every way a secret or its plain (unsalted) SHA-256 could be
// written: raw; hex; base64 in the standard and URL alphabets. Base64 forms
// are the characters that depend on the value alone, at each of the three
// alignments it could have inside a longer encoded string, so that they are
// found with or without padding and wherever the value starts.
func Forms(secret string) map[string][]byte {
	sum := sha256.Sum256([]byte(secret))
	forms := map[string][]byte{
		"the secret":               []byte(secret),
		"its hex":                  []byte(hex.EncodeToString([]byte(secret))),
		"its SHA-256":              sum[:],
		"its SHA-256 in hex":       []byte(hex.EncodeToString(sum[:])),
		"its SHA-256 in upper hex": bytes.ToUpper([]byte(hex.EncodeToString(sum[:]))),
	}
	for what, v := range map[string][]byte{"the secret": []byte(secret), "its SHA-256": sum[:]} {
		for alphabet, enc := range map[string]*base64.Encoding{"base64": base64.RawStdEncoding, "base64url": base64.RawURLEncoding} {
			for k := range 3 {
				s := enc.EncodeToString(append(make([]byte, k), v...))
				from, to := (8*k+5)/6, 8*(k+len(v))/6
				forms[fmt.Sprintf("%s in %s at offset %d", what, alphabet, k)] = []byte(s[from:to])
			}
		}
	}
	return forms
}

// Find names the first form found in b, or "".
func Find(b []byte, forms map[string][]byte) string {
	for _, run := range nonZeroRuns(b) {
		for what, f := range forms {
			if bytes.Contains(run, f) {
				return what
			}
		}
	}
	return ""
}

// nonZeroRuns splits b into the parts not in all-zero pages, each extended
// by a page into the zeros on either side. Badger preallocates its log files
// (hundreds of MB of zeros); skipping those keeps the scan fast. A form is
// far shorter than a page, so none can hide across the cut.
func nonZeroRuns(b []byte) [][]byte {
	const page = 4096
	zero := make([]byte, page)
	var runs [][]byte
	start := -1
	for off := 0; off < len(b); off += page {
		p := b[off:min(off+page, len(b))]
		isZero := bytes.Equal(p, zero[:len(p)])
		switch {
		case !isZero && start < 0:
			start = max(0, off-page)
		case isZero && start >= 0:
			runs = append(runs, b[start:min(off+page, len(b))])
			start = -1
		}
	}
	if start >= 0 {
		runs = append(runs, b[start:])
	}
	return runs
}
