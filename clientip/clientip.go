// Package clientip owns one question asked by every HTTP listener: which
// address is the client? The TCP peer, unless that peer is a trusted
// reverse proxy; then the right-most X-Forwarded-For hop that is not a
// trusted proxy. Hops left of that one were written by the client itself
// and prove nothing.
package clientip

import (
	"net/http"
	"net/netip"
	"strings"
)

// Resolver knows the trusted proxies.
type Resolver struct {
	Trusted []netip.Prefix
}

// Addr returns the client's address; ok is false when RemoteAddr cannot be
// parsed.
func (res Resolver) Addr(r *http.Request) (addr netip.Addr, ok bool) {
	peer, ok := Parse(r.RemoteAddr)
	if !ok {
		return netip.Addr{}, false
	}
	if !res.IsTrusted(peer) {
		return peer, true
	}
	addr = peer
	lines := r.Header.Values("X-Forwarded-For")
	for i := len(lines) - 1; i >= 0; i-- {
		hops := strings.Split(lines[i], ",")
		for j := len(hops) - 1; j >= 0; j-- {
			text := strings.TrimSpace(hops[j])
			if text == "" {
				continue
			}
			hop, ok := Parse(text)
			if !ok {
				// Garbage from behind our proxy: the last address we can
				// vouch for is the best we have.
				return addr, true
			}
			addr = hop
			if !res.IsTrusted(hop) {
				return hop, true
			}
		}
	}
	// Every hop was a trusted proxy: the left-most is the closest we know.
	return addr, true
}

// FromTrustedProxy tells whether the TCP peer itself is a trusted proxy,
// whose other forwarding headers (X-Forwarded-Proto) may be believed.
func (res Resolver) FromTrustedProxy(r *http.Request) bool {
	peer, ok := Parse(r.RemoteAddr)
	return ok && res.IsTrusted(peer)
}

// IsTrusted tells whether addr is a trusted proxy.
func (res Resolver) IsTrusted(addr netip.Addr) bool {
	return Contains(res.Trusted, addr)
}

// Contains tells whether any prefix contains addr.
func Contains(prefixes []netip.Prefix, addr netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// Parse accepts "ip", "ip:port" and "[ipv6]:port", and normalises
// IPv4-mapped IPv6 and zones away so prefixes match.
func Parse(s string) (netip.Addr, bool) {
	addr, err := netip.ParseAddr(s)
	if err != nil {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return netip.Addr{}, false
		}
		addr = ap.Addr()
	}
	return addr.Unmap().WithZone(""), true
}
