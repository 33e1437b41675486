package smtpd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/attachgate/attachgate/smtptest"
)

// rawConn is a client on a plain socket that reads one whole reply per
// command, so an unsolicited or missing reply shows as a mismatch.
type rawConn struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	return dialRawFrom(t, addr, "")
}

// dialRawFrom dials from a given loopback address ("" = any), so tests can
// play clients outside the trusted network (127.0.0.2 and up all reach lo).
func dialRawFrom(t *testing.T, addr, local string) *rawConn {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &rawConn{t: t, conn: conn, r: bufio.NewReader(conn)}
	return c
}

// reply reads one (possibly multi-line) reply; "" when the connection ended.
func (c *rawConn) reply() string {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	var out strings.Builder
	for {
		line, err := c.r.ReadString('\n')
		out.WriteString(line)
		if err != nil {
			return out.String()
		}
		if len(line) < 4 || line[3] != '-' {
			return out.String()
		}
	}
}

func (c *rawConn) send(s string) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.conn.Write([]byte(s)); err != nil {
		c.t.Fatalf("write %q: %v", s, err)
	}
}

// cmd sends one command line and returns its reply.
func (c *rawConn) cmd(line string) string {
	c.t.Helper()
	c.send(line + "\r\n")
	return c.reply()
}

// expect sends a command and fails unless the reply starts with want.
func (c *rawConn) expect(line, want string) string {
	c.t.Helper()
	got := c.cmd(line)
	if !strings.HasPrefix(got, want) {
		c.t.Fatalf("%.60q: got %q, want %q", line, got, want)
	}
	return got
}

// TestOverlongDataLineOneReply: a line over smtp.max_line_length inside
// DATA is answered once, permanently, after the end of DATA, and the
// session takes the next command and the next message (issue 9 item 2).
func TestOverlongDataLineOneReply(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	gw := startGateway(t, hop.Addr, withOptions(func(o *Options) { o.MaxLineLength = 1000 }))
	c := dialRaw(t, gw.smtpAddr)
	if g := c.reply(); !strings.HasPrefix(g, "220 ") {
		t.Fatalf("greeting %q", g)
	}
	c.expect("EHLO client.test", "250")
	c.expect("MAIL FROM:<a@example.com>", "250")
	c.expect("RCPT TO:<b@example.net>", "250")
	c.expect("DATA", "354")
	// The over-long line, the rest of the message, its end and a
	// pipelined NOOP all in one write.
	c.send("Subject: long\r\n\r\n" + strings.Repeat("x", 5000) + "\r\nmore\r\n.\r\nNOOP\r\n")
	if got := c.reply(); !strings.HasPrefix(got, "500 5.4.0 ") {
		t.Fatalf("end of DATA: got %q, want one permanent 500 5.4.0", got)
	}
	if got := c.reply(); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("NOOP after the refused message: got %q, want 250 (one reply per command)", got)
	}
	// The same session relays the next message.
	c.expect("MAIL FROM:<a@example.com>", "250")
	c.expect("RCPT TO:<b@example.net>", "250")
	c.expect("DATA", "354")
	c.send("Subject: short\r\n\r\nfine\r\n.\r\n")
	if got := c.reply(); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("next message: %q", got)
	}
	c.expect("QUIT", "221")
	msgs := hop.Messages()
	if len(msgs) != 1 || !strings.Contains(string(msgs[0].Data), "fine") {
		t.Fatalf("next hop got %d messages, want only the second", len(msgs))
	}
}

// transcript is a next hop's wire log (go-smtp's Server.Debug), safe for
// the server's goroutines to write while the test reads.
type transcript struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (t *transcript) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.Write(p)
}

func (t *transcript) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.String()
}

// recordingHop is a real next hop whose every command line is kept.
func recordingHop(t *testing.T, opts ...smtptest.Option) (*smtptest.Server, *transcript) {
	tr := &transcript{}
	opts = append(opts, func(s *smtp.Server) { s.Debug = tr })
	return smtptest.NewServer(t, smtptest.Behaviour{}, opts...), tr
}

// TestQuotedLocalPartKeepsEnvelope: a quoted local part holding '@', '>'
// and a parameter reaches the next hop as the one mailbox the client sent,
// never as another address plus parameters (issue 9 item 1).
func TestQuotedLocalPartKeepsEnvelope(t *testing.T) {
	hop, tr := recordingHop(t)
	gw := startGateway(t, hop.Addr)
	c := dialRaw(t, gw.smtpAddr)
	c.reply()
	c.expect("EHLO client.test", "250")
	from := `"x> RET=FULL ENVID=injected"@corp.test`
	to := `"victim@partner.test> ORCPT=rfc822;x"@corp.test`
	c.expect("MAIL FROM:<"+from+">", "250")
	c.expect("RCPT TO:<"+to+">", "250")
	c.expect("DATA", "354")
	c.send("Subject: q\r\n\r\nhi\r\n.\r\n")
	if got := c.reply(); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("end of DATA: %q", got)
	}
	wire := tr.String()
	if !strings.Contains(wire, "\nMAIL FROM:<"+from+">") || !strings.Contains(wire, "\nRCPT TO:<"+to+">\r\n") {
		t.Errorf("next hop did not get the mailboxes as sent; it got:\n%s", wire)
	}
	if strings.Contains(wire, "RCPT TO:<victim@") || strings.Contains(wire, "MAIL FROM:<x>") {
		t.Errorf("next hop got a rewritten envelope:\n%s", wire)
	}
	msgs := hop.Messages()
	if len(msgs) != 1 || msgs[0].From != from || len(msgs[0].To) != 1 || msgs[0].To[0] != to {
		t.Fatalf("next hop envelope = %+v, want from %q to %q", msgs, from, to)
	}
	// The Received header and the audit log carry the same mailbox.
	if !bytes.Contains(msgs[0].Data, []byte("Received: ")) {
		t.Fatalf("no Received header:\n%s", msgs[0].Data)
	}
}

// TestBadAddressesRefusedPermanently: control characters and addresses
// that only parse by guessing are a permanent 501 5.1.7 (MAIL) or 553
// 5.1.3 (RCPT), never a 451, and nothing reaches the next hop.
func TestBadAddressesRefusedPermanently(t *testing.T) {
	hop, tr := recordingHop(t)
	gw := startGateway(t, hop.Addr)
	mail := []string{
		"a\x00b@corp.test",
		"\"a\x00b\"@corp.test",
		"a\rb@corp.test",
		"\"a\rb\"@corp.test",
		"a@b@corp.test",
		"a@corp.test\"x",
	}
	for _, addr := range mail {
		c := dialRaw(t, gw.smtpAddr)
		c.reply()
		c.expect("EHLO client.test", "250")
		if got := c.cmd("MAIL FROM:<" + addr + ">"); !strings.HasPrefix(got, "501 5.1.7 ") {
			t.Errorf("MAIL FROM:<%q>: got %q, want 501 5.1.7", addr, got)
		}
		c.expect("MAIL FROM:<a@corp.test>", "250")
		if got := c.cmd("RCPT TO:<" + addr + ">"); !strings.HasPrefix(got, "553 5.1.3 ") {
			t.Errorf("RCPT TO:<%q>: got %q, want 553 5.1.3", addr, got)
		}
		c.expect("QUIT", "221")
	}
	if strings.Contains(tr.String(), "\x00") || strings.Contains(tr.String(), "corp.test\"x") {
		t.Fatalf("a refused address reached the next hop:\n%q", tr.String())
	}
}

// TestParallelAuthGuessesHitLockout: 30 clients guessing at the same moment
// get at most smtp.auth.max_failures password checks between them; the
// rest are answered 454 4.7.0 without a hash (issue 9 item 4). The unknown
// user is checked against the argon2id dummy hash, 64 MiB each.
func TestParallelAuthGuessesHitLockout(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	const maxFailures, clients = 5, 30
	gw, cert := authGateway(t, hop.Addr, false, withOptions(func(o *Options) {
		o.AuthMaxFailures, o.AuthConcurrency = maxFailures, 2
	}))
	cs := make([]*smtp.Client, clients)
	for i := range cs {
		cs[i] = dialStartTLS(t, gw.smtpAddr, cert)
		if err := cs[i].Hello("guesser.test"); err != nil {
			t.Fatal(err)
		}
	}
	start := make(chan struct{})
	errs := make([]error, clients)
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = c.Auth(sasl.NewPlainClient("", "mallory", fmt.Sprintf("guess-%d", i)))
		}()
	}
	close(start)
	wg.Wait()
	checked := 0
	for i, err := range errs {
		var se *smtp.SMTPError
		switch {
		case errors.As(err, &se) && se.Code == 535:
			checked++
		case errors.As(err, &se) && se.Code == 454 && se.EnhancedCode == smtp.EnhancedCode{4, 7, 0}:
		default:
			t.Errorf("guess %d: %v, want 535 5.7.8 or 454 4.7.0", i, err)
		}
	}
	if checked > maxFailures {
		t.Fatalf("%d of %d parallel guesses had their password checked; the lockout allows %d", checked, clients, maxFailures)
	}
	// Guesses answered "busy" were not checked and not counted; one at a
	// time, the rest of the allowance is used up, and not one more.
	for i := 0; ; i++ {
		c := dialStartTLS(t, gw.smtpAddr, cert)
		err := c.Auth(sasl.NewPlainClient("", "mallory", fmt.Sprintf("again-%d", i)))
		var se *smtp.SMTPError
		if errors.As(err, &se) && se.Code == 454 {
			break
		}
		wantCode(t, "sequential guess", err, 535, smtp.EnhancedCode{5, 7, 8})
		if checked++; checked > maxFailures {
			t.Fatalf("%d guesses checked; the lockout allows %d", checked, maxFailures)
		}
	}
	if checked != maxFailures {
		t.Fatalf("locked out after %d checked guesses, want %d", checked, maxFailures)
	}
	// The address is locked now, even with the right password.
	c := dialStartTLS(t, gw.smtpAddr, cert)
	wantCode(t, "after the guesses", c.Auth(sasl.NewPlainClient("", "alice", "correct horse battery")), 454, smtp.EnhancedCode{4, 7, 0})
}

// TestAuthSuccessDoesNotCount: right passwords do not use up attempts.
func TestAuthSuccessDoesNotCount(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	gw, cert := authGateway(t, hop.Addr, false, withOptions(func(o *Options) { o.AuthMaxFailures = 2 }))
	for i := 0; i < 5; i++ {
		c := dialStartTLS(t, gw.smtpAddr, cert)
		if err := c.Auth(sasl.NewPlainClient("", "alice", "correct horse battery")); err != nil {
			t.Fatalf("login %d: %v", i, err)
		}
		c.Quit()
	}
}

// TestReservedConnectionsForTrusted: idle clients from other addresses
// cannot take the slots reserved for the trusted network (issue 9 item 5).
func TestReservedConnectionsForTrusted(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	gw := startGateway(t, hop.Addr, withTrusted("127.0.0.1/32"), withOptions(func(o *Options) {
		o.MaxConnections, o.ReservedConnections, o.MaxConnectionsPerClient = 10, 3, 0
	}))
	admitted := 0
	for i := 0; i < 10; i++ {
		c := dialRawFrom(t, gw.smtpAddr, fmt.Sprintf("127.0.0.%d", 2+i))
		switch g := c.reply(); {
		case strings.HasPrefix(g, "220 "):
			admitted++
		case !strings.HasPrefix(g, "421 4.7.0"):
			t.Fatalf("untrusted client %d: %q", i, g)
		}
	}
	if admitted != 7 {
		t.Fatalf("%d idle untrusted clients admitted, want 10-3 = 7", admitted)
	}
	// The trusted network still gets in, three times over, and relays.
	for i := 0; i < 3; i++ {
		c := dialRawFrom(t, gw.smtpAddr, "127.0.0.1")
		if g := c.reply(); !strings.HasPrefix(g, "220 ") {
			t.Fatalf("trusted client %d: %q", i, g)
		}
		if i == 2 {
			c.expect("EHLO trusted.test", "250")
			c.expect("MAIL FROM:<a@example.com>", "250")
			c.expect("RCPT TO:<b@example.net>", "250")
			c.expect("DATA", "354")
			c.send("Subject: reserved\r\n\r\nthrough\r\n.\r\n")
			if g := c.reply(); !strings.HasPrefix(g, "250 ") {
				t.Fatalf("trusted relay: %q", g)
			}
		}
	}
}

// TestAuthenticatedClientLeavesUntrustedShare: once a client
// authenticated, its slot is in the reserve, so another unauthenticated
// client fits in the untrusted share.
func TestAuthenticatedClientLeavesUntrustedShare(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	gw, cert := authGateway(t, hop.Addr, false, withOptions(func(o *Options) {
		o.MaxConnections, o.ReservedConnections, o.MaxConnectionsPerClient = 3, 2, 0
	}))
	c := dialStartTLS(t, gw.smtpAddr, cert)
	if err := c.Auth(sasl.NewPlainClient("", "alice", "correct horse battery")); err != nil {
		t.Fatal(err)
	}
	idle := dialRawFrom(t, gw.smtpAddr, "127.0.0.2")
	if g := idle.reply(); !strings.HasPrefix(g, "220 ") {
		t.Fatalf("after the authenticated client moved to the reserve: %q", g)
	}
	full := dialRawFrom(t, gw.smtpAddr, "127.0.0.3")
	if g := full.reply(); !strings.HasPrefix(g, "421 4.7.0") {
		t.Fatalf("second unauthenticated client: %q, want 421 4.7.0 (share of 1 in use)", g)
	}
	if err := c.Noop(); err != nil {
		t.Fatalf("authenticated session: %v", err)
	}
}

// TestUntrustedIdleClientDisconnectedSooner: an idle client outside the
// trusted network is dropped after smtp.untrusted_idle_timeout, a trusted
// one idle as long stays.
func TestUntrustedIdleClientDisconnectedSooner(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	gw := startGateway(t, hop.Addr, withTrusted("127.0.0.1/32"), withOptions(func(o *Options) {
		o.ReadTimeout, o.UntrustedIdleTimeout = 5*time.Minute, 300*time.Millisecond
	}))
	trusted := dialRawFrom(t, gw.smtpAddr, "127.0.0.1")
	trusted.reply()
	trusted.expect("EHLO trusted.test", "250")
	untrusted := dialRawFrom(t, gw.smtpAddr, "127.0.0.2")
	untrusted.reply()
	untrusted.expect("EHLO stranger.test", "250")
	if g := untrusted.reply(); !strings.HasPrefix(g, "421 ") {
		t.Fatalf("idle untrusted client got %q, want 421 and a closed connection", g)
	}
	// The trusted client, idle at least as long, is still served.
	trusted.expect("NOOP", "250")
}

// TestBDATAbortWhileDataRuns: go-smtp runs Data in its own goroutine for
// BDAT and calls Reset/Logout when the client abandons the chunks; the
// session must not race with itself (found by FuzzAuthSession under
// -race), and the next transaction on the connection relays.
func TestBDATAbortWhileDataRuns(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	gw := startGateway(t, hop.Addr)
	for _, abort := range []string{"RSET", "QUIT"} {
		c := dialRaw(t, gw.smtpAddr)
		c.reply()
		c.expect("EHLO client.test", "250")
		c.expect("MAIL FROM:<a@example.com>", "250")
		c.expect("RCPT TO:<b@example.net>", "250")
		c.send("BDAT 10\r\nSubject: x")
		if g := c.reply(); !strings.HasPrefix(g, "250 ") {
			t.Fatalf("first chunk: %q", g)
		}
		if abort == "QUIT" {
			c.expect("QUIT", "221")
			continue
		}
		c.expect("RSET", "250")
		c.expect("MAIL FROM:<a@example.com>", "250")
		c.expect("RCPT TO:<b@example.net>", "250")
		c.send("BDAT 19 LAST\r\nSubject: y\r\n\r\nbody\r\n")
		if g := c.reply(); !strings.HasPrefix(g, "250 ") {
			t.Fatalf("after RSET: %q", g)
		}
	}
	if n := len(hop.Messages()); n != 1 {
		t.Fatalf("next hop got %d messages, want the one completed", n)
	}
}

// TestBDATChunkReadAheadNotLineLimited: a CHUNKING client sends BDAT and
// its chunk in one go. The chunk's bytes are not command lines (go-smtp
// lifts the line limit while it reads them), so whatever the read buffer
// takes in beyond the BDAT line while reading it must not count against
// smtp.max_line_length either. With a 64 KiB read buffer, a line over the
// limit 10 KB into the chunk closed the session with "500 Too long line"
// before the chunk was read; with 4 KiB the chunk was read and answered.
func TestBDATChunkReadAheadNotLineLimited(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	gw := startGateway(t, hop.Addr, withOptions(func(o *Options) { o.MaxLineLength = 4000 }))
	c := dialRaw(t, gw.smtpAddr)
	if g := c.reply(); !strings.HasPrefix(g, "220 ") {
		t.Fatalf("greeting %q", g)
	}
	c.expect("EHLO client.test", "250")
	c.expect("MAIL FROM:<a@example.com>", "250")
	c.expect("RCPT TO:<b@example.net>", "250")
	chunk := "From: <a@example.com>\r\nTo: <b@example.net>\r\nSubject: chunked\r\n\r\n" +
		strings.Repeat("a short line of text\r\n", 500) + // 11 KB
		strings.Repeat("x", 5000) + "\r\nend\r\n"
	c.send(fmt.Sprintf("BDAT %d LAST\r\n%sNOOP\r\n", len(chunk), chunk))
	if got := c.reply(); strings.Contains(got, "Too long line") {
		t.Fatalf("BDAT: got %q: the chunk read ahead with the command line was taken for an over-long command", got)
	}
	if got := c.reply(); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("NOOP after BDAT: got %q, want 250 (the session goes on)", got)
	}
}
