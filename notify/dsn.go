package notify

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-smtp"

	"github.com/attachgate/attachgate/notify/mailtmpl"
)

// DSN actions (RFC 3464 §2.3.3) the gateway reports.
const (
	ActionFailed  = "failed"
	ActionDelayed = "delayed"
)

// ErrNullSender: mail with a null reverse-path never gets a DSN (RFC 3464
// §2, RFC 5321 §4.5.5), so bounces cannot loop.
var ErrNullSender = errors.New("notify: no DSN for mail with a null reverse-path")

// DSN asks for a delivery status notification (RFC 3464) about a message
// the gateway accepted.
type DSN struct {
	// To is the original envelope sender (MAIL FROM) from the stored
	// envelope; "" (null reverse-path) gives ErrNullSender.
	To          string
	Lang        string // en, ja or both; "" = the composer's default
	About       string // store message ID
	Subject     string // the original subject, decoded, for the human part
	ArrivalDate time.Time
	Reason      string // in words, for the human part
	Recipients  []DSNRecipient
	// RetryUntil is when delayed recipients are given up.
	RetryUntil time.Time
	// OriginalHeaders reads the original message (or only its header);
	// its header section is copied into the text/rfc822-headers part,
	// line by line, when the Sender queues the DSN. nil: no such part.
	OriginalHeaders io.Reader
	Expires         time.Time
}

// DSNRecipient is one recipient's outcome.
type DSNRecipient struct {
	Address string // the envelope recipient (Final-Recipient)
	// OriginalRecipient is the decoded address of the RCPT's ORCPT
	// parameter (RFC 3461), "" when the client gave none.
	OriginalRecipient string
	Action            string // ActionFailed or ActionDelayed
	Status            string // x.y.z; "" = 5.0.0 (failed) or 4.0.0 (delayed)
	// Diagnostic is the next hop's reply, "550 5.1.1 No such user";
	// "" when the next hop never answered for this recipient.
	Diagnostic  string
	LastAttempt time.Time
}

// RecipientFromReply turns a next hop's refusal of addr into a DSN
// recipient: its status and reply, action failed for a 5xx and delayed
// otherwise. A non-SMTP error (the next hop unreachable) is 4.4.1.
func RecipientFromReply(addr, orcpt string, err error, at time.Time) DSNRecipient {
	r := DSNRecipient{Address: addr, OriginalRecipient: orcpt, LastAttempt: at,
		Action: ActionDelayed, Status: "4.4.1"}
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		return r // the next hop never answered
	}
	class := se.Code / 100
	switch class {
	case 5:
		r.Action = ActionFailed
	case 4:
	default:
		class = 4 // not a refusal code: treat as temporary
	}
	r.Status = strconv.Itoa(class) + ".0.0"
	r.Diagnostic = strconv.Itoa(se.Code)
	if ec := se.EnhancedCode; ec[0] == class && ec[1] >= 0 && ec[2] >= 0 {
		r.Status = fmt.Sprintf("%d.%d.%d", ec[0], ec[1], ec[2])
		r.Diagnostic += " " + r.Status
	}
	r.Diagnostic += " " + se.Message
	return r
}

var statusRE = regexp.MustCompile(`^[245]\.[0-9]{1,3}\.[0-9]{1,3}$`)

// DSN composes a multipart/report; report-type=delivery-status to the
// original sender: a human-readable part (text and HTML, en/ja), the
// machine-readable message/delivery-status and, when OriginalHeaders is
// set, a text/rfc822-headers part. It is sent with MAIL FROM:<>.
func (c *Composer) DSN(d DSN) (*Mail, error) {
	if d.To == "" {
		return nil, ErrNullSender
	}
	if err := checkRecipients([]string{d.To}); err != nil {
		return nil, err
	}
	if len(d.Recipients) == 0 {
		return nil, errors.New("notify: DSN without recipients")
	}
	data := mailtmpl.DSNData{Subject: d.Subject, ArrivalDate: d.ArrivalDate, Reason: d.Reason,
		ReportingMTA: c.hostname, RetryUntil: d.RetryUntil}
	rcpts := make([]DSNRecipient, len(d.Recipients))
	for i, r := range d.Recipients {
		if err := CheckAddress(r.Address); err != nil {
			return nil, fmt.Errorf("notify: DSN recipient: %w", err)
		}
		if r.OriginalRecipient != "" {
			if err := CheckAddress(r.OriginalRecipient); err != nil {
				return nil, fmt.Errorf("notify: DSN original recipient: %w", err)
			}
		}
		switch r.Action {
		case ActionFailed:
			if r.Status == "" {
				r.Status = "5.0.0"
			}
		case ActionDelayed:
			if r.Status == "" {
				r.Status = "4.0.0"
			}
			if r.Status[0] != '4' {
				return nil, fmt.Errorf("notify: DSN recipient %s: delayed with permanent status %s", r.Address, r.Status)
			}
		default:
			return nil, fmt.Errorf("notify: DSN recipient %s: action %q (want failed or delayed)", r.Address, r.Action)
		}
		if !statusRE.MatchString(r.Status) {
			return nil, fmt.Errorf("notify: DSN recipient %s: status %q is not x.y.z", r.Address, r.Status)
		}
		r.Diagnostic = sevenBitLine(r.Diagnostic)
		rcpts[i] = r
		dr := mailtmpl.DSNRecipient{Address: r.Address, Status: r.Status, Diagnostic: r.Diagnostic}
		if r.Action == ActionFailed {
			data.Failed = append(data.Failed, dr)
		} else {
			data.Delayed = append(data.Delayed, dr)
		}
	}
	lang := d.Lang
	if lang == "" {
		lang = c.lang
	}
	rendered, err := c.tmpl.Render("dsn", lang, data)
	if err != nil {
		return nil, fmt.Errorf("notify: compose DSN: %w", err)
	}
	m := c.newMail("dsn", []string{d.To}, d.About, d.Expires)
	m.NullSender = true
	h, err := c.header(m, rendered.Subject, lang)
	if err != nil {
		return nil, err
	}
	h.SetContentType("multipart/report", map[string]string{"report-type": "delivery-status"})
	status, err := c.deliveryStatus(d.ArrivalDate, d.RetryUntil, rcpts)
	if err != nil {
		return nil, err
	}
	orig := d.OriginalHeaders
	m.write = func(w io.Writer) error {
		mw, err := message.CreateWriter(w, h.Header)
		if err != nil {
			return fmt.Errorf("notify: write DSN header: %w", err)
		}
		var ah message.Header
		ah.SetContentType("multipart/alternative", nil)
		aw, err := mw.CreatePart(ah)
		if err != nil {
			return fmt.Errorf("notify: DSN human part: %w", err)
		}
		if err := writeAlternatives(aw, rendered); err != nil {
			return err
		}
		if err := aw.Close(); err != nil {
			return fmt.Errorf("notify: DSN human part: %w", err)
		}

		var sh message.Header
		sh.SetContentType("message/delivery-status", nil)
		sh.Set("Content-Transfer-Encoding", "7bit")
		sw, err := mw.CreatePart(sh)
		if err != nil {
			return fmt.Errorf("notify: DSN status part: %w", err)
		}
		if _, err := io.WriteString(sw, status); err != nil {
			return fmt.Errorf("notify: DSN status part: %w", err)
		}
		if err := sw.Close(); err != nil {
			return fmt.Errorf("notify: DSN status part: %w", err)
		}

		if orig != nil {
			var oh message.Header
			oh.SetContentType("text/rfc822-headers", map[string]string{"charset": "utf-8"})
			oh.Set("Content-Transfer-Encoding", "quoted-printable")
			ow, err := mw.CreatePart(oh)
			if err != nil {
				return fmt.Errorf("notify: DSN headers part: %w", err)
			}
			if err := copyHeaderSection(ow, orig); err != nil {
				return fmt.Errorf("notify: DSN headers part: %w", err)
			}
			if err := ow.Close(); err != nil {
				return fmt.Errorf("notify: DSN headers part: %w", err)
			}
		}
		return mw.Close()
	}
	return m, nil
}

// deliveryStatus renders the message/delivery-status body: the
// per-message fields, then one block per recipient (RFC 3464 §2.2, §2.3),
// written by go-message's header writer (folded, CRLF, no line breaks from
// values).
func (c *Composer) deliveryStatus(arrival, retryUntil time.Time, rcpts []DSNRecipient) (string, error) {
	var b strings.Builder
	fields := [][2]string{{"Reporting-MTA", "dns; " + c.hostname}}
	if !arrival.IsZero() {
		fields = append(fields, [2]string{"Arrival-Date", arrival.Format(time.RFC1123Z)})
	}
	if err := writeFields(&b, fields); err != nil {
		return "", err
	}
	for _, r := range rcpts {
		var f [][2]string
		if r.OriginalRecipient != "" {
			f = append(f, [2]string{"Original-Recipient", addressField(r.OriginalRecipient)})
		}
		f = append(f, [2]string{"Final-Recipient", addressField(r.Address)},
			[2]string{"Action", r.Action}, [2]string{"Status", r.Status})
		if r.Diagnostic != "" {
			f = append(f, [2]string{"Diagnostic-Code", "smtp; " + r.Diagnostic})
		}
		if !r.LastAttempt.IsZero() {
			f = append(f, [2]string{"Last-Attempt-Date", r.LastAttempt.Format(time.RFC1123Z)})
		}
		if r.Action == ActionDelayed && !retryUntil.IsZero() {
			f = append(f, [2]string{"Will-Retry-Until", retryUntil.Format(time.RFC1123Z)})
		}
		if err := writeFields(&b, f); err != nil {
			return "", err
		}
	}
	return b.String(), nil
}

// writeFields writes one block of fields in order, then the empty line.
func writeFields(w io.Writer, fields [][2]string) error {
	var h textproto.Header
	// textproto.Header writes the field added last first.
	for i := len(fields) - 1; i >= 0; i-- {
		h.Add(fields[i][0], fields[i][1])
	}
	if err := textproto.WriteHeader(w, h); err != nil {
		return fmt.Errorf("notify: delivery-status fields: %w", err)
	}
	return nil
}

// addressField is "rfc822; addr" for an ASCII address and, for an
// internationalised one, "utf-8; " with RFC 6533's utf-8-addr-xtext, so the
// delivery-status part stays 7-bit.
func addressField(addr string) string {
	ascii := true
	for i := 0; i < len(addr); i++ {
		if addr[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		return "rfc822; " + addr
	}
	var b strings.Builder
	for _, r := range addr {
		if r < 0x21 || r > 0x7e || r == '\\' || r == '+' || r == '=' {
			fmt.Fprintf(&b, `\x{%X}`, r)
			continue
		}
		b.WriteRune(r)
	}
	return "utf-8; " + b.String()
}

// sevenBitLine makes a reply text one 7-bit line: control characters
// (multi-line replies) become spaces, other bytes outside ASCII '?'.
func sevenBitLine(s string) string {
	var b strings.Builder
	space := false
	for _, r := range s {
		switch {
		case r < 0x20 || r == 0x7f:
			if !space {
				b.WriteByte(' ')
			}
			space = true
			continue
		case r >= 0x80:
			b.WriteByte('?')
		default:
			b.WriteRune(r)
		}
		space = r == ' '
	}
	return strings.TrimSpace(b.String())
}

// maxCopiedHeader bounds the header section copied into a DSN.
const maxCopiedHeader = 1 << 20

// copyHeaderSection copies lines from r up to the empty line that ends the
// header section (or EOF), each line ended by CRLF and bare CRs made
// spaces, without reading the body. The quoted-printable writer below keeps every output line short.
func copyHeaderSection(w io.Writer, r io.Reader) error {
	br := bufio.NewReaderSize(r, 4096)
	var total int
	startOfLine := true
	// pendingCR: the last chunk of an over-long line ended in CR, which is
	// a line end if LF comes next and a space otherwise.
	pendingCR := false
	write := func(b []byte) error {
		_, err := w.Write(bytes.ReplaceAll(b, []byte("\r"), []byte(" ")))
		return err
	}
	for total < maxCopiedHeader {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			total += len(chunk)
			complete := chunk[len(chunk)-1] == '\n'
			line := chunk
			if complete {
				line = line[:len(line)-1]
				switch {
				case len(line) > 0 && line[len(line)-1] == '\r':
					line = line[:len(line)-1]
				case len(line) == 0 && pendingCR:
					pendingCR = false // CR LF split between two reads
				}
			}
			if pendingCR {
				if werr := write([]byte(" ")); werr != nil {
					return werr
				}
				pendingCR = false
			}
			if startOfLine && complete && len(line) == 0 {
				return nil // end of the header section
			}
			if !complete && line[len(line)-1] == '\r' {
				pendingCR = true
				line = line[:len(line)-1]
			}
			if werr := write(line); werr != nil {
				return werr
			}
			if complete {
				if _, werr := io.WriteString(w, "\r\n"); werr != nil {
					return werr
				}
			}
			startOfLine = complete
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if pendingCR {
				if werr := write([]byte(" ")); werr != nil {
					return werr
				}
			}
			if !startOfLine {
				_, err = io.WriteString(w, "\r\n")
				return err
			}
			return nil
		case err != nil:
			return err
		}
	}
	_, err := io.WriteString(w, "\r\n")
	return err
}
