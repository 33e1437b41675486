// Package relay owns the way out to the next hop: an SMTP client session
// that carries MAIL, every RCPT and the message through so that each of the
// next hop's verdicts can be handed back to our client, and an outbox
// directory that stands in for an MTA in demos.
package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/attachgate/attachgate/smtpreply"
)

// Hop opens sessions to the next hop.
type Hop interface {
	Open(ctx context.Context) (Session, error)
}

// Session is one connection to the next hop. Errors the next hop answered
// are *smtp.SMTPError and are meant for our own client; any other error is
// a transport failure (temporary for the client).
type Session interface {
	Mail(from string, opts *smtp.MailOptions) error
	Rcpt(to string, opts *smtp.RcptOptions) error
	// Data starts the message; closing the writer returns the next hop's
	// final reply text or its refusal.
	Data() (DataWriter, error)
	Reset() error
	// Noop keeps an idle session alive.
	Noop() error
	// EightBitMIME tells whether the message of this transaction may be
	// sent as 8bit: the next hop offers 8BITMIME and MAIL declared
	// BODY=8BITMIME (RFC 6152).
	EightBitMIME() bool
	// Close ends the session (QUIT where possible) and releases the
	// connection. It is safe to call more than once.
	Close() error
}

// DataWriter takes the message and, on Close, returns the final reply.
type DataWriter interface {
	io.Writer
	Close() (reply string, err error)
}

// TLS modes for the next hop.
const (
	TLSNone          = "none"
	TLSOpportunistic = "opportunistic" // STARTTLS when offered, certificate verified
	TLSRequired      = "required"
)

// New returns the Hop for a next_hop.address: "outbox:DIR" or "host:port".
func New(address, heloName string, timeout time.Duration, tlsMode string, tlsConfig *tls.Config) Hop {
	if dir, ok := strings.CutPrefix(address, "outbox:"); ok {
		return &Outbox{Dir: dir}
	}
	return &SMTPHop{Address: address, HeloName: heloName, Timeout: timeout, TLS: tlsMode, TLSConfig: tlsConfig}
}

// SMTPHop dials an SMTP server.
type SMTPHop struct {
	Address  string
	HeloName string
	Timeout  time.Duration // dial and per-command timeout
	TLS      string        // TLSNone, TLSOpportunistic or TLSRequired; "" = none
	// TLSConfig verifies the next hop; ServerName defaults to the host of
	// Address.
	TLSConfig *tls.Config
}

var errNoSTARTTLS = errors.New("next hop does not offer STARTTLS")

// Open dials the next hop, starts TLS as configured and says EHLO, so a
// dead or refusing next hop shows at MAIL time, not later.
func (h *SMTPHop) Open(ctx context.Context) (Session, error) {
	mode := h.TLS
	if mode == "" {
		mode = TLSNone
	}
	c, err := h.open(ctx, mode != TLSNone)
	if errors.Is(err, errNoSTARTTLS) && mode == TLSOpportunistic {
		c, err = h.open(ctx, false)
	}
	if err != nil {
		return nil, err
	}
	return &smtpSession{c: c}, nil
}

func (h *SMTPHop) open(ctx context.Context, startTLS bool) (*smtp.Client, error) {
	d := net.Dialer{Timeout: h.Timeout}
	raw, err := d.DialContext(ctx, "tcp", h.Address)
	if err != nil {
		return nil, fmt.Errorf("dial next hop %s: %w", h.Address, err)
	}
	// go-smtp arms its own 5-minute deadlines before we can set the
	// client's timeouts; cap every deadline at ours.
	conn := &cappedConn{Conn: raw, max: h.Timeout}
	var c *smtp.Client
	if startTLS {
		c, err = smtp.NewClientStartTLS(conn, h.tlsConfig())
		if err != nil {
			raw.Close()
			if strings.Contains(err.Error(), "support STARTTLS") {
				return nil, errNoSTARTTLS
			}
			return nil, fmt.Errorf("STARTTLS with next hop %s: %w", h.Address, err)
		}
	} else {
		c = smtp.NewClient(conn)
	}
	c.CommandTimeout = h.Timeout
	c.SubmissionTimeout = h.Timeout
	// After STARTTLS this is the EHLO inside TLS, where the handshake and
	// the certificate check happen.
	if err := c.Hello(h.HeloName); err != nil {
		c.Close()
		return nil, fmt.Errorf("greet next hop %s: %w", h.Address, err)
	}
	return c, nil
}

func (h *SMTPHop) tlsConfig() *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if h.TLSConfig != nil {
		cfg = h.TLSConfig.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(h.Address)
	}
	return cfg
}

// cappedConn bounds every deadline set on it to max from now.
type cappedConn struct {
	net.Conn
	max time.Duration
}

func (c *cappedConn) cap(t time.Time) time.Time {
	limit := time.Now().Add(c.max)
	if t.IsZero() || t.After(limit) {
		// Zero means "no deadline" to go-smtp between commands; keep it
		// so an idle session is not cut.
		if t.IsZero() {
			return t
		}
		return limit
	}
	return t
}

func (c *cappedConn) SetDeadline(t time.Time) error      { return c.Conn.SetDeadline(c.cap(t)) }
func (c *cappedConn) SetReadDeadline(t time.Time) error  { return c.Conn.SetReadDeadline(c.cap(t)) }
func (c *cappedConn) SetWriteDeadline(t time.Time) error { return c.Conn.SetWriteDeadline(c.cap(t)) }

type smtpSession struct {
	c      *smtp.Client
	broken bool // a transport error happened: QUIT would only wait
	closed bool
	// inData: DATA was started and its end not sent. Any command now
	// (QUIT included) would first end the message with "." (net/textproto
	// closes an open dot writer before the next command) and the next hop
	// would accept a cut message; Close drops the connection instead.
	inData bool
	// eightBit: the open transaction declared BODY=8BITMIME.
	eightBit bool
}

// note remembers transport failures; replies from the hop leave it usable.
func (s *smtpSession) note(err error) error {
	var se *smtp.SMTPError
	if err != nil && !errors.As(err, &se) {
		s.broken = true
	}
	return err
}

// Mail passes MAIL with the client's parameters: SIZE, SMTPUTF8, and the
// DSN parameters RET and ENVID when the next hop offers DSN (RFC 3461).
// BODY=8BITMIME goes on only when the client declared it (or SMTPUTF8,
// whose headers are 8-bit), or opts is nil (a body of unknown content).
func (s *smtpSession) Mail(from string, opts *smtp.MailOptions) error {
	if opts != nil && opts.UTF8 {
		if ok, _ := s.c.Extension("SMTPUTF8"); !ok {
			return smtpreply.NextHopNoUTF8
		}
		if opts.Body == "" {
			o := *opts
			o.Body = smtp.Body8BitMIME
			opts = &o
		}
	}
	ext, _ := s.c.Extension("8BITMIME")
	s.eightBit = ext && (opts == nil || opts.Body == smtp.Body8BitMIME)
	return s.note(s.c.Mail(from, opts))
}

func (s *smtpSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	return s.note(s.c.Rcpt(to, opts))
}

func (s *smtpSession) Data() (DataWriter, error) {
	w, err := s.c.Data()
	if err != nil {
		return nil, s.note(err)
	}
	s.inData = true
	return &smtpData{s: s, cmd: w}, nil
}

type smtpData struct {
	s   *smtpSession
	cmd *smtp.DataCommand
}

func (d *smtpData) Write(p []byte) (int, error) {
	n, err := d.cmd.Write(p)
	return n, d.s.note(err)
}

func (d *smtpData) Close() (string, error) {
	d.s.inData = false
	resp, err := d.cmd.CloseWithResponse()
	if err != nil {
		return "", d.s.note(err)
	}
	return resp.StatusText, nil
}

func (s *smtpSession) Reset() error { return s.note(s.c.Reset()) }

func (s *smtpSession) Noop() error { return s.note(s.c.Noop()) }

func (s *smtpSession) EightBitMIME() bool { return s.eightBit }

func (s *smtpSession) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	if !s.broken && !s.inData {
		// QUIT is a courtesy: bounded, and the connection is closed
		// whatever it answers.
		s.c.CommandTimeout = quitTimeout
		if s.c.Quit() == nil {
			return nil
		}
	}
	return s.c.Close()
}

const quitTimeout = 10 * time.Second
