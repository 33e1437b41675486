package smtpd

import (
	"bytes"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

func withDSN(s *smtp.Server) { s.EnableDSN = true }

// TestDSNParametersReachNextHop: DSN is advertised and RET, ENVID, NOTIFY
// and ORCPT go to the next hop as the client gave them (issue 9 item 19).
func TestDSNParametersReachNextHop(t *testing.T) {
	hop, tr := recordingHop(t, withDSN)
	gw := startGateway(t, hop.Addr)
	c := dialRaw(t, gw.smtpAddr)
	c.reply()
	if ehlo := c.expect("EHLO client.test", "250"); !strings.Contains(ehlo, "250-DSN\r\n") && !strings.Contains(ehlo, "250 DSN\r\n") {
		t.Fatalf("DSN not advertised:\n%s", ehlo)
	}
	mail := "MAIL FROM:<a@example.com> RET=HDRS ENVID=QQ314159+2Bx"
	rcpt := "RCPT TO:<b@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=RFC822;b+2Bold@example.net"
	c.expect(mail, "250")
	c.expect(rcpt, "250")
	c.expect("RCPT TO:<c@example.net> NOTIFY=NEVER", "250")
	sendSmallMessage(t, c, "dsn")
	wantOnWire(t, tr, mail, rcpt, "RCPT TO:<c@example.net> NOTIFY=NEVER")
}

// cmdReply is a command line and the start of the reply it must get.
type cmdReply struct{ line, want string }

// wantReplies sends each line and checks its reply. A MAIL accepted
// against expectations is reset, so the next line still runs.
func wantReplies(t *testing.T, c *rawConn, cmds []cmdReply) {
	t.Helper()
	for _, tc := range cmds {
		got := c.cmd(tc.line)
		if !strings.HasPrefix(got, tc.want) {
			t.Errorf("%q: got %q, want %q", tc.line, got, tc.want)
			if strings.HasPrefix(tc.line, "MAIL ") && strings.HasPrefix(got, "250") {
				c.cmd("RSET")
			}
		}
	}
}

// sendSmallMessage sends DATA with a one-line message and wants its 250.
func sendSmallMessage(t *testing.T, c *rawConn, subject string) {
	t.Helper()
	c.expect("DATA", "354")
	c.send("Subject: " + subject + "\r\n\r\nhi\r\n.\r\n")
	if g := c.reply(); !strings.HasPrefix(g, "250 ") {
		t.Fatalf("end of DATA: %q", g)
	}
}

// wantOnWire checks that the next hop got each command line as written.
func wantOnWire(t *testing.T, tr *transcript, lines ...string) {
	t.Helper()
	wire := tr.String()
	for _, want := range lines {
		if !strings.Contains(wire, "\n"+want+"\r\n") {
			t.Errorf("next hop did not get %q; it got:\n%s", want, wire)
		}
	}
}

// TestBody8BitOnlyWhenDeclared: BODY=8BITMIME goes to the next hop only
// for a message its client declared 8-bit, and a message not declared so
// leaves the gateway 7-bit, notice included (issue 9 item 19).
func TestBody8BitOnlyWhenDeclared(t *testing.T) {
	hop, tr := recordingHop(t)
	gw := startGateway(t, hop.Addr)
	msg := mailWithAttachment("seven", "plain ASCII body", "report.pdf", bytes.Repeat([]byte("%PDF"), 100))
	msg = bytes.ReplaceAll(msg, []byte("Content-Transfer-Encoding: 8bit"), []byte("Content-Transfer-Encoding: 7bit"))
	for _, tc := range []struct {
		param    string
		wantBody bool
	}{{"", false}, {" BODY=7BIT", false}, {" BODY=8BITMIME", true}} {
		before := len(hop.Messages())
		c := dialRaw(t, gw.smtpAddr)
		c.reply()
		c.expect("EHLO client.test", "250")
		c.expect("MAIL FROM:<a@example.com>"+tc.param, "250")
		c.expect("RCPT TO:<b@example.net>", "250")
		c.expect("DATA", "354")
		c.send(string(msg) + ".\r\n")
		if g := c.reply(); !strings.HasPrefix(g, "250 ") {
			t.Fatalf("MAIL%s: end of DATA %q", tc.param, g)
		}
		c.expect("QUIT", "221")
		wire := tr.String()
		last := wire[strings.LastIndex(wire, "MAIL FROM:"):]
		last = last[:strings.Index(last, "\r\n")]
		if got := strings.Contains(last, "BODY=8BITMIME"); got != tc.wantBody {
			t.Errorf("client MAIL%q: next hop got %q", tc.param, last)
		}
		relayed := hop.Messages()[before].Data
		if !tc.wantBody {
			for i, b := range relayed {
				if b >= 0x80 {
					t.Fatalf("client MAIL%q: 8-bit byte at %d of a message relayed without BODY=8BITMIME:\n%s", tc.param, i, truncate(relayed))
				}
			}
		}
		mustContain(t, relayed, "report.pdf")
	}
}

// TestMalformedParametersRefused: a MAIL or RCPT parameter given twice is
// refused with 501 5.5.4 naming it, not read as the last one, and so is a
// keyword that is not an esmtp-keyword (ASCII letters, digits and '-',
// RFC 5321 4.1.2): strings.ToUpper folds 'ı' (U+0131) to 'I' and 'ſ'
// (U+017F) to 'S', so "NOTıFY=SUCCESS", an unknown parameter to a hop in
// front, was NOTIFY here. Either way a hop in front and attachgate would
// disagree on the envelope. The session goes on, and nothing refused
// reaches the next hop.
func TestMalformedParametersRefused(t *testing.T) {
	hop, tr := recordingHop(t, withDSN)
	gw := startGateway(t, hop.Addr)
	c := dialRaw(t, gw.smtpAddr)
	c.reply()
	c.expect("EHLO client.test", "250")
	wantReplies(t, c, []cmdReply{
		{"MAIL FROM:<a@example.com> RET=HDRS RET=FULL", "501 5.5.4 Duplicate MAIL parameter RET"},
		{"MAIL FROM:<a@example.com> ENVID=a ret=HDRS envid=b", "501 5.5.4 Duplicate MAIL parameter ENVID"},
		{"MAIL FROM:<a@example.com> SIZE=10 SIZE=99999999", "501 5.5.4 Duplicate MAIL parameter SIZE"},
		{"MAIL FROM:<a@example.com> X\x01=1 X\x01=2", "501 5.5.4 Unable to parse MAIL ESMTP parameters"},
		{"MAIL FROM:<a@example.com> X-A=1 X-A=2", "501 5.5.4 Duplicate MAIL parameter X-A\r\n"},
		{"MAIL FROM:<a@example.com> ENV\u0131D=folded", "501 5.5.4"},
		{"MAIL FROM:<a@example.com> \u017fMTPUTF8", "501 5.5.4"},
		{"MAIL FROM:<a@example.com> BODY=8B\u0131TMIME", "501 5.5.4"},
	})
	c.expect("MAIL FROM:<a@example.com> RET=HDRS", "250")
	wantReplies(t, c, []cmdReply{
		{"RCPT TO:<b@example.net> NOTIFY=NEVER NOTIFY=SUCCESS", "501 5.5.4 Duplicate RCPT parameter NOTIFY"},
		{"RCPT TO:<b@example.net> ORCPT=rfc822;b@example.net orcpt=rfc822;c@example.net", "501 5.5.4 Duplicate RCPT parameter ORCPT"},
		{"RCPT TO:<b@example.net> NOT\u0131FY=SUCCESS", "501 5.5.4"},
		{"RCPT TO:<b@example.net> NOTIFY=\u017fUCCESS", "501 5.5.4"},
	})
	c.expect("RCPT TO:<b@example.net> NOTIFY=FAILURE", "250")
	sendSmallMessage(t, c, "refused parameters")
	wantOnWire(t, tr, "MAIL FROM:<a@example.com> RET=HDRS", "RCPT TO:<b@example.net> NOTIFY=FAILURE")
	for _, line := range strings.Split(tr.String(), "\r\n") {
		if !strings.HasPrefix(line, "MAIL FROM:") && !strings.HasPrefix(line, "RCPT TO:") {
			continue
		}
		for _, param := range strings.Fields(line)[2:] {
			switch param {
			case "RET=FULL", "NOTIFY=NEVER", "NOTIFY=SUCCESS", "ENVID=folded", "SMTPUTF8", "BODY=8BITMIME":
				t.Errorf("the next hop got %q from a refused parameter: %q", param, line)
			}
		}
	}
}

// TestORCPTUnicodeSpaceNotSplitByNextHop: an ORCPT address may hold
// non-ASCII, and go-smtp's client writes it raw in utf-8-addr-unitext when
// the next hop offers SMTPUTF8. A U+00A0 given as \x{A0} then reaches the
// next hop as a raw no-break space, which go-smtp (strings.Fields) splits
// on: "ORCPT=utf-8;c@example.net\x{A0}NOTIFY" beside NOTIFY=NEVER is, at a
// go-smtp next hop, a second NOTIFY. Whatever the gateway emits must split
// into the same parameters on ASCII SP and on Unicode space, or be refused
// by the gateway.
func TestORCPTUnicodeSpaceNotSplitByNextHop(t *testing.T) {
	hop, tr := recordingHop(t, withDSN)
	gw := startGateway(t, hop.Addr)
	c := dialRaw(t, gw.smtpAddr)
	c.reply()
	c.expect("EHLO client.test", "250")
	c.expect("MAIL FROM:<a@example.com>", "250")
	got := c.cmd(`RCPT TO:<c@example.net> NOTIFY=NEVER ORCPT=utf-8;c@example.net\x{A0}NOTIFY`)
	for _, line := range strings.Split(tr.String(), "\r\n") {
		if strings.HasPrefix(line, "RCPT TO:") && strings.Join(strings.Fields(line), " ") != line {
			t.Errorf("the next hop got %q: a parameter boundary only Unicode-aware parsers see (gateway replied %q)", line, got)
		}
	}
}
