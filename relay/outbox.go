package relay

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/attachgate/attachgate/smtpreply"
	"github.com/google/uuid"
)

// Outbox is a next hop that writes every message into a directory as an
// .eml file, with the envelope in Return-Path and X-Envelope-To headers. It
// lets a newcomer see the gateway's output without running an MTA.
type Outbox struct {
	Dir string
}

// Open prepares the directory.
func (o *Outbox) Open(ctx context.Context) (Session, error) {
	if err := os.MkdirAll(o.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("outbox %s: %w", o.Dir, err)
	}
	return &outboxSession{dir: o.Dir}, nil
}

type outboxSession struct {
	dir   string
	from  string
	rcpts []string
}

func (s *outboxSession) Mail(from string, _ *smtp.MailOptions) error {
	s.from, s.rcpts = from, nil
	return nil
}

func (s *outboxSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *outboxSession) Reset() error {
	s.from, s.rcpts = "", nil
	return nil
}

func (s *outboxSession) Close() error { return nil }

// Noop has nothing to keep alive.
func (s *outboxSession) Noop() error { return nil }

// EightBitMIME is true: a file takes any bytes.
func (s *outboxSession) EightBitMIME() bool { return true }

func (s *outboxSession) Data() (DataWriter, error) {
	name := time.Now().UTC().Format("20060102T150405Z") + "-" + uuid.NewString() + ".eml"
	f, err := os.CreateTemp(s.dir, ".tmp-*.eml")
	if err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	envelope := fmt.Sprintf("Return-Path: <%s>\r\n%s", s.from, foldAddressList("X-Envelope-To", s.rcpts))
	if _, err := f.WriteString(envelope); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("outbox: %w", err)
	}
	return &outboxData{f: f, final: filepath.Join(s.dir, name)}, nil
}

type outboxData struct {
	f     *os.File
	final string
	err   error
}

func (d *outboxData) Write(p []byte) (int, error) {
	n, err := d.f.Write(p)
	if err != nil {
		d.err = err
	}
	return n, err
}

// Close makes the file durable before answering 250, as an MTA would.
func (d *outboxData) Close() (string, error) {
	fail := func(err error) (string, error) {
		d.f.Close()
		os.Remove(d.f.Name())
		return "", smtpreply.OutboxFailed
	}
	if d.err != nil {
		return fail(d.err)
	}
	if err := d.f.Sync(); err != nil {
		return fail(err)
	}
	if err := d.f.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(d.f.Name(), d.final); err != nil {
		return fail(err)
	}
	return "2.0.0 Ok: queued as " + filepath.Base(d.final), nil
}

// foldAddressList writes a header field listing addrs, one address per
// line after the first (RFC 5322 folding: a continuation line starts with
// whitespace), so no line grows with the number of recipients: a line is
// as long as one address (RFC 5321 4.5.3.1.3 caps a path at 256 octets).
func foldAddressList(name string, addrs []string) string {
	var b strings.Builder
	b.WriteString(name)
	b.WriteString(":")
	for i, a := range addrs {
		if i > 0 {
			b.WriteString(",\r\n")
		}
		b.WriteString(" ")
		b.WriteString(a)
	}
	b.WriteString("\r\n")
	return b.String()
}
