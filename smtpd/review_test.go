package smtpd

import (
	"strings"
	"testing"
)

// TestOverlongLocalPartRefused: RFC 5321 (4.5.3.1) caps a local part at 64
// octets and a path at 256. A 1,500-byte local part used to be accepted
// and passed to the next hop (and into Return-Path of outbox files, a
// header line over 998 bytes). It is refused permanently before the next
// hop sees it, like every other address that is not RFC 5321.
func TestOverlongLocalPartRefused(t *testing.T) {
	hop, tr := recordingHop(t)
	gw := startGateway(t, hop.Addr)
	long := strings.Repeat("a", 1500) + "@corp.test"
	c := dialRaw(t, gw.smtpAddr)
	c.reply()
	c.expect("EHLO client.test", "250")
	if got := c.cmd("MAIL FROM:<" + long + ">"); !strings.HasPrefix(got, "501 5.1.7 ") {
		t.Errorf("MAIL FROM with a 1500-byte local part: got %.80q, want 501 5.1.7", got)
	}
	c.cmd("RSET")
	c.expect("MAIL FROM:<a@corp.test>", "250")
	if got := c.cmd("RCPT TO:<" + long + ">"); !strings.HasPrefix(got, "553 5.1.3 ") {
		t.Errorf("RCPT TO with a 1500-byte local part: got %.80q, want 553 5.1.3", got)
	}
	c.expect("QUIT", "221")
	if strings.Contains(tr.String(), strings.Repeat("a", 65)) {
		t.Fatalf("an over-long local part reached the next hop")
	}
}

// TestAddressLiteralWithAtRefused: the domain of a mailbox is what follows
// its local part, and policies take the domain after the last '@'
// (policies.domainOf). An address literal holding '@' splits the two:
// b@[1.2.3.4@corp.test] was accepted, relayed as is, and policies saw the
// domain "corp.test]". Such a literal is not an RFC 5321 address literal
// (IPv4, "IPv6:..." or "tag:..."), so it is refused permanently.
func TestAddressLiteralWithAtRefused(t *testing.T) {
	hop, tr := recordingHop(t)
	gw := startGateway(t, hop.Addr)
	for _, addr := range []string{"b@[1.2.3.4@corp.test]", "b@[x@partner.test]"} {
		c := dialRaw(t, gw.smtpAddr)
		c.reply()
		c.expect("EHLO client.test", "250")
		c.expect("MAIL FROM:<a@corp.test>", "250")
		if got := c.cmd("RCPT TO:<" + addr + ">"); !strings.HasPrefix(got, "553 5.1.3 ") {
			t.Errorf("RCPT TO:<%s>: got %q, want 553 5.1.3", addr, got)
		}
		c.expect("QUIT", "221")
	}
	if strings.Contains(tr.String(), "RCPT TO:<b@[") {
		t.Fatalf("a malformed address literal reached the next hop:\n%s", tr.String())
	}
}

// TestORCPTInvalidUTF8Refused: ORCPT is an address too. An utf-8 typed
// ORCPT holding bytes that are not UTF-8 was accepted and written raw
// into the RCPT command to the next hop. It is refused permanently
// (501 5.5.4) and never reaches the next hop.
func TestORCPTInvalidUTF8Refused(t *testing.T) {
	hop, tr := recordingHop(t, withDSN)
	gw := startGateway(t, hop.Addr)
	c := dialRaw(t, gw.smtpAddr)
	c.reply()
	c.expect("EHLO client.test", "250")
	c.expect("MAIL FROM:<a@corp.test> SMTPUTF8", "250")
	if got := c.cmd("RCPT TO:<b@corp.test> ORCPT=utf-8;\xff\xfe@corp.test"); !strings.HasPrefix(got, "501 5.5.4 ") {
		t.Errorf("ORCPT with invalid UTF-8: got %q, want 501 5.5.4", got)
	}
	c.expect("QUIT", "221")
	if strings.Contains(tr.String(), "\xff") {
		t.Fatalf("invalid UTF-8 reached the next hop:\n%q", tr.String())
	}
}
