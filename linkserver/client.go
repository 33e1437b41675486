package linkserver

import (
	"net/http"
	"net/netip"
	"strings"
	"unicode/utf8"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/store"
)

const (
	// maxUserAgentLen keeps a hostile User-Agent from bloating the audit log.
	maxUserAgentLen = 512
	// actorWeb is the audit Actor of a recipient's browser.
	actorWeb = "web"
)

// clientAddr returns the address of the client: the TCP peer, or, when the
// peer is a trusted proxy, the right-most X-Forwarded-For hop that is not a
// trusted proxy. Hops left of that one were written by the client itself
// and prove nothing.
func (s *Server) clientAddr(r *http.Request) string {
	peer, ok := parseHop(r.RemoteAddr)
	if !ok {
		return r.RemoteAddr
	}
	if !s.isTrustedProxy(peer) {
		return peer.String()
	}
	addr := peer
	lines := r.Header.Values("X-Forwarded-For")
	for i := len(lines) - 1; i >= 0; i-- {
		hops := strings.Split(lines[i], ",")
		for j := len(hops) - 1; j >= 0; j-- {
			text := strings.TrimSpace(hops[j])
			if text == "" {
				continue
			}
			hop, ok := parseHop(text)
			if !ok {
				// A trusted proxy appended garbage or forwarded it: the last
				// address we can vouch for is the best we have.
				return addr.String()
			}
			addr = hop
			if !s.isTrustedProxy(hop) {
				return hop.String()
			}
		}
	}
	// Every hop was a trusted proxy: the left-most is the closest we know.
	return addr.String()
}

// parseHop accepts "ip", "ip:port" and "[ipv6]:port", and normalises
// IPv4-mapped IPv6 and zones away so prefixes match.
func parseHop(s string) (netip.Addr, bool) {
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

func (s *Server) isTrustedProxy(addr netip.Addr) bool {
	for _, p := range s.trustedProxies {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// isHTTPS reports whether the browser reached us over TLS, directly or via
// a trusted proxy that says so; it decides the cookie's Secure flag.
func (s *Server) isHTTPS(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	peer, ok := parseHop(r.RemoteAddr)
	if !ok || !s.isTrustedProxy(peer) {
		return false
	}
	proto := r.Header.Values("X-Forwarded-Proto")
	if len(proto) == 0 {
		return false
	}
	// The last value is the one our own proxy wrote.
	last := proto[len(proto)-1]
	if i := strings.LastIndexByte(last, ','); i >= 0 {
		last = last[i+1:]
	}
	return strings.EqualFold(strings.TrimSpace(last), "https")
}

// userAgent returns the User-Agent cut to maxUserAgentLen on a rune
// boundary.
func userAgent(r *http.Request) string {
	ua := r.UserAgent()
	if len(ua) <= maxUserAgentLen {
		return ua
	}
	cut := maxUserAgentLen
	for cut > 0 && !utf8.RuneStart(ua[cut]) {
		cut--
	}
	return ua[:cut]
}

// webEvent starts an audit event for a request by a recipient's browser.
func (s *Server) webEvent(r *http.Request, typ string) audit.Event {
	return audit.Event{
		Type:       typ,
		Actor:      actorWeb,
		ClientAddr: s.clientAddr(r),
		UserAgent:  userAgent(r),
	}
}

// withLink fills the fields that name the file and link concerned.
func withLink(e audit.Event, v store.LinkView) audit.Event {
	e.LinkID = v.Link.ID
	e.FileID = v.File.ID
	e.FileName = v.File.Name
	e.ContentType = v.File.ContentType
	e.Size = v.File.Size
	e.SHA256 = v.File.SHA256
	e.MessageID = v.Message.ID
	e.HeaderID = v.Message.MessageID
	e.Sender = v.Message.Sender
	e.Expires = effectiveExpiry(v)
	return e
}
