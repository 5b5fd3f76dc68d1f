package ratelimit

import (
	"fmt"
	"net/netip"
	"strings"
)

// ParseTrusted parses the --trusted-proxies entries: CIDRs ("10.0.0.0/8",
// "fd00::/8") or bare IPs ("192.0.2.7", "::1"). Blank entries are skipped so
// that a trailing comma in a flag is harmless. IPv4-mapped IPv6 entries are
// converted to IPv4, matching how [ClientAddr] normalises addresses.
func ParseTrusted(cidrs []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, e := range cidrs {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		var p netip.Prefix
		if strings.Contains(e, "/") {
			var err error
			if p, err = netip.ParsePrefix(e); err != nil {
				return nil, fmt.Errorf("trusted proxies: bad entry %q: not a CIDR or IP address", e)
			}
			if a := p.Addr(); a.Is4In6() {
				if p.Bits() < 96 {
					return nil, fmt.Errorf("trusted proxies: bad entry %q: IPv4-mapped prefix shorter than /96", e)
				}
				p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
			}
		} else {
			a, err := netip.ParseAddr(e)
			if err != nil {
				return nil, fmt.Errorf("trusted proxies: bad entry %q: not a CIDR or IP address", e)
			}
			a = normalise(a)
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// ClientAddr returns the address to throttle an anonymous request by.
// remoteAddr is http.Request.RemoteAddr and xff is
// r.Header.Values("X-Forwarded-For"), in order; each value may hold a
// comma-separated list of hops, oldest first.
//
// If the socket peer is not trusted, it is the client: its X-Forwarded-For
// is whatever it chose to write and is ignored. Otherwise the hops are walked
// from the right (the hop nearest to us) skipping trusted proxies, and the
// first untrusted hop is the client. If every hop is trusted, the leftmost
// hop is the client (a caller inside the trusted network). If the walk meets
// an entry that is not an IP address, nothing to the left of it can be
// vouched for, so the client is the last trusted hop reached, or the peer.
//
// Addresses are normalised (IPv4-mapped IPv6 unmapped, zone and port
// dropped, canonical text form) so that one client is always one key. A
// remoteAddr that is not an IP address (e.g. a Unix socket) is returned as
// given.
func ClientAddr(remoteAddr string, xff []string, trusted []netip.Prefix) string {
	peer, ok := parseHop(remoteAddr)
	if !ok {
		return remoteAddr
	}
	if !isTrusted(peer, trusted) {
		return peer.String()
	}
	client := peer
	for i := len(xff) - 1; i >= 0; i-- {
		hops := strings.Split(xff[i], ",")
		for j := len(hops) - 1; j >= 0; j-- {
			h := strings.TrimSpace(hops[j])
			if h == "" {
				continue // "a,,b" or an empty header: no claim, no hop
			}
			a, ok := parseHop(h)
			if !ok {
				return client.String()
			}
			client = a
			if !isTrusted(a, trusted) {
				return a.String()
			}
		}
	}
	return client.String()
}

// parseHop accepts "ip", "ip:port", "[ipv6]" and "[ipv6]:port", as found in
// RemoteAddr and in X-Forwarded-For as written by common proxies.
func parseHop(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return normalise(a), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return normalise(ap.Addr()), true
	}
	if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return normalise(a), true
		}
	}
	return netip.Addr{}, false
}

func normalise(a netip.Addr) netip.Addr { return a.Unmap().WithZone("") }

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
