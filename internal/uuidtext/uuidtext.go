// Package uuidtext formats UUIDs kept as 16 bytes (the memory engine's
// store, the benchmarks' generated names) in the canonical text that lock
// names of kind uuid have.
package uuidtext

import "encoding/hex"

// Append appends the canonical (lower-case, hyphenated) text of the UUID
// whose 16 bytes are u.
func Append(b []byte, u [16]byte) []byte {
	var s [36]byte
	hex.Encode(s[0:8], u[0:4])
	hex.Encode(s[9:13], u[4:6])
	hex.Encode(s[14:18], u[6:8])
	hex.Encode(s[19:23], u[8:10])
	hex.Encode(s[24:36], u[10:16])
	s[8], s[13], s[18], s[23] = '-', '-', '-', '-'
	return append(b, s[:]...)
}
