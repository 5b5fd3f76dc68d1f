// Package ratelimit implements Locklock's request throttling (API.md §5): a
// token bucket per API key or, for anonymous callers, per client address.
//
// # Buckets
//
// [Limiter] keeps one golang.org/x/time/rate bucket per key, sharded so that
// distinct keys rarely contend. [Limiter.Allow] returns a [Decision] carrying
// everything the HTTP layer needs for `429 rate_limited`, `Retry-After` and the
// `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` headers.
//
// Memory is bounded without a background goroutine: a bucket left unused until
// it has refilled is indistinguishable from a fresh one, so it is dropped.
// Each shard sweeps itself from inside Allow, so the map holds only the keys
// seen within roughly the last idle period, however many distinct addresses
// an attacker cycles through.
//
// # Client addresses and X-Forwarded-For
//
// Anonymous callers are throttled per client address, as returned by
// [ClientAddr]. By default that is the socket peer and X-Forwarded-For is
// ignored: any client can send any X-Forwarded-For, so believing it would let
// each request pick its own bucket and the limit would mean nothing.
//
// When Locklock runs behind reverse proxies or load balancers, the socket peer
// is the proxy and every anonymous caller would share its one bucket. The
// operator must then list the proxies' addresses with --trusted-proxies
// (CIDRs or bare IPs, parsed by [ParseTrusted]). Only when the peer is one of
// them is X-Forwarded-For read, right to left, skipping further trusted
// proxies; the first untrusted hop is the client. Entries to the left of it
// were written by the client or by proxies nobody vouches for, so they are
// never used. List only proxies that append (not pass through) the address
// they received the request from; never list a range that ordinary clients
// can connect from.
package ratelimit
