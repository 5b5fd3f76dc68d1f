package ratelimit

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseTrusted(t *testing.T) {
	got, err := ParseTrusted([]string{"10.0.0.0/8", " 192.0.2.7 ", "", "fd00::/8", "::1", "10.1.2.3/16", "::ffff:172.16.0.0/108", "fe80::1%eth0"})
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("192.0.2.7/32"),
		netip.MustParsePrefix("fd00::/8"),
		netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("10.1.0.0/16"),   // masked
		netip.MustParsePrefix("172.16.0.0/12"), // unmapped
		netip.MustParsePrefix("fe80::1/128"),   // zone dropped
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d: got %v, want %v", i, got[i], want[i])
		}
	}

	for _, bad := range []string{"10.0.0.0/33", "not-an-ip", "10.0.0.1:80", "::ffff:1.2.3.4/64", "1.2.3/24"} {
		_, err := ParseTrusted([]string{"10.0.0.0/8", bad})
		if err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("%q: got error %v, want one naming the entry", bad, err)
		}
	}
}

func TestClientAddr(t *testing.T) {
	trusted, err := ParseTrusted([]string{"10.0.0.0/8", "2001:db8:ffff::/48"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		remote string
		xff    []string
		want   string
	}{
		// Untrusted peers: XFF is ignored whatever it says.
		{"direct, no XFF", "203.0.113.5:51234", nil, "203.0.113.5"},
		{"spoof: untrusted peer claims another client", "203.0.113.5:51234", []string{"198.51.100.1"}, "203.0.113.5"},
		{"spoof: untrusted peer claims a trusted proxy chain", "203.0.113.5:1", []string{"198.51.100.1, 10.0.0.1"}, "203.0.113.5"},
		{"spoof: several headers from untrusted peer", "203.0.113.5:1", []string{"1.1.1.1", "2.2.2.2"}, "203.0.113.5"},
		{"no trusted list", "203.0.113.5:1", []string{"1.1.1.1"}, "203.0.113.5"},

		// Trusted peer: the first untrusted hop from the right.
		{"one proxy", "10.0.0.1:443", []string{"198.51.100.7"}, "198.51.100.7"},
		{"one proxy, spoofed prefix from client", "10.0.0.1:443", []string{"6.6.6.6, 198.51.100.7"}, "198.51.100.7"},
		{"chain of trusted proxies", "10.0.0.1:443", []string{"6.6.6.6, 198.51.100.7, 10.0.0.9, 10.2.3.4"}, "198.51.100.7"},
		{"client forges a trusted hop", "10.0.0.1:443", []string{"10.9.9.9, 198.51.100.7"}, "198.51.100.7"},
		{"several headers, last is nearest", "10.0.0.1:443", []string{"6.6.6.6", "198.51.100.7", "10.0.0.9"}, "198.51.100.7"},
		{"several headers with lists", "10.0.0.1:443", []string{"6.6.6.6, 7.7.7.7", "198.51.100.7, 10.0.0.9"}, "198.51.100.7"},
		{"all hops trusted: leftmost", "10.0.0.1:443", []string{"10.0.0.7, 10.0.0.8"}, "10.0.0.7"},
		{"trusted peer, no XFF", "10.0.0.1:443", nil, "10.0.0.1"},
		{"trusted peer, empty XFF", "10.0.0.1:443", []string{""}, "10.0.0.1"},
		{"empty entries are skipped", "10.0.0.1:443", []string{", 198.51.100.7,, "}, "198.51.100.7"},

		// Garbage: stop at it; nothing left of it is believed.
		{"garbage nearest", "10.0.0.1:443", []string{"6.6.6.6, unknown"}, "10.0.0.1"},
		{"garbage behind trusted hop", "10.0.0.1:443", []string{"6.6.6.6, <script>, 10.0.0.9"}, "10.0.0.9"},
		{"garbage left of the client is irrelevant", "10.0.0.1:443", []string{"nonsense, 198.51.100.7"}, "198.51.100.7"},
		{"obfuscated node", "10.0.0.1:443", []string{"_hidden"}, "10.0.0.1"},
		{"overlong address", "10.0.0.1:443", []string{"1.2.3.4.5"}, "10.0.0.1"},

		// Ports in XFF (some proxies add them) and normalisation.
		{"hop with port", "10.0.0.1:443", []string{"198.51.100.7:5555"}, "198.51.100.7"},
		{"IPv6 hop bracketed with port", "10.0.0.1:443", []string{"[2001:db8::7]:5555"}, "2001:db8::7"},
		{"IPv6 hop bracketed", "10.0.0.1:443", []string{"[2001:db8::7]"}, "2001:db8::7"},
		{"IPv6 hop non-canonical", "10.0.0.1:443", []string{"2001:DB8:0:0::7"}, "2001:db8::7"},
		{"IPv4-mapped hop", "10.0.0.1:443", []string{"::ffff:198.51.100.7"}, "198.51.100.7"},
		{"IPv4-mapped peer is trusted as IPv4", "[::ffff:10.0.0.1]:443", []string{"198.51.100.7"}, "198.51.100.7"},
		{"IPv4-mapped untrusted peer", "[::ffff:203.0.113.5]:443", nil, "203.0.113.5"},
		{"IPv6 peer with zone", "[fe80::1%eth0]:443", nil, "fe80::1"},
		{"IPv6 trusted proxy", "[2001:db8:ffff::1]:443", []string{"2001:db8:1::1"}, "2001:db8:1::1"},
		{"IPv6 chain mixed", "[2001:db8:ffff::1]:443", []string{"203.0.113.9, 2001:db8:ffff::2"}, "203.0.113.9"},
		{"hop with zone", "10.0.0.1:443", []string{"fe80::7%en0"}, "fe80::7"},

		// RemoteAddr oddities.
		{"peer without port", "203.0.113.5", nil, "203.0.113.5"},
		{"unix socket peer", "@", []string{"1.1.1.1"}, "@"},
		{"empty peer", "", []string{"1.1.1.1"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := trusted
			if tc.name == "no trusted list" {
				tr = nil
			}
			if got := ClientAddr(tc.remote, tc.xff, tr); got != tc.want {
				t.Errorf("ClientAddr(%q, %q) = %q, want %q", tc.remote, tc.xff, got, tc.want)
			}
		})
	}
}
