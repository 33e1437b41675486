package smtpd

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/attachgate/attachgate/smtptest"
)

// TestAttachedSignedFileDoesNotSealTheMessage: a plain multipart/mixed
// mail that merely carries a signed or encrypted file among its
// attachments (an Italian e-invoice fattura.xml.p7m, a forwarded
// multipart/signed part, an encrypted .p7m someone passes on) is not
// "signed or encrypted mail": linking its other files breaks no
// signature, as long as a signed entity itself is left byte for byte. Today
// any such part anywhere seals the whole message, so a sender who adds
// one .p7m file takes every other attachment past the gateway unlinked
// (and a `signed: true` / `encrypted: true` rule would quarantine or
// reject every mail with an e-invoice attached).
func TestAttachedSignedFileDoesNotSealTheMessage(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	gw := startGateway(t, hop.Addr)
	pdf := "JVBERi0xLjQKJcOkw7zDtsOfCjIgMCBvYmoKPDwvTGVuZ3RoIDMgMCBSL0ZpbHRlci9GbGF0ZURlY29kZT4+CnN0cmVhbQp4nA==\r\n"
	sealed := map[string]string{
		"e-invoice .p7m (octet-stream)": "Content-Type: application/octet-stream; name=\"IT01234567890_00001.xml.p7m\"\r\n" +
			"Content-Disposition: attachment; filename=\"IT01234567890_00001.xml.p7m\"\r\nContent-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHAqCAMIACAQEx\r\n",
		"pkcs7-mime attachment": "Content-Type: application/pkcs7-mime; smime-type=signed-data; name=\"invoice.xml.p7m\"\r\n" +
			"Content-Disposition: attachment; filename=\"invoice.xml.p7m\"\r\nContent-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHAqCAMIACAQEx\r\n",
		"forwarded multipart/signed part": "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=\"sig\"\r\n\r\n" +
			"--sig\r\nContent-Type: text/plain\r\n\r\nsigned text\r\n" +
			"--sig\r\nContent-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\nContent-Disposition: attachment; filename=\"smime.p7s\"\r\nContent-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHAqCAMIACAQEx\r\n--sig--\r\n",
	}
	for name, part := range sealed {
		t.Run(name, func(t *testing.T) {
			msg := "From: alice@example.com\r\nTo: bob@example.net\r\nSubject: invoice\r\nMIME-Version: 1.0\r\n" +
				"Content-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n" +
				"--mix\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nInvoice and report attached.\r\n" +
				"--mix\r\nContent-Type: application/pdf; name=\"report.pdf\"\r\nContent-Disposition: attachment; filename=\"report.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + pdf +
				"--mix\r\n" + part + "--mix--\r\n"
			before := len(hop.Messages())
			if err := gw.send("alice@example.com", []string{"bob@example.net"}, []byte(msg)); err != nil {
				t.Fatalf("send: %v", err)
			}
			msgs := hop.Messages()[before:]
			if len(msgs) != 1 {
				t.Fatalf("next hop got %d messages", len(msgs))
			}
			got := string(msgs[0].Data)
			if strings.Contains(got, pdf) || !linkRE.MatchString(got) {
				t.Fatalf("report.pdf was not linked: the attached sealed part let it through:\n%s", truncate(msgs[0].Data))
			}
			// A signed entity itself still goes out untouched (a .p7m
			// file may go out linked like any other file).
			if p := strings.TrimSuffix(part, "\r\n"); strings.HasPrefix(part, "Content-Type: multipart/signed") && !strings.Contains(got, p) {
				t.Errorf("the sealed part was not kept byte for byte:\n%s", truncate(msgs[0].Data))
			}
		})
	}
}

// TestRecipientDomainRuleSeesEquivalentUTF8Domains: with SMTPUTF8 a
// recipient domain may be written in forms that name the same domain to
// the next hop: IDNA (UTS #46, as Postfix and most SMTPUTF8 MTAs apply it)
// maps full-width letters and the ideographic full stop U+3002 to ASCII
// letters and '.', and an A-label is the ASCII form of a U-label. Policies
// compare bytes, so a rule on recipient_domains ["partner.test"] (or
// ["bücher.test"]) is bypassed by RCPT TO:<victim@ｐａｒｔｎｅｒ.test>,
// <victim@partner。test> or <victim@xn--bcher-kva.test>, while the next hop
// is handed the address to deliver. Either the rule must see the domain
// the next hop will deliver to, or the command is refused (553).
func TestRecipientDomainRuleSeesEquivalentUTF8Domains(t *testing.T) {
	g := startPolicyGateway(t, `
- name: no-files-to-partner
  match: {recipient_domains: ["partner.test", "bücher.test"]}
  action: reject
`, time.Hour)
	msg := mailWith("q", "body", attachment{"plan.pdf", "application/pdf", random(2000)})
	for _, rcpt := range []string{
		"victim@partner.test", // the rule works on the plain form
		"victim@\uff50\uff41\uff52\uff54\uff4e\uff45\uff52.test", // full-width letters
		"victim@partner\u3002test",                               // ideographic full stop
		"victim@xn--bcher-kva.test",                              // A-label of bücher.test
	} {
		t.Run(rcpt, func(t *testing.T) {
			c := g.dial()
			if err := c.Mail("alice@example.com", &smtp.MailOptions{UTF8: true}); err != nil {
				t.Fatalf("MAIL: %v", err)
			}
			err := c.Rcpt(rcpt, nil)
			if err == nil {
				var w io.WriteCloser
				if w, err = c.Data(); err == nil {
					w.Write(msg)
					err = w.Close()
				}
			}
			se, ok := err.(*smtp.SMTPError)
			if !ok || se.Code/100 != 5 {
				t.Errorf("RCPT TO:<%s> with a file: got %v, want the rule's 550 (or a 553 for the address)", rcpt, err)
			}
		})
	}
	for _, m := range g.hop.Messages() {
		t.Errorf("next hop got a message for %q", m.To)
	}
}

// TestRewrittenMessageLinesWithin998: smtp.max_line_length defaults to
// 4000, so lines of up to 4000 bytes come in. When attachgate rewrites a
// message it is the author of what goes out, and everything it emits must
// be CRLF with lines of at most 998 bytes (RFC 5322 2.1.1, REVIEW.md):
// strict next hops refuse longer lines, others cut them. The body texts
// are re-encoded quoted-printable (issue 9 item 20), but a foldable
// Subject and a kept text part (a text/calendar invitation) still go out
// with their 1,500-byte lines (the next hop in this test, go-smtp, refuses
// lines over 2,000 bytes outright: the message then fails with its 554).
func TestRewrittenMessageLinesWithin998(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	// The config default (config.go: 4000).
	gw := startGateway(t, hop.Addr, withOptions(func(o *Options) { o.MaxLineLength = 4000 }))
	long := strings.Repeat("x", 1500)
	msg := "From: a@corp.test\r\nTo: b@example.net\r\nSubject: " + strings.Repeat("word ", 300) + "end\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n" +
		"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n" +
		"--b\r\nContent-Type: text/calendar; method=REQUEST; charset=utf-8\r\n\r\nBEGIN:VCALENDAR\r\nDESCRIPTION:" + long + "\r\nEND:VCALENDAR\r\n--b--\r\n"
	if err := gw.send("a@corp.test", []string{"b@example.net"}, []byte(msg)); err != nil {
		t.Fatalf("send: %v", err)
	}
	msgs := hop.Messages()
	if len(msgs) != 1 {
		t.Fatalf("next hop got %d messages", len(msgs))
	}
	out := msgs[0].Data
	if !linkRE.Match(out) {
		t.Fatalf("the PDF was not linked:\n%s", truncate(out))
	}
	for i, line := range strings.Split(string(out), "\r\n") {
		if len(line) > 998 {
			t.Errorf("line %d of the rewritten message is %d bytes: %.50q...", i+1, len(line), line)
		}
	}
}
