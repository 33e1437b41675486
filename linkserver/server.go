// Package linkserver serves what a recipient's browser sees: landing pages,
// downloads, health, and the pages of expired, withdrawn and purged links
// (from the store's tombstones). It owns the link listener's limits
// (timeouts, header and body caps, Range cap) and the per-client limit and
// aggregation of refused requests. The admin API lives in package admin,
// on its own listener.
//
// A download takes three requests, so that mail scanners which pre-fetch
// links never use one up:
//
//	GET  /d/{token}         landing page; counts nothing
//	POST /d/{token}         counts the download, 303 to a signed URL
//	GET  /f/{id}/{name}?e=&s=  streams the decrypted file (Range, HEAD)
//
// The envelope sender's manage page (manage.go) is GET and POST
// /s/{token}.
// Links of a message with link.verify: recipient-code also need a
// recipient's session (verify.go, gate.go): POST /v/{d|m}/{token} mails a
// one-time code and checks it.
// One page per message lists all its files (message.go): GET /m/{token},
// a per-file POST that leads to the same signed URL, and Download all, a
// ZIP streamed on the fly (zip.go).
// With Options.Held it also serves the links of held mail, /h/{token}: a
// sender's Cancel and Send now, an approver's View, Approve and Reject
// (held.go).
package linkserver

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/notify"
	"github.com/attachgate/attachgate/store"
	"github.com/attachgate/attachgate/vault"
)

const (
	defaultSignedURLTTL = 2 * time.Minute
	// minMACKeyLen is the HMAC-SHA256 block of security we insist on.
	minMACKeyLen = 32
	// storeTimeout bounds one metadata call, so a wedged database turns
	// into a 503 rather than a hung browser.
	storeTimeout = 10 * time.Second
	// auditTimeout bounds one audit append.
	auditTimeout = 10 * time.Second
	// retryAfter is what a 503 tells clients, in seconds.
	retryAfter = "30"
)

// Options configures a Server. Store, Blobs, MACKey and Audit are required.
type Options struct {
	Store  store.Store
	Blobs  *vault.BlobStore
	MACKey []byte         // signs short-lived download URLs; at least 32 bytes
	Audit  audit.Recorder // required: every view and download is audited
	Logger *slog.Logger   // nil = slog.Default()
	Now    func() time.Time
	// SignedURLTTL is how long the URL a POST redirects to stays valid;
	// 0 = 2 minutes.
	SignedURLTTL time.Duration
	// Location is the zone expiry times are shown in; nil = time.Local.
	Location *time.Location
	// TrustedProxies are the reverse proxies whose X-Forwarded-For and
	// X-Forwarded-Proto are believed; may be empty.
	TrustedProxies []netip.Prefix
	// HTTPS says browsers reach the link server over https
	// (links.base_url is https): the CSRF cookie is always Secure and every
	// answer carries HSTS, even when a proxy forgets X-Forwarded-Proto.
	HTTPS bool
	// ReadTimeout bounds reading one whole request; 0 = 30 s.
	ReadTimeout time.Duration
	// IdleTimeout closes idle keep-alive connections; 0 = 60 s.
	IdleTimeout time.Duration
	// StallTimeout cuts a download whose client took no bytes for that
	// long; 0 = 60 s. Downloads have no overall time limit.
	StallTimeout time.Duration
	// DenialWindow is the period of the per-client denial limit and of
	// the aggregation of repeated download.denied events; 0 = 1 minute.
	DenialWindow time.Duration
	// DenialBurst is how many denials per client and window are audited
	// one by one; the rest are counted into one event per reason. 0 = 10.
	DenialBurst int
	// DenialLimit is how many denials per client and window are answered
	// normally; beyond it the client gets 429 until the window ends.
	// 0 = 60.
	DenialLimit int
	// Notify sends the gateway's own mail (recipient codes, sender
	// notices); nil sends none.
	Notify *notify.Service
	// MaxExpiry (links.max_expiry) is how far past its creation the
	// sender may extend a message's expiry on the manage page;
	// 0 = DefaultMaxExpiry.
	MaxExpiry time.Duration
	// Held serves the links of held mail, /h/{token} (held.go); nil
	// serves none.
	Held HeldMail
}

// Server serves landing pages, downloads and health. It is safe for
// concurrent use.
type Server struct {
	store        store.Store
	blobs        *vault.BlobStore
	macKey       []byte
	audit        audit.Recorder
	log          *slog.Logger
	now          func() time.Time
	signedURLTTL time.Duration
	location     *time.Location
	// trustedProxies is replaced whole by SetTrustedProxies (SIGHUP).
	trustedProxies atomic.Pointer[[]netip.Prefix]
	crossOrigin    *http.CrossOriginProtection
	handler        http.Handler

	https            bool
	readTimeout      time.Duration
	idleTimeout      time.Duration
	stallTimeout     time.Duration
	pageWriteTimeout time.Duration
	denials          *denialLimiter
	notify           *notify.Service
	inFlight         inFlight
	maxExpiry        time.Duration
	verify           *verifier
	held             HeldMail
}

// New checks o and builds a Server.
func New(o Options) (*Server, error) {
	switch {
	case o.Store == nil:
		return nil, errors.New("linkserver: Options.Store is required")
	case o.Blobs == nil:
		return nil, errors.New("linkserver: Options.Blobs is required")
	case o.Audit == nil:
		return nil, errors.New("linkserver: Options.Audit is required")
	case len(o.MACKey) < minMACKeyLen:
		return nil, fmt.Errorf("linkserver: Options.MACKey must be at least %d bytes, got %d", minMACKeyLen, len(o.MACKey))
	case o.SignedURLTTL < 0:
		return nil, fmt.Errorf("linkserver: Options.SignedURLTTL must not be negative, got %s", o.SignedURLTTL)
	case o.ReadTimeout < 0 || o.IdleTimeout < 0 || o.StallTimeout < 0 || o.DenialWindow < 0:
		return nil, errors.New("linkserver: Options timeouts and DenialWindow must not be negative")
	case o.MaxExpiry < 0:
		return nil, fmt.Errorf("linkserver: Options.MaxExpiry must not be negative, got %s", o.MaxExpiry)
	case o.DenialBurst < 0 || o.DenialLimit < 0:
		return nil, errors.New("linkserver: Options.DenialBurst and DenialLimit must not be negative")
	}
	s := &Server{
		store:        o.Store,
		blobs:        o.Blobs,
		macKey:       append([]byte(nil), o.MACKey...),
		audit:        o.Audit,
		notify:       o.Notify,
		log:          o.Logger,
		now:          o.Now,
		signedURLTTL: o.SignedURLTTL,
		location:     o.Location,
		crossOrigin:  http.NewCrossOriginProtection(),
		https:        o.HTTPS,
		readTimeout:  cmp.Or(o.ReadTimeout, defaultReadTimeout),
		idleTimeout:  cmp.Or(o.IdleTimeout, defaultIdleTimeout),
		stallTimeout: cmp.Or(o.StallTimeout, defaultStallTimeout),
		maxExpiry:    cmp.Or(o.MaxExpiry, DefaultMaxExpiry),
		verify:       newVerifier(o.MACKey),
	}
	s.pageWriteTimeout = s.readTimeout
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("component", "linkserver")
	if s.now == nil {
		s.now = time.Now
	}
	if s.signedURLTTL == 0 {
		s.signedURLTTL = defaultSignedURLTTL
	}
	if s.location == nil {
		s.location = time.Local
	}
	if err := s.SetTrustedProxies(o.TrustedProxies); err != nil {
		return nil, err
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.handleHealth)
	// GET patterns also match HEAD.
	mux.HandleFunc("GET /d/{token}", s.handleLanding)
	mux.HandleFunc("POST /d/{token}", s.handleConfirm)
	mux.HandleFunc("/d/{token}", s.methodNotAllowed("GET, HEAD, POST"))
	mux.HandleFunc("GET /s/{token}", s.handleManage)
	mux.HandleFunc("POST /s/{token}", s.handleManageAction)
	mux.HandleFunc("/s/{token}", s.methodNotAllowed("GET, HEAD, POST"))
	mux.HandleFunc("GET /f/{id}/{name}", s.handleFile)
	mux.HandleFunc("/f/{id}/{name}", s.methodNotAllowed("GET, HEAD"))
	mux.HandleFunc("POST /v/{kind}/{token}", s.handleVerify)
	mux.HandleFunc("/v/{kind}/{token}", s.methodNotAllowed("POST"))
	// The message page (message.go) and its Download all (zip.go).
	mux.HandleFunc("GET /m/{token}", s.handleMessage)
	mux.HandleFunc("POST /m/{token}", s.handleMessageFile)
	mux.HandleFunc("/m/{token}", s.methodNotAllowed("GET, HEAD, POST"))
	mux.HandleFunc("POST /m/{token}/all", s.handleMessageZip)
	mux.HandleFunc("/m/{token}/all", s.methodNotAllowed("POST"))
	s.registerHeld(mux, o.Held)
	// Without this catch-all, unknown paths would get ServeMux's plain-text
	// 404 without our headers.
	mux.HandleFunc("/", s.handleUnknownPath)
	s.handler = s.limitBodies(s.recoverPanics(mux))
	s.denials = newDenialLimiter(s, cmp.Or(o.DenialWindow, time.Minute), cmp.Or(o.DenialBurst, 10), cmp.Or(o.DenialLimit, 60))
	return s, nil
}

// Close waits for the code requests still being handled in the
// background, then writes the aggregated denial events still pending and
// stops their timers. Call it after the http.Server has shut down.
func (s *Server) Close() {
	s.verify.wait()
	s.denials.close()
}

// Handler returns the HTTP handler for the link listener. Serve it with
// HTTPServer, which sets the timeouts and limits the handler relies on.
func (s *Server) Handler() http.Handler { return s.handler }

// pinger is a store that can tell whether it is reachable.
type pinger interface {
	Ping(ctx context.Context) error
}

// handleHealth answers a load balancer: 200 when this instance can serve
// links, 503 when its store is unreachable, so traffic moves to another
// instance instead of meeting 503 pages.
func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	status, body := http.StatusOK, "ok\n"
	if p, ok := s.store.(pinger); ok {
		ctx, cancel := storeContext(r)
		defer cancel()
		if err := p.Ping(ctx); err != nil {
			s.log.Warn("linkserver: health check: store unreachable", "err", err)
			status, body = http.StatusServiceUnavailable, "store unavailable\n"
		}
	}
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte(body))
	}
}

func (s *Server) handleUnknownPath(w http.ResponseWriter, r *http.Request) {
	s.renderError(w, r, pageNotFound)
}

func (s *Server) methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		s.renderError(w, r, pageMethodNotAllowed)
	}
}

// recoverPanics is a last line of defence: a bug in a handler is logged
// with its stack and the client gets the 500 page, never the stack.
func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tw := &headerTracker{ResponseWriter: w}
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			// r.Pattern, not r.URL: the URL holds the token.
			s.log.Error("linkserver: handler panicked",
				"route", r.Pattern, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			if tw.wroteHeader {
				// Mid-body: the only honest signal left is a cut connection.
				panic(http.ErrAbortHandler)
			}
			s.renderError(w, r, pageInternal)
		}()
		next.ServeHTTP(tw, r)
	})
}

// headerTracker remembers whether the response has started.
type headerTracker struct {
	http.ResponseWriter
	wroteHeader bool
}

func (t *headerTracker) WriteHeader(code int) {
	t.wroteHeader = true
	t.ResponseWriter.WriteHeader(code)
}

func (t *headerTracker) Write(p []byte) (int, error) {
	t.wroteHeader = true
	return t.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection.
func (t *headerTracker) Unwrap() http.ResponseWriter { return t.ResponseWriter }

// storeContext bounds one store call and keeps the request's cancellation.
func storeContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), storeTimeout)
}

// record appends an audit event. It survives the client hanging up, so a
// download cut short is still on record. Errors are logged here; callers
// decide whether to fail the request.
func (s *Server) record(r *http.Request, e audit.Event) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), auditTimeout)
	defer cancel()
	if err := s.audit.Record(ctx, e); err != nil {
		s.log.Error("linkserver: audit record failed",
			"event", e.Type, "link_id", e.LinkID, "file_id", e.FileID, "err", err)
		return fmt.Errorf("record audit event %s: %w", e.Type, err)
	}
	return nil
}

// storeFailed answers a store error that is not one of the known link
// states: the database is down or slow. It logs and sends a 503.
func (s *Server) storeFailed(w http.ResponseWriter, r *http.Request, op, linkID string, err error) {
	level := slog.LevelError
	if r.Context().Err() != nil {
		// The client went away; not the store's fault.
		level = slog.LevelDebug
	}
	if errors.Is(err, store.ErrUnavailable) {
		// The store's guard logs the outage once, not per request.
		level = slog.LevelDebug
	}
	s.log.Log(r.Context(), level, "linkserver: store unavailable",
		"op", op, "link_id", linkID, "err", err)
	s.renderError(w, r, pageUnavailable)
}

// SetTrustedProxies replaces the reverse proxies whose X-Forwarded-For and
// X-Forwarded-Proto are believed (configuration reload); the next request
// is read with them. An invalid list changes nothing.
func (s *Server) SetTrustedProxies(in []netip.Prefix) error {
	proxies := make([]netip.Prefix, len(in))
	for i, p := range in {
		if !p.IsValid() {
			return fmt.Errorf("linkserver: Options.TrustedProxies[%d] is not a valid prefix", i)
		}
		proxies[i] = p.Masked()
	}
	s.trustedProxies.Store(&proxies)
	return nil
}

// proxies returns the trusted proxies in force (none for a Server not
// built by New).
func (s *Server) proxies() []netip.Prefix {
	if p := s.trustedProxies.Load(); p != nil {
		return *p
	}
	return nil
}
