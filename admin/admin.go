// Package admin is the admin API: bearer tokens with roles and source
// networks, audit export, link revocation, pprof; every call audited.
//
// It runs on its own listener (admin.listen), never on the public link
// server. Routes:
//
//	GET  /healthz                    no auth, not audited (load balancers)
//	GET  /readyz                     no auth, not audited: store and next hop reachable (metrics.go)
//	GET  /metrics                    metrics networks, or any role: Prometheus (metrics.go)
//	GET  /admin/audit?from=&to=&format=   admin, auditor: streams the export
//	GET  /admin/links?sender=&recipient=&from=&to=&state=&limit=&after=
//	                                 admin, auditor: links, filtered, paged (links_list.go)
//	GET  /admin/links/{id}           admin, auditor: one link's metadata
//	POST /admin/links/{id}/revoke    admin: revokes a link
//	GET  /admin/quarantine?limit=&after=  admin, auditor: held messages, paged (quarantine.go)
//	POST /admin/quarantine/{id}/release   admin: relays a held message
//	POST /admin/quarantine/{id}/delete    admin: deletes a held message
//	GET  /debug/pprof/...            admin: net/http/pprof
//
// Every other request, refused ones included, is authenticated and leaves
// an audit event; if that event cannot be recorded the call fails with 503
// and nothing is done.
package admin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime/debug"
	"slices"
	"sync/atomic"
	"time"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/store"
)

// Roles a token can have.
const (
	// RoleAdmin may do everything: export, view and revoke links, pprof.
	RoleAdmin = "admin"
	// RoleAuditor may read: export the audit log and view links.
	RoleAuditor = "auditor"
)

// Audit event types this package records. Their names are part of the
// export contract.
const (
	TypeAuditExport audit.EventType = audit.AdminTypePrefix + "audit.export"
	TypeLinkView    audit.EventType = audit.AdminTypePrefix + "link.view"
	TypeLinkRevoke  audit.EventType = audit.AdminTypePrefix + "link.revoke"
	TypePprof       audit.EventType = audit.AdminTypePrefix + "pprof"
	// TypeDenied records every refused call; Reason says why.
	TypeDenied audit.EventType = audit.AdminTypePrefix + "denied"
)

// Reasons of TypeDenied events.
const (
	ReasonNoToken  = "no token"  // no Authorization header
	ReasonBadToken = "bad token" // not a bearer token, or no token matches
	ReasonNetwork  = "network"   // valid token, client address not allowed
	ReasonRole     = "role"      // valid token, role may not do this
	ReasonMethod   = "method"    // known path, wrong HTTP method
	ReasonNoRoute  = "no route"  // unknown path
)

const (
	// storeTimeout bounds one metadata call.
	storeTimeout = 10 * time.Second
	// auditTimeout bounds one audit append.
	auditTimeout = 10 * time.Second
	// retryAfter is what a 503 tells clients, in seconds.
	retryAfter = "30"
)

// emptyTokenHash is SHA-256(""): a configured hash equal to it would let an
// empty bearer token in.
var emptyTokenHash = sha256.Sum256(nil)

// Token is one configured bearer token. Only its hash is known.
type Token struct {
	Name     string         // names the caller in the audit log: "admin:<Name>"
	SHA256   []byte         // SHA-256 of the token, 32 bytes
	Role     string         // RoleAdmin or RoleAuditor
	Networks []netip.Prefix // client addresses the token may be used from
}

// AuditExporter streams the audit log; *audit.SQLiteLog implements it.
type AuditExporter interface {
	Export(ctx context.Context, q audit.Query, w io.Writer, format string, bom bool) error
}

// Options configures a Server. Store, Audit and Export are required.
type Options struct {
	Tokens []Token
	// TrustedProxies are the reverse proxies whose X-Forwarded-For is
	// believed; may be empty (then the TCP peer is the client).
	TrustedProxies []netip.Prefix
	Store          store.Store
	Audit          audit.Recorder // every call is recorded here
	Export         AuditExporter
	// Quarantine serves /admin/quarantine; nil leaves those routes out
	// (404, as any unknown route).
	Quarantine Quarantine
	// InFlight counts this instance's running downloads per link, for the
	// link.revoked event of a revoke; nil: the event does not say.
	InFlight DownloadsInFlight
	// Location is the zone of the from/to dates and of times in link
	// responses; nil = time.Local. Use the audit log's zone.
	Location *time.Location
	Logger   *slog.Logger     // nil = slog.Default()
	Now      func() time.Time // nil = time.Now
	// Metrics serves GET /metrics; nil leaves the route out.
	Metrics http.Handler
	// MetricsNetworks may scrape /metrics without a token.
	MetricsNetworks []netip.Prefix
	// Ready are the checks of GET /readyz (all must pass); none: it
	// answers 200 like /healthz.
	Ready []ReadyCheck
}

// Server is the admin API. It is safe for concurrent use.
type Server struct {
	// tokens is replaced whole by SetTokens (SIGHUP); each request uses
	// the slice it loaded.
	tokens atomic.Pointer[[]Token]
	// trustedProxies is replaced whole by SetTrustedProxies (SIGHUP).
	trustedProxies atomic.Pointer[[]netip.Prefix]
	store          store.Store
	audit          audit.Recorder
	export         AuditExporter
	quarantine     Quarantine
	inFlight       DownloadsInFlight
	location       *time.Location
	log            *slog.Logger
	now            func() time.Time
	handler        http.Handler

	metrics http.Handler
	// metricsNetworks is replaced whole by SetMetricsNetworks (SIGHUP).
	metricsNetworks atomic.Pointer[[]netip.Prefix]
	ready           *readiness
}

// New checks o and builds a Server.
func New(o Options) (*Server, error) {
	switch {
	case o.Store == nil:
		return nil, errors.New("admin: Options.Store is required")
	case o.Audit == nil:
		return nil, errors.New("admin: Options.Audit is required")
	case o.Export == nil:
		return nil, errors.New("admin: Options.Export is required")
	}
	tokens, err := checkTokens(o.Tokens)
	if err != nil {
		return nil, err
	}
	s := &Server{
		store:      o.Store,
		audit:      o.Audit,
		export:     o.Export,
		quarantine: o.Quarantine,
		inFlight:   o.InFlight,
		location:   o.Location,
		log:        o.Logger,
		now:        o.Now,
		metrics:    o.Metrics,
	}
	if err := s.SetTrustedProxies(o.TrustedProxies); err != nil {
		return nil, err
	}
	if err := s.SetMetricsNetworks(o.MetricsNetworks); err != nil {
		return nil, err
	}
	for i, c := range o.Ready {
		if c.Name == "" || c.Check == nil {
			return nil, fmt.Errorf("admin: Options.Ready[%d] needs a name and a check", i)
		}
	}
	s.tokens.Store(&tokens)
	if s.location == nil {
		s.location = time.Local
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("component", "admin")
	if s.now == nil {
		s.now = time.Now
	}
	s.ready = &readiness{checks: slices.Clone(o.Ready), now: time.Now}
	s.handler = s.recoverPanics(noStore(s.routes()))
	return s, nil
}

// SetTokens replaces the tokens (configuration reload). Requests already
// authenticated finish; later ones are checked against the new tokens. An
// invalid list changes nothing.
func (s *Server) SetTokens(in []Token) error {
	tokens, err := checkTokens(in)
	if err != nil {
		return err
	}
	s.tokens.Store(&tokens)
	return nil
}

// SetMetricsNetworks replaces the networks that may scrape /metrics
// without a token (configuration reload). An invalid list changes nothing.
func (s *Server) SetMetricsNetworks(in []netip.Prefix) error {
	nets, err := maskedPrefixes("MetricsNetworks", in)
	if err != nil {
		return err
	}
	s.metricsNetworks.Store(&nets)
	return nil
}

// SetTrustedProxies replaces the proxies whose X-Forwarded-For is believed
// (configuration reload). An invalid list changes nothing.
func (s *Server) SetTrustedProxies(in []netip.Prefix) error {
	proxies, err := maskedPrefixes("TrustedProxies", in)
	if err != nil {
		return err
	}
	s.trustedProxies.Store(&proxies)
	return nil
}

// loaded returns the prefixes last stored, none for a Server not built by
// New.
func loaded(p *atomic.Pointer[[]netip.Prefix]) []netip.Prefix {
	if l := p.Load(); l != nil {
		return *l
	}
	return nil
}

// maskedPrefixes validates and copies the prefixes of the option named.
func maskedPrefixes(option string, in []netip.Prefix) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, len(in))
	for i, p := range in {
		if !p.IsValid() {
			return nil, fmt.Errorf("admin: Options.%s[%d] is not a valid prefix", option, i)
		}
		out[i] = p.Masked()
	}
	return out, nil
}

// checkTokens validates and copies the configured tokens.
func checkTokens(in []Token) ([]Token, error) {
	out := make([]Token, len(in))
	names := make(map[string]bool, len(in))
	for i, t := range in {
		switch {
		case t.Name == "":
			return nil, fmt.Errorf("admin: token %d: name is empty", i)
		case names[t.Name]:
			return nil, fmt.Errorf("admin: token %q: duplicate name", t.Name)
		case len(t.SHA256) != sha256.Size:
			return nil, fmt.Errorf("admin: token %q: SHA256 must be %d bytes, got %d", t.Name, sha256.Size, len(t.SHA256))
		case bytes.Equal(t.SHA256, emptyTokenHash[:]):
			return nil, fmt.Errorf("admin: token %q: SHA256 is the hash of the empty string", t.Name)
		case t.Role != RoleAdmin && t.Role != RoleAuditor:
			return nil, fmt.Errorf("admin: token %q: role must be %s or %s, got %q", t.Name, RoleAdmin, RoleAuditor, t.Role)
		case len(t.Networks) == 0:
			return nil, fmt.Errorf("admin: token %q: no networks allowed", t.Name)
		}
		names[t.Name] = true
		nets := make([]netip.Prefix, len(t.Networks))
		for j, p := range t.Networks {
			if !p.IsValid() {
				return nil, fmt.Errorf("admin: token %q: network %d is not a valid prefix", t.Name, j)
			}
			nets[j] = p.Masked()
		}
		out[i] = Token{Name: t.Name, SHA256: bytes.Clone(t.SHA256), Role: t.Role, Networks: nets}
	}
	return out, nil
}

// Handler returns the HTTP handler for the admin listener. The caller owns
// the http.Server; it must not set a WriteTimeout shorter than the longest
// export or CPU profile.
func (s *Server) Handler() http.Handler { return s.handler }

var (
	anyRole   = roles{RoleAdmin, RoleAuditor}
	adminOnly = roles{RoleAdmin}
)

func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	// GET patterns also match HEAD.
	mux.HandleFunc("GET /healthz", handleHealth)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "method not allowed")
	})

	mux.HandleFunc("GET /admin/audit", s.guard(anyRole, s.handleAuditExport))
	mux.HandleFunc("/admin/audit", s.guard(anyRole, s.methodNotAllowed("GET, HEAD")))
	mux.HandleFunc("GET /admin/links", s.guard(anyRole, s.handleLinkList))
	mux.HandleFunc("/admin/links", s.guard(anyRole, s.methodNotAllowed("GET, HEAD")))
	mux.HandleFunc("GET /admin/links/{id}", s.guard(anyRole, s.handleLinkView))
	mux.HandleFunc("/admin/links/{id}", s.guard(anyRole, s.methodNotAllowed("GET, HEAD")))
	mux.HandleFunc("POST /admin/links/{id}/revoke", s.guard(adminOnly, s.handleLinkRevoke))
	mux.HandleFunc("/admin/links/{id}/revoke", s.guard(anyRole, s.methodNotAllowed("POST")))
	s.mountQuarantine(mux)
	s.mountMetrics(mux)

	s.mountPprof(mux)

	// Everything else still needs a valid token, so probing is refused
	// and audited like any other call.
	mux.HandleFunc("/", s.guard(anyRole, s.handleNoRoute))
	return mux
}

func handleHealth(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = io.WriteString(w, "ok\n")
	}
}

// methodNotAllowed answers an authenticated call to a known path with the
// wrong method.
func (s *Server) methodNotAllowed(allow string) callHandler {
	return func(w http.ResponseWriter, r *http.Request, c caller) {
		w.Header().Set("Allow", allow)
		s.refuse(w, r, c, refusal{status: http.StatusMethodNotAllowed, reason: ReasonMethod,
			message: "method " + r.Method + " not allowed here; allowed: " + allow})
	}
}

func (s *Server) handleNoRoute(w http.ResponseWriter, r *http.Request, c caller) {
	s.refuse(w, r, c, refusal{status: http.StatusNotFound, reason: ReasonNoRoute, message: "no such route"})
}

// noStore keeps admin answers out of caches and content sniffing.
func noStore(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		next.ServeHTTP(w, r)
	})
}

// recoverPanics logs a handler's panic with its stack; the client gets a
// 500 or, mid-body, a cut connection.
func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tw := &startTracker{ResponseWriter: w}
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("admin: handler panicked",
				"route", r.Pattern, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			if tw.started {
				panic(http.ErrAbortHandler)
			}
			writeError(w, http.StatusInternalServerError, "internal error")
		}()
		next.ServeHTTP(tw, r)
	})
}

// startTracker remembers whether the response has started.
type startTracker struct {
	http.ResponseWriter
	started bool
}

func (t *startTracker) WriteHeader(code int) {
	t.started = true
	t.ResponseWriter.WriteHeader(code)
}

func (t *startTracker) Write(p []byte) (int, error) {
	t.started = true
	return t.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection (pprof's
// profile handler extends the write deadline through it).
func (t *startTracker) Unwrap() http.ResponseWriter { return t.ResponseWriter }
