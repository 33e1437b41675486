// Package notify owns the mail attachgate sends itself: verification codes,
// receipts, notices and delivery status notifications. It composes them
// (English, Japanese or both; text/plain and text/html; headers written by
// go-message, never by pasting user text), marks them so the gateway
// recognises its own mail, and sends them through the next hop from a
// durable, encrypted queue with retries, auditing every outcome. A notice
// that cannot be sent never blocks or fails the mail it is about.
package notify

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-message"
	gomail "github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
	"github.com/google/uuid"

	"github.com/attachgate/attachgate/notify/mailtmpl"
)

// Header names the gateway puts on its own mail.
const (
	HeaderAutoSubmitted = "Auto-Submitted"
	HeaderNotice        = "X-Attachgate-Notice"
)

// ComposerOptions configures a Composer.
type ComposerOptions struct {
	Templates *mailtmpl.Set
	// Hostname names this gateway: the domain of Message-IDs and the
	// Reporting-MTA of DSNs (smtp.hostname).
	Hostname string
	// From is the From header of every mail (notify.from), an RFC 5322
	// mailbox: "attachgate@corp.example" or "Attachgate <a@corp.example>".
	From string
	// Language is the default language: en, ja or both (links.language).
	Language string
	// MarkerKey signs the X-Attachgate-Notice header (see Marker).
	MarkerKey []byte
	// Now defaults to time.Now.
	Now func() time.Time
}

// Composer builds the gateway's mail. It is safe for concurrent use.
type Composer struct {
	tmpl     *mailtmpl.Set
	hostname string
	from     *mail.Address
	lang     string
	marker   *Marker
	now      func() time.Time
}

// NewComposer checks the options and returns a Composer.
func NewComposer(o ComposerOptions) (*Composer, error) {
	if o.Templates == nil {
		return nil, errors.New("notify: composer without templates")
	}
	if o.Hostname == "" || strings.ContainsAny(o.Hostname, " \t\r\n<>@") {
		return nil, fmt.Errorf("notify: bad host name %q", o.Hostname)
	}
	from, err := ParseFrom(o.From)
	if err != nil {
		return nil, fmt.Errorf("notify: from: %w", err)
	}
	switch o.Language {
	case "en", "ja", "both":
	case "":
		o.Language = "both"
	default:
		return nil, fmt.Errorf("notify: language %q (want en, ja or both)", o.Language)
	}
	if len(o.MarkerKey) < 16 {
		return nil, errors.New("notify: marker key shorter than 16 bytes")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Composer{tmpl: o.Templates, hostname: o.Hostname, from: from, lang: o.Language,
		marker: NewMarker(o.MarkerKey), now: o.Now}, nil
}

// ParseFrom parses a notify.from value: one mailbox, with or without a
// display name, whose address is valid as an SMTP path.
func ParseFrom(s string) (*mail.Address, error) {
	if strings.ContainsAny(s, "\r\n") {
		return nil, errors.New("contains a line break")
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not a mail address: %w", s, err)
	}
	if err := CheckAddress(a.Address); err != nil {
		return nil, err
	}
	return a, nil
}

// CheckAddress accepts an envelope address (RFC 5321 Mailbox, UTF-8
// allowed) that can be written into a header and an SMTP command as it is.
func CheckAddress(addr string) error {
	if addr == "" {
		return errors.New("empty address")
	}
	if len(addr) > 254 {
		return fmt.Errorf("address %.40q... longer than 254 bytes", addr)
	}
	if !utf8.ValidString(addr) {
		return fmt.Errorf("address %q is not valid UTF-8", addr)
	}
	for _, r := range addr {
		if unicode.IsControl(r) || unicode.IsSpace(r) || r == '<' || r == '>' {
			return fmt.Errorf("address %q contains %q", addr, r)
		}
	}
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return fmt.Errorf("address %q has no local part or domain", addr)
	}
	if _, err := mail.ParseAddress("<" + addr + ">"); err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	return nil
}

// Mail is one composed message, ready to queue. Its body is written when
// the Sender queues it; for a DSN that is when the original headers are
// read. The fields describe what was composed (the To header and the
// marker are built from To): read them, do not change them.
type Mail struct {
	ID        string   // queue id (uuid v7)
	Kind      string   // template kind ("code", "dsn", ...)
	MessageID string   // the Message-ID header, without angle brackets
	To        []string // envelope recipients, exactly as given by the caller
	// NullSender sends with MAIL FROM:<> whatever notify.return_path says
	// (DSNs, RFC 3464 §2).
	NullSender bool
	// About is the store message ID the mail is about (audit MessageID).
	About string
	// Expires is when the sender stops retrying (zero: the sender's
	// maximum age).
	Expires time.Time

	write func(w io.Writer) error
	used  bool
}

// WriteTo writes the message: CRLF line ends, no line over 998 bytes. A
// DSN's original headers are read from their reader now, so WriteTo works
// once.
func (m *Mail) WriteTo(w io.Writer) (int64, error) {
	if m.used {
		return 0, errors.New("notify: mail already written")
	}
	m.used = true
	cw := &countWriter{w: w}
	err := m.write(cw)
	return cw.n, err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Notice asks for one mail of a template kind.
type Notice struct {
	Kind string
	// To are the recipients, taken by the caller from a stored envelope
	// (never from a header or a form). The To header shows them.
	To []string
	// Lang is en, ja or both; "" takes the composer's default.
	Lang string
	// Data fills the templates (mailtmpl.CodeData for "code", ...).
	Data    any
	About   string
	Expires time.Time
}

// Compose renders a notice into a Mail.
func (c *Composer) Compose(n Notice) (*Mail, error) {
	if n.Kind == "dsn" {
		return nil, errors.New("notify: compose a DSN with Composer.DSN")
	}
	if err := checkRecipients(n.To); err != nil {
		return nil, err
	}
	lang := n.Lang
	if lang == "" {
		lang = c.lang
	}
	r, err := c.tmpl.Render(n.Kind, lang, n.Data)
	if err != nil {
		return nil, fmt.Errorf("notify: compose %s: %w", n.Kind, err)
	}
	m := c.newMail(n.Kind, n.To, n.About, n.Expires)
	h, err := c.header(m, r.Subject, lang)
	if err != nil {
		return nil, err
	}
	h.SetContentType("multipart/alternative", nil)
	m.write = func(w io.Writer) error {
		mw, err := message.CreateWriter(w, h.Header)
		if err != nil {
			return fmt.Errorf("notify: write header: %w", err)
		}
		if err := writeAlternatives(mw, r); err != nil {
			return err
		}
		return mw.Close()
	}
	return m, nil
}

func checkRecipients(to []string) error {
	if len(to) == 0 {
		return errors.New("notify: no recipients")
	}
	for _, a := range to {
		if err := CheckAddress(a); err != nil {
			return fmt.Errorf("notify: recipient: %w", err)
		}
	}
	return nil
}

func (c *Composer) newMail(kind string, to []string, about string, expires time.Time) *Mail {
	id := uuid.Must(uuid.NewV7()).String()
	return &Mail{ID: id, Kind: kind, MessageID: id + "@" + c.hostname,
		To: append([]string(nil), to...), About: about, Expires: expires}
}

// header builds the top-level header every gateway mail carries.
func (c *Composer) header(m *Mail, subject, lang string) (gomail.Header, error) {
	var h gomail.Header
	date := c.now()
	to := make([]*gomail.Address, len(m.To))
	for i, a := range m.To {
		to[i] = &gomail.Address{Address: a}
	}
	// Fields are written in the reverse order of Set, so set the last
	// first: Content-Type ... From, Date on top.
	h.Set("Content-Language", contentLanguage(lang))
	h.Set("X-Auto-Response-Suppress", "All")
	h.Set(HeaderNotice, c.marker.Value(m.Kind, m.MessageID, date, m.To))
	h.Set(HeaderAutoSubmitted, "auto-generated")
	h.Set("Subject", encodeText(subject))
	h.SetMessageID(m.MessageID)
	h.SetAddressList("To", to)
	h.SetAddressList("From", []*gomail.Address{c.from})
	h.SetDate(date)
	h.Set("MIME-Version", "1.0")
	// The writer refuses what it cannot write safely; find out now rather
	// than in the queue.
	if err := textproto.WriteHeader(io.Discard, h.Header.Header); err != nil {
		return h, fmt.Errorf("notify: header: %w", err)
	}
	return h, nil
}

// encodeText makes an unstructured header value (a Subject) of user text:
// control characters become spaces, and anything that is not plain
// printable ASCII — or that a decoder would take for an encoded word
// ("=?...?=" typed by a user) — is written as RFC 2047 B-encoded UTF-8
// words, so the text reads back exactly as given and never as a line
// break or a header of its own.
func encodeText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
	plain := !strings.Contains(s, "=?")
	for i := 0; i < len(s) && plain; i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			plain = false
		}
	}
	if plain {
		return s
	}
	// Each word carries at most 39 bytes (52 of base64, 64 with
	// "=?utf-8?b?" and "?="): within RFC 2047's 75 characters, and short
	// enough that "Subject: " and one word fold within 76.
	const chunk = 39
	var words []string
	for len(s) > 0 {
		n := min(len(s), chunk)
		for n < len(s) && !utf8.RuneStart(s[n]) {
			n--
		}
		words = append(words, "=?utf-8?b?"+base64.StdEncoding.EncodeToString([]byte(s[:n]))+"?=")
		s = s[n:]
	}
	return strings.Join(words, " ")
}

func contentLanguage(lang string) string {
	if lang == "both" {
		return "en, ja"
	}
	return lang
}

// writeAlternatives writes the text/plain and text/html parts of r into a
// multipart/alternative writer, both quoted-printable UTF-8 so every line
// stays short and 7-bit.
func writeAlternatives(mw *message.Writer, r mailtmpl.Rendered) error {
	for _, p := range []struct{ ctype, body string }{{"text/plain", r.Text}, {"text/html", r.HTML}} {
		var ph message.Header
		ph.SetContentType(p.ctype, map[string]string{"charset": "utf-8"})
		ph.Set("Content-Transfer-Encoding", "quoted-printable")
		pw, err := mw.CreatePart(ph)
		if err != nil {
			return fmt.Errorf("notify: %s part: %w", p.ctype, err)
		}
		if _, err := io.WriteString(pw, p.body); err != nil {
			return fmt.Errorf("notify: %s part: %w", p.ctype, err)
		}
		if err := pw.Close(); err != nil {
			return fmt.Errorf("notify: %s part: %w", p.ctype, err)
		}
	}
	return nil
}
