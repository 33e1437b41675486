package linkserver

import (
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/clientip"
	"github.com/attachgate/attachgate/store"
)

const (
	// maxUserAgentLen keeps a hostile User-Agent from bloating the audit log.
	maxUserAgentLen = 512
	// actorWeb is the audit Actor of a recipient's browser.
	actorWeb = "web"
)

// clientAddr returns the address of the client, behind trusted proxies.
func (s *Server) clientAddr(r *http.Request) string {
	addr, ok := clientip.Resolver{Trusted: s.proxies()}.Addr(r)
	if !ok {
		return r.RemoteAddr
	}
	return addr.String()
}

// clientKey names the client for per-client limits: its address for IPv4
// (IPv4-mapped IPv6 included), its /64 for IPv6, since whoever has one
// address of a /64 can use all 2^64 of them (clientip.ClientPrefix). Audit
// events keep the real address (clientAddr).
func (s *Server) clientKey(r *http.Request) string {
	addr, ok := clientip.Resolver{Trusted: s.proxies()}.Addr(r)
	if !ok {
		return r.RemoteAddr
	}
	p := clientip.ClientPrefix(addr)
	if p.Addr().Is4() {
		return p.Addr().String()
	}
	return p.String()
}

// isHTTPS reports whether the browser reached us over TLS, directly or via
// a trusted proxy that says so; it decides the cookie's Secure flag.
func (s *Server) isHTTPS(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	if !(clientip.Resolver{Trusted: s.proxies()}).FromTrustedProxy(r) {
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
func (s *Server) webEvent(r *http.Request, typ audit.EventType) audit.Event {
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
