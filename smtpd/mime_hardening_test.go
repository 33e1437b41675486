package smtpd

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/attachgate/attachgate/smtptest"
)

// Issue 9.3: no bare CR reaches the next hop, whether the message is
// rewritten or passes through unchanged.
func TestNoBareCRToNextHop(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	gw := startGateway(t, hop.Addr)
	bareCR := regexp.MustCompile("\r[^\n]|\r$")
	for name, msg := range map[string]string{
		"pass-through": "Subject: a\r.\rb\r\n\r\nhello\r.\r\nMAIL FROM:<x@example.com>\r\n",
		"rewritten": "Subject: a\r.\rb\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
			"--b\r\nContent-Type: text/plain\r\n\r\nhello\r.\r\r\n" +
			"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\n\r\n%PDF\r\n--b--\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			before := len(hop.Messages())
			script := "EHLO x\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n" + msg + "\r\n.\r\nQUIT\r\n"
			out := rawSession(t, gw.smtpAddr, script)
			msgs := hop.Messages()[before:]
			if len(msgs) != 1 {
				t.Fatalf("next hop got %d messages; replies:\n%s", len(msgs), out)
			}
			if m := bareCR.FindIndex(msgs[0].Data); m != nil {
				t.Fatalf("bare CR at %d reached the next hop:\n%q", m[0], msgs[0].Data)
			}
			mustContain(t, msgs[0].Data, "Subject: a . b\r\n")
		})
	}
}

const smimeSignedPDF = "From: alice@example.com\r\nTo: bob@example.net\r\nSubject: signed report\r\nMIME-Version: 1.0\r\n" +
	"Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=\"sig\"\r\n\r\n" +
	"This is a cryptographically signed message in MIME format.\r\n\r\n" +
	"--sig\r\nContent-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n" +
	"--mix\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nReport attached.\r\n" +
	"--mix\r\nContent-Type: application/pdf; name=\"report.pdf\"\r\nContent-Disposition: attachment; filename=\"report.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--mix--\r\n\r\n" +
	"--sig\r\nContent-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\nContent-Disposition: attachment; filename=\"smime.p7s\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
	"MIAGCSqGSIb3DQEHAqCAMIACAQExDzANBglghkgBZQMEAgEFADCABgkqhkiG9w0BBwEAAKCC\r\n--sig--\r\n"

const pgpEncrypted = "From: alice@example.com\r\nTo: bob@example.net\r\nSubject: secret\r\nMIME-Version: 1.0\r\n" +
	"Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"enc\"\r\n\r\n" +
	"--enc\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n" +
	"--enc\r\nContent-Type: application/octet-stream; name=\"encrypted.asc\"\r\nContent-Disposition: inline; filename=\"encrypted.asc\"\r\n\r\n" +
	"-----BEGIN PGP MESSAGE-----\r\n\r\nhQEMA1234\r\n-----END PGP MESSAGE-----\r\n--enc--\r\n"

const smimeEnveloped = "From: alice@example.com\r\nTo: bob@example.net\r\nSubject: secret\r\nMIME-Version: 1.0\r\n" +
	"Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=\"smime.p7m\"\r\n" +
	"Content-Disposition: attachment; filename=\"smime.p7m\"\r\nContent-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHA6CAMIACAQAx\r\n"

const autoReplyWithPDF = "From: alice@example.com\r\nTo: bob@example.net\r\nSubject: Out of office\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nI am away.\r\n" +
	"--b\r\nContent-Type: application/pdf; name=\"away.pdf\"\r\nContent-Disposition: attachment; filename=\"away.pdf\"\r\n\r\n%PDF\r\n--b--\r\n"

// Issues 9.16 and 9.17: signed and encrypted mail, reports and automatic
// replies reach the next hop byte for byte, nothing stored or linked.
func TestSignedEncryptedAndAutomaticMailPassUntouched(t *testing.T) {
	bounce, err := os.ReadFile("/work/shared/corpus/mail-gem/multipart_report_emails/multi_address_bounce1.eml")
	if err != nil {
		t.Skipf("corpus: %v", err)
	}
	bounceCRLF := strings.ReplaceAll(strings.ReplaceAll(string(bounce), "\r\n", "\n"), "\n", "\r\n")
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	gw := startGateway(t, hop.Addr)
	tests := []struct{ name, from, msg string }{
		{"S/MIME signed with PDF", "alice@example.com", smimeSignedPDF},
		{"PGP/MIME encrypted", "alice@example.com", pgpEncrypted},
		{"S/MIME encrypted", "alice@example.com", smimeEnveloped},
		{"auto-reply", "alice@example.com", autoReplyWithPDF},
		{"null-sender report from the corpus", "", bounceCRLF},
		{"null sender with a PDF", "", mailWithPDF},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(hop.Messages())
			if err := gw.send(tc.from, []string{"bob@example.net"}, []byte(tc.msg)); err != nil {
				t.Fatalf("send: %v", err)
			}
			msgs := hop.Messages()[before:]
			if len(msgs) != 1 {
				t.Fatalf("next hop got %d messages", len(msgs))
			}
			got := string(msgs[0].Data)
			if !strings.HasPrefix(got, "Received: ") || !strings.HasSuffix(got, tc.msg) ||
				strings.Count(got, "\r\n") != strings.Count(tc.msg, "\r\n")+3 {
				t.Fatalf("not relayed byte for byte:\n%s", got)
			}
			if n := fileCount(t, filepath.Join(gw.dir, "blobs")); n != 0 {
				t.Errorf("%d blobs stored", n)
			}
		})
	}
}

const mailWithPDF = "From: MAILER-DAEMON@example.com\r\nTo: bob@example.net\r\nSubject: Undelivered\r\nMIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nreturned\r\n" +
	"--b\r\nContent-Type: application/pdf; name=\"r.pdf\"\r\nContent-Disposition: attachment; filename=\"r.pdf\"\r\n\r\n%PDF\r\n--b--\r\n"

// Issue 9.16: a rule can reject or quarantine signed and encrypted mail
// (never rewrite it); attachment rules still refuse files in a bounce.
func TestMessageRulesRejectAndQuarantine(t *testing.T) {
	g := startPolicyGateway(t, `
- name: no-encrypted-out
  match: {encrypted: true}
  action: quarantine
- name: no-signed-to-partner
  match: {signed: true, recipient_domains: ["partner.test"]}
  action: reject
- name: no-pdf-in-bounces
  match: {extensions: [".pdf"], recipient_domains: ["partner.test"]}
  action: reject
`, time.Hour)
	err := g.send("alice@example.com", []string{"bob@partner.test"}, []byte(smimeSignedPDF))
	wantCode(t, "signed to partner", err, 550, smtp.EnhancedCode{5, 7, 1})
	if err := g.send("alice@example.com", []string{"bob@example.net"}, []byte(smimeSignedPDF)); err != nil {
		t.Fatalf("signed elsewhere: %v", err)
	}
	if err := g.send("alice@example.com", []string{"bob@example.net"}, []byte(pgpEncrypted)); err != nil {
		t.Fatalf("encrypted: %v", err)
	}
	items, err := g.held.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 || items[0].Rule != "no-encrypted-out" {
		t.Fatalf("held: %+v", items)
	}
	err = g.send("", []string{"bob@partner.test"}, []byte(mailWithPDF))
	wantCode(t, "bounce with a PDF", err, 550, smtp.EnhancedCode{5, 7, 1})
	if n := len(g.hop.Messages()); n != 1 {
		t.Fatalf("next hop got %d messages, want only the signed one", n)
	}
	if got := string(g.hop.Messages()[0].Data); !strings.HasSuffix(got, smimeSignedPDF) {
		t.Errorf("signed mail changed:\n%s", got)
	}
}

// A rewritten message whose header holds a line over 998 bytes with no
// white space to fold at cannot go out within RFC 5322's limit without
// changing the field: it is refused with 554 5.6.0 and the next hop gets
// nothing (a foldable one is folded: TestRewrittenMessageLinesWithin998).
func TestUnfoldableHeaderLineRefused(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	gw := startGateway(t, hop.Addr, withOptions(func(o *Options) { o.MaxLineLength = 4000 }))
	msg := "From: a@corp.test\r\nTo: b@example.net\r\nX-Token: " + strings.Repeat("x", 1500) + "\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n" +
		"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b--\r\n"
	err := gw.send("a@corp.test", []string{"b@example.net"}, []byte(msg))
	wantCode(t, "unfoldable header line", err, 554, smtp.EnhancedCode{5, 6, 0})
	if n := len(hop.Messages()); n != 0 {
		t.Fatalf("next hop got %d messages: %.300q", n, hop.Messages()[0].Data)
	}
}
