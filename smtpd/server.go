// Package smtpd owns the SMTP side of attachgate: sessions, who may relay,
// passing MAIL and every RCPT live to the next hop so the client hears the
// next hop's own verdicts, and handing each message body to package
// pipeline, which stores, rewrites and relays it. Every reply leaves
// through one mapping (replies.go), so internal errors never reach a
// client verbatim.
package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/pipeline"
	"github.com/attachgate/attachgate/relay"
	"github.com/attachgate/attachgate/users"
)

// Options configures the SMTP server.
type Options struct {
	Hostname        string
	MaxMessageBytes int64
	MaxRecipients   int
	Trusted         []netip.Prefix
	// Microsoft365Networks are the addresses Microsoft 365 sends from (for
	// every customer). A client there, neither trusted nor authenticated,
	// may give MAIL and RCPT; its message is relayed only when the
	// pipeline finds one of Microsoft365Tenants (lower-case GUIDs) in its
	// X-MS-Exchange-CrossTenant-Id (pipeline.Envelope.RequireTenant).
	Microsoft365Networks []netip.Prefix
	Microsoft365Tenants  []string
	ReadTimeout          time.Duration
	WriteTimeout         time.Duration
	MaxLineLength        int
	// MaxConnections and MaxConnectionsPerClient turn away connections
	// beyond them with 421 4.7.0; 0 means no limit.
	MaxConnections          int
	MaxConnectionsPerClient int
	// ReservedConnections of MaxConnections are kept for clients in a
	// trusted network or authenticated; the others share the rest.
	ReservedConnections int
	// UntrustedIdleTimeout caps ReadTimeout for clients neither trusted
	// nor authenticated; 0: ReadTimeout applies to everyone.
	UntrustedIdleTimeout time.Duration
	// TLSConfig enables STARTTLS (and is used by ServeTLS); nil: no TLS.
	TLSConfig *tls.Config
	// Users enables AUTH (offered only over TLS); nil: no AUTH.
	Users      *users.DB
	AllowLogin bool
	// AuthMaxFailures failed AUTH attempts per client address within
	// AuthFailureWindow lock the address out of AUTH for the window.
	AuthMaxFailures   int
	AuthFailureWindow time.Duration
	// AuthConcurrency bounds the password checks in progress across all
	// sessions; beyond it AUTH gets 454 4.7.0. 0 means 2.
	AuthConcurrency int
	Hop             relay.Hop
	Pipeline        *pipeline.Pipeline
	Audit           audit.Recorder
	Logger          *slog.Logger
}

// Server is the SMTP listener.
type Server struct {
	opts Options
	smtp *smtp.Server
	log  *slog.Logger

	authFailures *failureLimiter
	hashSlots    chan struct{} // one token per password check in progress
	conns        *connLimiter
	// ctx ends when the server shuts down, cancelling next-hop dials.
	ctx    context.Context
	cancel context.CancelFunc
}

// readBufferSize is each SMTP connection's read buffer (64 KiB: at the
// default smtp.max_connections of 200, 12.5 MiB in all). A command line
// over smtp.max_line_length may take up to that length plus this much
// more before it is refused (go-smtp commandLineLimit), so a client
// sending such lines holds at most about twice this while it lasts.
const readBufferSize = 64 << 10

// New builds a server; Serve starts it.
func New(o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Audit == nil && o.Pipeline != nil {
		o.Audit = o.Pipeline.Audit
	}
	if o.AuthMaxFailures <= 0 {
		o.AuthMaxFailures = 5
	}
	if o.AuthFailureWindow <= 0 {
		o.AuthFailureWindow = 15 * time.Minute
	}
	if o.AuthConcurrency <= 0 {
		o.AuthConcurrency = 2
	}
	s := &Server{opts: o, log: o.Logger.With("component", "smtpd"),
		authFailures: newFailureLimiter(o.AuthMaxFailures, o.AuthFailureWindow),
		hashSlots:    make(chan struct{}, o.AuthConcurrency)}
	s.authFailures.record = s.recordAudit
	s.conns = newConnLimiter(o.MaxConnections, o.MaxConnectionsPerClient, o.ReservedConnections,
		func(a netip.Addr) bool { _, ok := s.trustedNetwork(a); return ok }, o.UntrustedIdleTimeout)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Domain = o.Hostname
	srv.MaxMessageBytes = o.MaxMessageBytes
	srv.MaxRecipients = o.MaxRecipients
	srv.ReadTimeout = o.ReadTimeout
	srv.WriteTimeout = o.WriteTimeout
	srv.EnableSMTPUTF8 = true
	// DSN parameters go to the next hop as given (relay.Session.Mail/Rcpt).
	srv.EnableDSN = true
	if o.MaxLineLength > 0 {
		srv.MaxLineLength = o.MaxLineLength
	}
	// DATA arrives in 64 KiB reads, not net/textproto's 4 KiB: a 1 MiB
	// attachment costs 22 read calls instead of 350.
	srv.ReadBufferSize = readBufferSize
	srv.TLSConfig = o.TLSConfig
	srv.AllowInsecureAuth = false
	srv.ErrorLog = slogErrorLog{s.log}
	s.smtp = srv
	return s
}

// Serve accepts connections on l until Shutdown.
func (s *Server) Serve(l net.Listener) error {
	err := s.smtp.Serve(s.conns.wrap(l))
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// ServeTLS accepts implicit-TLS connections (port 465) on l.
func (s *Server) ServeTLS(l net.Listener) error {
	if s.opts.TLSConfig == nil {
		return errors.New("smtpd: ServeTLS without TLSConfig")
	}
	err := s.smtp.Serve(tls.NewListener(s.conns.wrap(l), s.opts.TLSConfig))
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting connections and waits for sessions to end until
// ctx is done; then it closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.smtp.Shutdown(ctx)
	if err != nil {
		s.cancel()
		s.smtp.Close()
	}
	// Sessions are over: write the aggregated AUTH refusals still pending.
	s.authFailures.close()
	return err
}

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	remote := addrOf(c.Conn().RemoteAddr())
	sess := &session{
		srv:    s,
		conn:   c,
		client: remote,
		log:    s.log.With("client", remote.String()),
	}
	sess.trustedBy, sess.trusted = s.trustedNetwork(remote)
	if !sess.trusted && len(s.opts.Microsoft365Tenants) > 0 {
		for _, p := range s.opts.Microsoft365Networks {
			if p.Contains(remote) {
				sess.m365By, sess.m365 = p, true
				break
			}
		}
	}
	if cc := countedConnOf(c.Conn()); cc != nil {
		sess.onAuth = cc.promote
	}
	return sess, nil
}

// trustedNetwork returns the first smtp.trusted_networks entry holding a;
// it is recorded with every message relayed on that ground.
func (s *Server) trustedNetwork(a netip.Addr) (netip.Prefix, bool) {
	for _, p := range s.opts.Trusted {
		if p.Contains(a) {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// countedConnOf finds our countedConn under an implicit-TLS connection.
func countedConnOf(c net.Conn) *countedConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	cc, _ := c.(*countedConn)
	return cc
}

func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ta.IP); ok {
			return ip.Unmap()
		}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// slogErrorLog routes go-smtp's own log lines into slog.
type slogErrorLog struct{ log *slog.Logger }

func (l slogErrorLog) Printf(format string, v ...any) {
	l.log.Warn("smtp server", "detail", fmt.Sprintf(format, v...))
}

func (l slogErrorLog) Println(v ...any) {
	l.log.Warn("smtp server", "detail", fmt.Sprint(v...))
}
