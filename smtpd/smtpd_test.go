package smtpd

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset"
	"github.com/emersion/go-smtp"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/pipeline"
	"github.com/attachgate/attachgate/smtptest"
)

// textParts returns the decoded text/plain and text/html bodies of a mail.
func textParts(t *testing.T, raw []byte) (plain, html string, leaves []string) {
	t.Helper()
	e, err := message.Read(bytes.NewReader(raw))
	if err != nil && !message.IsUnknownCharset(err) {
		t.Fatalf("relayed message does not parse: %v", err)
	}
	e.Walk(func(path []int, part *message.Entity, err error) error {
		if err != nil {
			t.Fatalf("walk relayed message: %v", err)
		}
		if part.MultipartReader() != nil {
			return nil
		}
		mt, _, _ := part.Header.ContentType()
		leaves = append(leaves, mt)
		b, _ := io.ReadAll(part.Body)
		switch mt {
		case "text/plain":
			plain += string(b)
		case "text/html":
			html += string(b)
		}
		return nil
	})
	return plain, html, leaves
}

func TestAttachmentReplacedByWorkingLink(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	gw := startGateway(t, hop.Addr)

	content := make([]byte, 300<<10)
	rand.Read(content)
	name := "見積書 2026.pdf"
	msg := mailWithAttachment("Quote", "Hello Bob,\r\nthe quote is attached.\r\n", name, content)
	if err := gw.send("alice@example.com", []string{"bob@example.net"}, msg); err != nil {
		t.Fatalf("send: %v", err)
	}
	got := hop.Messages()
	if len(got) != 1 {
		t.Fatalf("next hop got %d messages, want 1", len(got))
	}
	relayed := got[0].Data
	if bytes.Contains(relayed, []byte(content[:64])) || len(relayed) > 100<<10 {
		t.Fatalf("attachment still in the relayed message (%d bytes)", len(relayed))
	}
	plain, html, leaves := textParts(t, relayed)
	for _, mt := range leaves {
		if mt != "text/plain" && mt != "text/html" {
			t.Errorf("relayed message still has a %s part", mt)
		}
	}
	if !strings.Contains(plain, "the quote is attached.") {
		t.Errorf("body text lost:\n%s", plain)
	}
	links := linkRE.FindAllString(plain, -1)
	if len(links) != 1 {
		t.Fatalf("want exactly one link in the text part, got %d:\n%s", len(links), plain)
	}
	if !strings.HasPrefix(links[0], gw.linkURL+"/d/") {
		t.Errorf("link %q is not under links.base_url %q", links[0], gw.linkURL)
	}
	mustContain(t, []byte(plain), name)
	// The next hop offers 8BITMIME, so the link stands whole in the raw
	// message too, where people and scripts grep for it.
	mustContain(t, relayed, links[0])
	if html != "" {
		t.Errorf("an HTML part appeared in a plain-text mail")
	}
	mustContain(t, relayed, "Received: from client.test", "Message-ID: <test-")

	resp, data := download(t, links[0])
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("download: %s", resp.Status)
	}
	if !bytes.Equal(data, content) {
		t.Fatalf("downloaded %d bytes differ from the %d sent", len(data), len(content))
	}
	cd := resp.Header.Get("Content-Disposition")
	disp, params, err := mime.ParseMediaType(cd)
	if err != nil || disp != "attachment" || params["filename"] != name {
		t.Errorf("Content-Disposition %q parses to %q %q (%v), want attachment with %q", cd, disp, params["filename"], err, name)
	}
	if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("missing nosniff")
	}
	gw.assertNoLeftovers()
}

func TestMailWithoutAttachmentPassesUnchanged(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	gw := startGateway(t, hop.Addr)
	msg := []byte("From: a@example.com\r\nTo: b@example.net\r\nSubject: hi\r\nContent-Type: text/plain; charset=iso-2022-jp\r\n\r\n\x1b$B$3$s$K$A$O\x1b(B\r\n.leading dot\r\n")
	if err := gw.send("a@example.com", []string{"b@example.net"}, msg); err != nil {
		t.Fatal(err)
	}
	got := hop.Messages()
	if len(got) != 1 {
		t.Fatalf("next hop got %d messages", len(got))
	}
	_, rest, ok := bytes.Cut(got[0].Data, []byte("\r\n\r\n"))
	_, wantBody, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
	if !ok || !bytes.Equal(rest, wantBody) {
		t.Fatalf("body changed:\n got %q\nwant %q", rest, wantBody)
	}
	if !bytes.HasSuffix(got[0].Data, msg) {
		t.Fatalf("message changed beyond the trace header:\n%q", got[0].Data)
	}
}

func TestRecipientVerdictsPassedThrough(t *testing.T) {
	unknown := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user here"}
	busy := &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: "Mailbox busy"}
	hop := smtptest.NewServer(t, smtptest.Behaviour{RejectRcpt: map[string]*smtp.SMTPError{
		"nobody@example.net": unknown, "busy@example.net": busy}})
	gw := startGateway(t, hop.Addr)
	c := gw.dial()
	if err := c.Mail("alice@example.com", nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		rcpt string
		want *smtp.SMTPError
	}{
		{"bob@example.net", nil},
		{"nobody@example.net", unknown},
		{"busy@example.net", busy},
		{"carol@example.net", nil},
	}
	for _, tt := range tests {
		err := c.Rcpt(tt.rcpt, nil)
		if tt.want == nil {
			if err != nil {
				t.Errorf("RCPT %s: %v, want accepted", tt.rcpt, err)
			}
			continue
		}
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != tt.want.Code || se.EnhancedCode != tt.want.EnhancedCode || se.Message != tt.want.Message {
			t.Errorf("RCPT %s: got %v, want the next hop's %v", tt.rcpt, err, tt.want)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "Subject: x\r\n\r\nbody\r\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got := hop.Messages()
	if len(got) != 1 || strings.Join(got[0].To, ",") != "bob@example.net,carol@example.net" {
		t.Fatalf("next hop recipients = %v", got)
	}
}

// TestFailureAtEndOfDataRollsBack checks that the client hears the next
// hop's final verdict, and that nothing of a refused message stays behind.
func TestFailureAtEndOfDataRollsBack(t *testing.T) {
	tests := []struct {
		name     string
		bh       smtptest.Behaviour
		code     int
		enhanced smtp.EnhancedCode
	}{
		{"hard fail", smtptest.Behaviour{DataReply: &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Spam"}}, 554, smtp.EnhancedCode{5, 7, 1}},
		{"soft fail", smtptest.Behaviour{DataReply: &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "Disk full"}}, 452, smtp.EnhancedCode{4, 3, 1}},
		{"dropped", smtptest.Behaviour{DropAtDataEnd: true}, 451, smtp.EnhancedCode{4, 4, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hop := smtptest.NewServer(t, tt.bh)
			gw := startGateway(t, hop.Addr)
			msg := mailWithAttachment("x", "body", "a.bin", bytes.Repeat([]byte("x"), 10000))
			err := gw.send("a@example.com", []string{"b@example.net"}, msg)
			var se *smtp.SMTPError
			if !errors.As(err, &se) || se.Code != tt.code || se.EnhancedCode != tt.enhanced {
				t.Fatalf("got %v, want %d %v", err, tt.code, tt.enhanced)
			}
			if n := fileCount(t, gw.dir+"/blobs"); n != 0 {
				t.Errorf("%d blobs left after a refused message", n)
			}
			var count int
			gw.store.DB().QueryRow("SELECT count(*) FROM files").Scan(&count)
			if count != 0 {
				t.Errorf("%d file records left after a refused message", count)
			}
			gw.assertNoLeftovers()
		})
	}
}

func TestNextHopDownIsTemporary(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	addr := hop.Addr
	gw := startGateway(t, "127.0.0.1:1") // nothing listens on port 1
	_ = addr
	c := gw.dial()
	err := c.Mail("a@example.com", nil)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 451 || se.EnhancedCode != (smtp.EnhancedCode{4, 4, 1}) {
		t.Fatalf("MAIL with next hop down: %v, want 451 4.4.1", err)
	}
}

func TestNextHopHangingIsTemporary(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{HangAtDataEnd: 3 * time.Second})
	gw := startGateway(t, hop.Addr, withHopTimeout(time.Second))
	err := gw.send("a@example.com", []string{"b@example.net"}, []byte("Subject: x\r\n\r\nhi\r\n"))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 451 {
		t.Fatalf("hanging next hop: %v, want 451", err)
	}
}

func TestUntrustedClientIsNotRelayed(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	gw := startGateway(t, hop.Addr, withTrusted("10.0.0.0/8"))
	c := gw.dial()
	err := c.Mail("spammer@example.org", nil)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) || !strings.Contains(se.Message, "Relaying denied") {
		t.Fatalf("untrusted MAIL: %v, want 550 5.7.1 relaying denied", err)
	}
	if hop.OpenSessions() != 0 || len(hop.Messages()) != 0 {
		t.Fatalf("an untrusted client reached the next hop")
	}
}

func TestMessageSizeLimit(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	gw := startGateway(t, hop.Addr, withMaxMessageBytes(64<<10))
	msg := mailWithAttachment("big", "body", "big.bin", bytes.Repeat([]byte("y"), 100<<10))
	err := gw.send("a@example.com", []string{"b@example.net"}, msg)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 552 || se.EnhancedCode != (smtp.EnhancedCode{5, 3, 4}) {
		t.Fatalf("oversized message: %v, want 552 5.3.4", err)
	}
	if len(hop.Messages()) != 0 {
		t.Fatal("oversized message was relayed")
	}
	gw.assertNoLeftovers()
}

func TestNonASCIIAddressNeedsSMTPUTF8(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	gw := startGateway(t, hop.Addr)
	c := gw.dial()
	err := c.Mail("山田@example.jp", nil)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 553 || se.EnhancedCode != (smtp.EnhancedCode{5, 6, 7}) {
		t.Fatalf("non-ASCII MAIL without SMTPUTF8: %v, want 553 5.6.7", err)
	}
	c2 := gw.dial()
	if err := c2.Mail("山田@example.jp", &smtp.MailOptions{UTF8: true}); err != nil {
		t.Fatalf("non-ASCII MAIL with SMTPUTF8: %v", err)
	}
	if err := c2.Rcpt("鈴木@example.jp", nil); err != nil {
		t.Fatalf("non-ASCII RCPT with SMTPUTF8: %v", err)
	}
}

func TestSubjectsLoggedOnlyWhenConfigured(t *testing.T) {
	for _, logSubjects := range []bool{false, true} {
		hop := smtptest.NewServer(t, smtptest.Behaviour{})
		gw := startGateway(t, hop.Addr, func(_ *Options, p *pipeline.Pipeline) { p.LogSubjects = logSubjects })
		msg := mailWithAttachment("見積 secret plans", "body", "a.pdf", []byte("pdf"))
		if err := gw.send("a@example.com", []string{"b@example.net"}, msg); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		q, _ := audit.ParseDateRange(time.Now().UTC().Format("2006-01-02"), time.Now().UTC().Format("2006-01-02"), time.UTC)
		if err := gw.audit.Export(context.Background(), q, &buf, "jsonl", false); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(buf.String(), "見積 secret plans"); got != logSubjects {
			t.Errorf("log_subjects=%v: subject in audit log = %v", logSubjects, got)
		}
		// The ground for relaying is on record: here the trusted network.
		if !strings.Contains(buf.String(), "trusted network 127.0.0.0/8") {
			t.Errorf("mail.received does not name the trusted network:\n%s", buf.String())
		}
	}
}
