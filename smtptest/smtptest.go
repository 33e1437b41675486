// Package smtptest owns SMTP peers for tests, the way net/http/httptest
// does for HTTP: a real go-smtp server on 127.0.0.1 that plays the next hop,
// records what it accepts, and can be told to refuse, fail, hang or drop
// the connection at a given step.
package smtptest

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// Message is one message the server accepted.
type Message struct {
	From string
	To   []string
	Data []byte
	TLS  bool // arrived over STARTTLS
}

// Behaviour tells the server how to answer. Zero value: accept everything.
type Behaviour struct {
	// RejectRcpt maps a recipient to the reply it gets.
	RejectRcpt map[string]*smtp.SMTPError
	// DataReply, when set, is the reply at the end of DATA.
	DataReply *smtp.SMTPError
	// DropAtDataEnd closes the connection after reading the message,
	// without a reply.
	DropAtDataEnd bool
	// HangAtDataEnd waits this long before answering the end of DATA.
	HangAtDataEnd time.Duration
}

// Option configures a Server before it starts.
type Option func(*smtp.Server)

// WithReadTimeout drops a client idle for d, as a real MTA does.
func WithReadTimeout(d time.Duration) Option { return func(s *smtp.Server) { s.ReadTimeout = d } }

// WithTLS offers STARTTLS with the given configuration.
func WithTLS(cfg *tls.Config) Option { return func(s *smtp.Server) { s.TLSConfig = cfg } }

// Server is a running next hop.
type Server struct {
	Addr string

	srv *smtp.Server
	mu  sync.Mutex
	bh  Behaviour
	got []Message
	// sessions counts sessions still open, to find leaks.
	sessions int
}

// NewServer starts a server on 127.0.0.1 and stops it when the test ends.
func NewServer(t testing.TB, b Behaviour, opts ...Option) *Server {
	t.Helper()
	s := &Server{bh: b}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		s.mu.Lock()
		s.sessions++
		s.mu.Unlock()
		return &session{s: s, conn: c}, nil
	}))
	srv.Domain = "next-hop.test"
	srv.EnableSMTPUTF8 = true
	srv.MaxMessageBytes = 1 << 40
	srv.ReadTimeout = time.Minute
	srv.WriteTimeout = time.Minute
	srv.ErrorLog = discardLog{}
	for _, o := range opts {
		o(srv)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("next hop listen: %v", err)
	}
	s.Addr = ln.Addr().String()
	s.srv = srv
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

// SetBehaviour changes the answers for later commands.
func (s *Server) SetBehaviour(b Behaviour) {
	s.mu.Lock()
	s.bh = b
	s.mu.Unlock()
}

// Messages returns what the server accepted so far.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.got...)
}

// OpenSessions is the number of connections not yet logged out.
func (s *Server) OpenSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions
}

func (s *Server) behaviour() Behaviour {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bh
}

type session struct {
	s    *Server
	conn *smtp.Conn
	from string
	to   []string
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	ss.from, ss.to = from, nil
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if e, ok := ss.s.behaviour().RejectRcpt[to]; ok {
		return e
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, r); err != nil {
		return err
	}
	b := ss.s.behaviour()
	if b.HangAtDataEnd > 0 {
		time.Sleep(b.HangAtDataEnd)
	}
	if b.DropAtDataEnd {
		ss.conn.Close()
		return errors.New("dropped")
	}
	if b.DataReply != nil {
		return b.DataReply
	}
	ss.s.mu.Lock()
	_, isTLS := ss.conn.TLSConnectionState()
	ss.s.got = append(ss.s.got, Message{From: ss.from, To: ss.to, Data: buf.Bytes(), TLS: isTLS})
	ss.s.mu.Unlock()
	return nil
}

func (ss *session) Reset() { ss.from, ss.to = "", nil }

func (ss *session) Logout() error {
	ss.s.mu.Lock()
	ss.s.sessions--
	ss.s.mu.Unlock()
	return nil
}

type discardLog struct{}

func (discardLog) Printf(string, ...any) {}
func (discardLog) Println(...any)        {}
