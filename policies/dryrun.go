package policies

import (
	"fmt"
	"io"
	"mime"
	"strings"
	"text/tabwriter"

	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/textproto"

	"github.com/attachgate/attachgate/mailpart"
)

// PartOf is the policy view of a part mailpart's walk found, size unknown.
// It follows p: a file inside TNEF whose name is final only once its body
// is read is decided with that name (Early defers, Decide looks again).
func PartOf(p *mailpart.Part) Part {
	return Part{Filename: p.Filename, ContentType: p.MediaType, Size: SizeUnknown,
		InContainer: p.Container != "",
		live: &livePart{
			name:        func() string { return p.Filename },
			contentType: func() string { return p.MediaType },
			provisional: func() bool { return p.Provisional },
		}}
}

// DryRunPart is one leaf part of a dry run.
type DryRunPart struct {
	Path        string // mailpart path, "1.2"
	Filename    string
	ContentType string
	Size        int64 // decoded bytes
	Attachment  bool  // false: body text or inline part, never subject to policies
	Decision    Decision
}

// DryRun is what the policies would do with one message.
type DryRun struct {
	Parts   []DryRunPart
	Verdict Verdict
	// PassThrough is why the message is relayed untouched (signed,
	// encrypted, report, auto-submitted, null sender; see
	// mailpart.Summary.PassThrough), "" when it is not.
	PassThrough string
	// Mail is the decision of the mail rules about the whole message.
	Mail Decision
}

// MessageOf is the message rules' view of a walked message.
func MessageOf(sum mailpart.Summary) Message {
	return Message{Signed: sum.Signed, Encrypted: sum.Encrypted}
}

// Test walks the message in r the way the gateway does and decides every
// attachment, with its size, as the pipeline would. Nothing is stored.
func (e *Engine) Test(r io.Reader, lim mailpart.Limits, env Envelope) (DryRun, error) {
	var out DryRun
	out.Verdict.Action = Link
	var attachments []Part
	sum, err := mailpart.Walk(r, lim, func(p *mailpart.Part, body io.Reader) error {
		n, err := io.Copy(io.Discard, body)
		if err != nil {
			return err
		}
		dp := DryRunPart{Path: p.Path, Filename: p.Filename, ContentType: p.MediaType, Size: n, Attachment: p.Attachment}
		if p.Attachment {
			pp := PartOf(p)
			pp.Size = n
			dp.Decision = e.Decide(env, pp)
			out.Verdict.Add(dp.Decision)
			attachments = append(attachments, pp)
		}
		out.Parts = append(out.Parts, dp)
		return nil
	})
	if err != nil {
		return DryRun{}, err
	}
	if out.PassThrough = sum.PassThrough(env.From == ""); out.PassThrough != "" {
		// Nothing of it is linked or rewritten; a message rule may
		// still refuse or hold a signed or encrypted message, and the
		// attachment rules' reject, quarantine and hold still apply.
		out.Verdict.Add(e.DecideMessage(env, MessageOf(sum)))
	}
	if out.Verdict.Action != Reject {
		out.Mail = e.DecideMail(env, MailOf(sum, attachments))
		out.Verdict.Add(out.Mail)
	}
	return out, nil
}

// Write prints the dry run as a table, one line per leaf part, then the
// message's verdict. holdFor is quarantine.hold_for, for the hold line.
func (d DryRun) Write(w io.Writer, holdFor string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PART\tFILE\tTYPE\tSIZE\tACTION\tRULE")
	for _, p := range d.Parts {
		name := p.Filename
		if name == "" {
			name = "-"
		}
		action, rule := "-", "(not an attachment)"
		if d.PassThrough != "" {
			rule = "(" + d.PassThrough + " mail, untouched)"
		}
		if p.Attachment {
			action, rule = string(p.Decision.Action), p.Decision.Rule
			if rule == "" {
				rule = "(default)"
			}
			if d.PassThrough != "" && !p.Decision.Action.MessageLevel() {
				action, rule = string(Keep), "("+d.PassThrough+" mail, untouched)"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", p.Path, sanitize(name), p.ContentType, p.Size, action, rule)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if d.Mail.Action.MessageLevel() {
		if _, err := fmt.Fprintf(w, "mail rule: %s by rule %s (the whole message)\n", d.Mail.Action, d.Mail.Rule); err != nil {
			return err
		}
	}
	var verdict string
	switch d.Verdict.Action {
	case Reject:
		verdict = fmt.Sprintf("reject by rule %s: the client gets 550 5.7.1 Message refused by policy %s", d.Verdict.Rule, d.Verdict.Rule)
	case Quarantine:
		verdict = fmt.Sprintf("quarantine by rule %s: held until an admin releases or deletes it", d.Verdict.Rule)
	case Approve:
		verdict = fmt.Sprintf("approve by rule %s: held until one of %s approves it (rejected after %s)",
			d.Verdict.Rule, strings.Join(d.Verdict.Approvers, ", "), d.Verdict.ApprovalTimeout)
	case Hold:
		if d.Verdict.HoldFor > 0 {
			holdFor = d.Verdict.HoldFor.String()
		}
		verdict = fmt.Sprintf("hold by rule %s: held, released after %s unless the sender or an admin cancels it", d.Verdict.Rule, holdFor)
	case Link:
		if d.PassThrough != "" {
			verdict = fmt.Sprintf("relay untouched (%s mail: nothing linked, no notice)", d.PassThrough)
			break
		}
		fallthrough
	default:
		linked, kept := 0, 0
		for _, p := range d.Parts {
			switch {
			case p.Attachment && p.Decision.Action == Keep:
				kept++
			case p.Attachment:
				linked++
			}
		}
		verdict = fmt.Sprintf("relay: %d attachment(s) linked, %d kept", linked, kept)
	}
	_, err := fmt.Fprintf(w, "message: %s\n", verdict)
	return err
}

// sanitize keeps control and bidi override characters of hostile file
// names off the terminal.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) {
			return '?'
		}
		return r
	}, s)
}

// MailOf is the mail rules' view of a walked message and its attachments
// (with their sizes where known).
func MailOf(sum mailpart.Summary, attachments []Part) Mail {
	return Mail{Subject: decodeWords(sum.Header.Get("Subject")), Header: wordDecodingHeader{sum.Header},
		Attachments: attachments}
}

// wordDecoder decodes RFC 2047 words in header values for the mail rules.
var wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

func decodeWords(s string) string {
	if dec, err := wordDecoder.DecodeHeader(s); err == nil {
		return dec
	}
	return s
}

// wordDecodingHeader is a header whose values read decoded.
type wordDecodingHeader struct{ h textproto.Header }

func (d wordDecodingHeader) Values(name string) []string {
	raw := d.h.Values(name)
	out := make([]string, len(raw))
	for i, v := range raw {
		out[i] = decodeWords(v)
	}
	return out
}
