package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"github.com/attachgate/attachgate/clientip"
)

// bearerRealm goes into every WWW-Authenticate challenge (RFC 6750).
const bearerRealm = `Bearer realm="attachgate admin"`

// roles is the set of roles allowed on a route.
type roles []string

func (rs roles) allow(role string) bool { return slices.Contains(rs, role) }

// caller is who made a request, as far as it is known.
type caller struct {
	token      *Token // nil until a configured token matched
	clientAddr string
	userAgent  string
}

// actor is the audit Actor: "admin:<token name>", or "admin:-" when no
// token matched.
func (c caller) actor() string {
	if c.token == nil {
		return "admin:-"
	}
	return "admin:" + c.token.Name
}

// refusal is why a call is not carried out.
type refusal struct {
	status  int
	reason  string // audit Reason
	message string // the JSON error text
}

// callHandler serves a call whose caller passed authentication, the
// network check and the role check.
type callHandler func(w http.ResponseWriter, r *http.Request, c caller)

// guard runs h only for a caller with a valid token, used from one of its
// networks, with one of allowed; otherwise it records an admin.denied event
// and answers 401 or 403.
func (s *Server) guard(allowed roles, h callHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, refused := s.authorize(r, allowed)
		if refused != nil {
			s.refuse(w, r, c, *refused)
			return
		}
		h(w, r, c)
	}
}

// authorize identifies the caller and checks token, network and role, in
// that order.
func (s *Server) authorize(r *http.Request, allowed roles) (caller, *refusal) {
	addr, addrOK := s.clientAddr(r)
	c := caller{clientAddr: r.RemoteAddr, userAgent: userAgent(r)}
	if addrOK {
		c.clientAddr = addr.String()
	}

	secret, present := bearerToken(r)
	if !present {
		return c, &refusal{status: http.StatusUnauthorized, reason: ReasonNoToken,
			message: "missing bearer token (Authorization: Bearer <token>)"}
	}
	c.token = s.matchToken(secret)
	if c.token == nil {
		return c, &refusal{status: http.StatusUnauthorized, reason: ReasonBadToken, message: "invalid bearer token"}
	}
	if !addrOK || !clientip.Contains(c.token.Networks, addr) {
		return c, &refusal{status: http.StatusForbidden, reason: ReasonNetwork,
			message: "this token may not be used from " + c.clientAddr}
	}
	if !allowed.allow(c.token.Role) {
		return c, &refusal{status: http.StatusForbidden, reason: ReasonRole,
			message: "role " + c.token.Role + " may not do this"}
	}
	return c, nil
}

// refuse records an admin.denied event and answers with f. If the event
// cannot be recorded the answer is 503.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, c caller, f refusal) {
	e := c.event(TypeDenied, r)
	e.Reason = f.reason
	if err := s.record(r, e); err != nil {
		s.auditUnavailable(w)
		return
	}
	s.log.Info("admin: call refused", "actor", e.Actor, "client", c.clientAddr,
		"reason", f.reason, "status", f.status, "call", e.Detail)
	if f.status == http.StatusUnauthorized {
		challenge := bearerRealm
		if f.reason == ReasonBadToken {
			challenge += `, error="invalid_token"`
		}
		w.Header().Set("WWW-Authenticate", challenge)
	}
	writeError(w, f.status, f.message)
}

// bearerToken returns the token of an "Authorization: Bearer <token>"
// header. present is false only when there is no Authorization header; a
// header with another scheme or an empty token gives ("", true).
func bearerToken(r *http.Request) (secret string, present bool) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", false
	}
	scheme, rest, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", true
	}
	return strings.TrimSpace(rest), true
}

// matchToken returns the configured token whose hash is SHA-256(secret),
// or nil. Every configured hash is compared in constant time, with no early
// exit, so timing tells nothing about which hash came close.
func (s *Server) matchToken(secret string) *Token {
	if secret == "" {
		return nil
	}
	sum := sha256.Sum256([]byte(secret))
	tokens := *s.tokens.Load()
	match := -1
	for i := range tokens {
		equal := subtle.ConstantTimeCompare(sum[:], tokens[i].SHA256)
		match = subtle.ConstantTimeSelect(equal, i, match)
	}
	if match < 0 {
		return nil
	}
	return &tokens[match]
}

// clientAddr returns the address of the client, behind trusted proxies;
// ok is false when RemoteAddr cannot be parsed.
func (s *Server) clientAddr(r *http.Request) (addr netip.Addr, ok bool) {
	return clientip.Resolver{Trusted: loaded(&s.trustedProxies)}.Addr(r)
}
