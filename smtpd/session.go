package smtpd

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/emersion/go-smtp"

	"github.com/attachgate/attachgate/pipeline"
	"github.com/attachgate/attachgate/relay"
	"github.com/attachgate/attachgate/smtpreply"
)

// session is one client connection. Its next-hop session is opened at the
// first MAIL and kept for the following transactions on this connection.
type session struct {
	srv     *Server
	conn    *smtp.Conn
	client  netip.Addr
	trusted bool
	// trustedBy is the trusted network that let this client relay.
	trustedBy netip.Prefix
	// m365: the client is in smtp.microsoft365.networks (m365By), so it
	// may relay the mail of the configured tenants only, which the
	// pipeline checks at the end of DATA.
	m365     bool
	m365By   netip.Prefix
	authUser string
	// onAuth runs once the client authenticated (the connection limiter
	// moves it into the reserved capacity).
	onAuth func()
	log    *slog.Logger

	// mu serialises the Session methods: with BDAT, go-smtp runs Data in
	// a goroutine of its own and, when the client aborts the chunks (RSET,
	// a new MAIL, QUIT, a dropped connection), calls Reset or Logout while
	// Data still winds down with ErrDataReset.
	mu sync.Mutex

	hop   relay.Session
	inTx  bool // the next hop has a MAIL open
	from  string
	utf8  bool
	rcpts []string
}

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return toReply(s.log, s.mail(from, opts))
}

func (s *session) mail(from string, opts *smtp.MailOptions) error {
	if !s.trusted && !s.m365 && s.authUser == "" {
		s.log.Warn("relay denied", "from", from)
		return replyRelayDenied
	}
	utf8Mail := opts != nil && opts.UTF8
	if !utf8Mail && !isASCII(from) {
		return replyNeedUTF8
	}
	if from != "" {
		if err := checkAddress(from, utf8Mail); err != nil {
			s.log.Warn("sender refused", "from", from, "reason", err)
			return replyBadSender
		}
	}
	if s.hop == nil {
		h, err := s.srv.opts.Hop.Open(s.srv.ctx)
		if err != nil {
			return &relay.Error{Op: "connect", Err: err}
		}
		s.hop = h
	}
	if err := s.hop.Mail(from, opts); err != nil {
		return s.hopFailed("MAIL", err)
	}
	s.inTx = true
	s.from, s.utf8, s.rcpts = from, utf8Mail, nil
	return nil
}

func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return toReply(s.log, s.rcpt(to, opts))
}

func (s *session) rcpt(to string, opts *smtp.RcptOptions) error {
	if !s.inTx {
		return replyNoMail
	}
	if len(s.rcpts) >= s.srv.opts.MaxRecipients {
		return replyTooManyRecipients
	}
	if !s.utf8 && !isASCII(to) {
		return replyNeedUTF8
	}
	// <Postmaster> without a domain is the one mailbox RFC 5321 lets a
	// recipient be (4.1.1.3); go-smtp passes it as "postmaster".
	if !strings.EqualFold(to, "postmaster") {
		if err := checkAddress(to, s.utf8); err != nil {
			s.log.Warn("recipient refused", "to", to, "reason", err)
			return replyBadRecipient
		}
	}
	if opts != nil && opts.OriginalRecipient != "" && !validORCPT(opts.OriginalRecipient) {
		s.log.Warn("recipient refused", "to", to, "reason", "malformed ORCPT")
		return replyBadORCPT
	}
	if err := s.hop.Rcpt(to, opts); err != nil {
		return s.hopFailed("RCPT", err)
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.inTx || len(s.rcpts) == 0 {
		return replyNoMail
	}
	env := pipeline.Envelope{
		From:       s.from,
		To:         s.rcpts,
		ClientAddr: s.client.String(),
		Helo:       s.conn.Hostname(),
		AuthUser:   s.authUser,
		TLS:        s.isTLS(),
		UTF8:       s.utf8,
	}
	if s.authUser == "" && s.trusted {
		env.TrustedNetwork = s.trustedBy.String()
	}
	if s.authUser == "" && !s.trusted && s.m365 {
		env.RequireTenant = s.srv.opts.Microsoft365Tenants
		env.Microsoft365Network = s.m365By.String()
	}
	tx := &txHop{Session: s.hop}
	reply, err := s.srv.opts.Pipeline.Process(s.srv.ctx, env, dataLimits{r}, tx)
	// Whatever happened, the next hop's transaction is over.
	s.inTx = false
	if relay.IsTransport(err) {
		// Anything but a reply of the next hop may have left it mid-DATA.
		s.dropHop()
	} else if !tx.data {
		// Refused or held before DATA (a policy verdict, the size
		// limit): the next hop still has MAIL and RCPT open. RSET, so
		// nothing is relayed and the connection can take the next MAIL.
		if rerr := s.hop.Reset(); rerr != nil {
			s.dropHop()
		}
	}
	if err != nil {
		return toReply(s.log, err)
	}
	return smtpreply.Accepted(reply)
}

// txHop notes whether the pipeline started DATA on the next hop.
type txHop struct {
	relay.Session
	data bool
}

func (t *txHop) Data() (relay.DataWriter, error) {
	t.data = true
	return t.Session.Data()
}

func (s *session) isTLS() bool {
	_, ok := s.conn.TLSConnectionState()
	return ok
}

// hopFailed passes the next hop's own reply through; a transport failure
// ends the next-hop session so the next MAIL dials afresh.
func (s *session) hopFailed(op string, err error) error {
	if !relay.IsTransport(err) {
		return err
	}
	s.dropHop()
	return &relay.Error{Op: op, Err: err}
}

func (s *session) dropHop() {
	if s.hop != nil {
		s.hop.Close()
		s.hop = nil
	}
	s.inTx = false
}

func (s *session) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inTx && s.hop != nil {
		if err := s.hop.Reset(); err != nil {
			s.dropHop()
		}
	}
	s.inTx = false
	s.from, s.utf8, s.rcpts = "", false, nil
}

func (s *session) Logout() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropHop()
	return nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// dataLimits turns the DATA reader's over-long line into our permanent
// reply, as go-smtp does for the size limit (552 5.3.4): retrying cannot
// help. go-smtp reads on to the end of DATA before that one reply is sent,
// so the session stays usable.
type dataLimits struct{ r io.Reader }

func (d dataLimits) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	switch {
	case err == nil || err == io.EOF:
	case errors.Is(err, smtp.ErrTooLongLine):
		err = replyLineTooLong
	case errors.Is(err, io.ErrUnexpectedEOF) || isNetError(err):
		// The client hung up (or its connection broke) before the final
		// dot: nothing of it may be relayed, and it is no internal error.
		err = &clientGone{err}
	}
	return n, err
}

// clientGone is a DATA stream that ended without its final dot.
type clientGone struct{ err error }

func (c *clientGone) Error() string { return "client went away during DATA: " + c.err.Error() }
func (c *clientGone) Unwrap() error { return c.err }

func isNetError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne)
}
