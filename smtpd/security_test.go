package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/relay"
	"github.com/attachgate/attachgate/smtptest"
	"github.com/attachgate/attachgate/users"
)

func wantCode(t *testing.T, what string, err error, code int, enhanced smtp.EnhancedCode) *smtp.SMTPError {
	t.Helper()
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != code || (enhanced != smtp.EnhancedCode{} && se.EnhancedCode != enhanced) {
		t.Fatalf("%s: got %v, want %d %v", what, err, code, enhanced)
	}
	return se
}

// newUsers writes a users file with cheap bcrypt hashes (the format
// accepts them), so tests do not spend seconds in argon2.
func newUsers(t testing.TB, pairs ...string) *users.DB {
	t.Helper()
	path := filepath.Join(t.TempDir(), "users")
	var file strings.Builder
	for i := 0; i+1 < len(pairs); i += 2 {
		h, err := bcrypt.GenerateFromPassword([]byte(pairs[i+1]), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		file.WriteString(pairs[i] + ":" + string(h) + "\n")
	}
	if err := os.WriteFile(path, []byte(file.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := users.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// authGateway trusts no client network: only authenticated senders relay.
func authGateway(t testing.TB, hopAddr string, allowLogin bool, extra ...gatewayOption) (*gateway, *smtptest.Cert) {
	cert := smtptest.NewCert(t, "gw.test")
	opts := append([]gatewayOption{withTrusted("10.0.0.0/8"), withTLS(cert.ServerConfig()),
		withUsers(newUsers(t, "alice", "correct horse battery"), allowLogin)}, extra...)
	return startGateway(t, hopAddr, opts...), cert
}

func dialStartTLS(t *testing.T, addr string, cert *smtptest.Cert) *smtp.Client {
	t.Helper()
	c, err := smtp.DialStartTLS(addr, cert.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestAuthOnlyOverTLS(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	gw, cert := authGateway(t, hop.Addr, false)

	// Plain text: AUTH is not offered, and relaying is denied.
	c := gw.dial()
	if ok, _ := c.Extension("AUTH"); ok {
		t.Fatal("AUTH offered without TLS")
	}
	err := c.Auth(sasl.NewPlainClient("", "alice", "correct horse battery"))
	wantCode(t, "AUTH without TLS", err, 523, smtp.EnhancedCode{5, 7, 10})
	wantCode(t, "MAIL without AUTH", c.Mail("alice@example.com", nil), 550, smtp.EnhancedCode{5, 7, 1})

	// After STARTTLS: wrong password refused, right one relays.
	c = dialStartTLS(t, gw.smtpAddr, cert)
	if ok, mechs := c.Extension("AUTH"); !ok || mechs != "PLAIN" {
		t.Fatalf("AUTH over TLS = %v %q, want PLAIN", ok, mechs)
	}
	wantCode(t, "wrong password", c.Auth(sasl.NewPlainClient("", "alice", "wrong")), 535, smtp.EnhancedCode{5, 7, 8})
	if err := c.Auth(sasl.NewPlainClient("", "alice", "correct horse battery")); err != nil {
		t.Fatalf("right password: %v", err)
	}
	if err := c.Mail("alice@example.com", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("bob@example.net", nil); err != nil {
		t.Fatal(err)
	}
	w, _ := c.Data()
	io.WriteString(w, "Subject: authed\r\n\r\nhello\r\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(hop.Messages()); n != 1 {
		t.Fatalf("next hop got %d messages", n)
	}
	if got := hop.Messages()[0].Data; !bytes.Contains(got, []byte("with ESMTPSA")) {
		t.Errorf("Received header does not say ESMTPSA:\n%s", got)
	}

	// The authenticated user is recorded; the failure is audited.
	var buf bytes.Buffer
	today := time.Now().UTC().Format("2006-01-02")
	q, _ := audit.ParseDateRange(today, today, time.UTC)
	if err := gw.audit.Export(context.Background(), q, &buf, "jsonl", false); err != nil {
		t.Fatal(err)
	}
	mustContain(t, buf.Bytes(), `"type":"auth.failed"`, `"auth_user":"alice"`)
}

func TestImplicitTLSListener(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	gw, cert := authGateway(t, hop.Addr, false)
	c, err := smtp.DialTLS(gw.tlsAddr, cert.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", "alice", "correct horse battery")); err != nil {
		t.Fatalf("AUTH on the implicit TLS listener: %v", err)
	}
	if err := c.Mail("alice@example.com", nil); err != nil {
		t.Fatal(err)
	}
}

func TestAuthLogin(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	gw, cert := authGateway(t, hop.Addr, true)
	c := dialStartTLS(t, gw.smtpAddr, cert)
	if _, mechs := c.Extension("AUTH"); mechs != "PLAIN LOGIN" {
		t.Fatalf("mechanisms %q, want PLAIN LOGIN", mechs)
	}
	wantCode(t, "LOGIN wrong", c.Auth(sasl.NewLoginClient("alice", "nope")), 535, smtp.EnhancedCode{5, 7, 8})
	if err := c.Auth(sasl.NewLoginClient("alice", "correct horse battery")); err != nil {
		t.Fatalf("LOGIN: %v", err)
	}
	if err := c.Mail("alice@example.com", nil); err != nil {
		t.Fatal(err)
	}
}

func TestFailedAuthIsRateLimited(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	gw, cert := authGateway(t, hop.Addr, false, withOptions(func(o *Options) { o.AuthMaxFailures = 3 }))
	for i := 0; i < 3; i++ {
		c := dialStartTLS(t, gw.smtpAddr, cert)
		wantCode(t, "wrong password", c.Auth(sasl.NewPlainClient("", "alice", "guess")), 535, smtp.EnhancedCode{5, 7, 8})
	}
	c := dialStartTLS(t, gw.smtpAddr, cert)
	wantCode(t, "locked out", c.Auth(sasl.NewPlainClient("", "alice", "correct horse battery")), 454, smtp.EnhancedCode{4, 7, 0})
}

func TestNextHopTLS(t *testing.T) {
	hopCert := smtptest.NewCert(t, "hop.test")
	otherCert := smtptest.NewCert(t, "other.test")
	tlsHop := smtptest.NewServer(t, smtptest.Behaviour{}, smtptest.WithTLS(hopCert.ServerConfig()))
	plainHop := smtptest.NewServer(t, smtptest.Behaviour{})
	tests := []struct {
		name    string
		hop     *smtptest.Server
		mode    string
		cfg     *tls.Config
		wantErr bool
		wantTLS bool
	}{
		{"required, verified", tlsHop, relay.TLSRequired, hopCert.ClientConfig(), false, true},
		{"required, not offered", plainHop, relay.TLSRequired, hopCert.ClientConfig(), true, false},
		{"required, unknown CA", tlsHop, relay.TLSRequired, otherCert.ClientConfig(), true, false},
		{"opportunistic, offered", tlsHop, relay.TLSOpportunistic, hopCert.ClientConfig(), false, true},
		{"opportunistic, not offered", plainHop, relay.TLSOpportunistic, hopCert.ClientConfig(), false, false},
		{"required, lab skip-verify", tlsHop, relay.TLSRequired, &tls.Config{InsecureSkipVerify: true}, false, true},
		{"none", tlsHop, relay.TLSNone, nil, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(tt.hop.Messages())
			gw := startGateway(t, tt.hop.Addr, withOptions(func(o *Options) {
				o.Hop = &relay.SMTPHop{Address: tt.hop.Addr, HeloName: "gw.test", Timeout: 10 * time.Second, TLS: tt.mode, TLSConfig: tt.cfg}
			}))
			err := gw.send("a@example.com", []string{"b@example.net"}, []byte("Subject: t\r\n\r\nx\r\n"))
			if tt.wantErr {
				wantCode(t, "send", err, 451, smtp.EnhancedCode{4, 4, 1})
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			msgs := tt.hop.Messages()
			if len(msgs) != before+1 || msgs[len(msgs)-1].TLS != tt.wantTLS {
				t.Fatalf("relayed over TLS=%v, want %v", msgs[len(msgs)-1].TLS, tt.wantTLS)
			}
		})
	}
}

func TestConnectionLimitPerClient(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	gw := startGateway(t, hop.Addr, withOptions(func(o *Options) { o.MaxConnectionsPerClient = 2 }))
	a, b := gw.dial(), gw.dial()
	_, _ = a, b
	conn, err := net.Dial("tcp", gw.smtpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, _ := bufio.NewReader(conn).ReadString('\n')
	if !strings.HasPrefix(line, "421 4.7.0") {
		t.Fatalf("third connection got %q, want 421 4.7.0", line)
	}
	a.Quit()
	// A slot is free again once a session ends.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := smtp.Dial(gw.smtpAddr)
		if err == nil && c.Hello("again.test") == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no slot after a session ended")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestTooManyRecipients(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	gw := startGateway(t, hop.Addr, withOptions(func(o *Options) { o.MaxRecipients = 2 }))
	c := gw.dial()
	c.Mail("a@example.com", nil)
	c.Rcpt("b1@example.net", nil)
	c.Rcpt("b2@example.net", nil)
	wantCode(t, "third RCPT", c.Rcpt("b3@example.net", nil), 452, smtp.EnhancedCode{4, 5, 3})
}

func TestMIMETooComplex(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	gw := startGateway(t, hop.Addr)
	var b strings.Builder
	b.WriteString("Subject: deep\r\nMIME-Version: 1.0\r\n")
	const depth = 100
	for i := 0; i < depth; i++ {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n", i, i)
	}
	b.WriteString("Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=x.bin\r\n\r\nxx\r\n")
	for i := depth - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--b%d--\r\n", i)
	}
	err := gw.send("a@example.com", []string{"b@example.net"}, []byte(b.String()))
	wantCode(t, "deep MIME", err, 554, smtp.EnhancedCode{5, 6, 0})
	if len(hop.Messages()) != 0 {
		t.Fatal("a refused message reached the next hop")
	}
}

// rawSession speaks SMTP over a plain socket, for input no client library
// would send.
func rawSession(t *testing.T, addr string, script string) string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	go func() {
		conn.Write([]byte(script))
	}()
	out, _ := io.ReadAll(conn)
	return string(out)
}

func TestHostileClients(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	gw := startGateway(t, hop.Addr, withOptions(func(o *Options) { o.MaxLineLength = 2000 }))
	tests := []struct {
		name, script, want string
	}{
		{"binary garbage", "\x00\xff\xfe\x01\x02garbage\r\nQUIT\r\n", "501 5.5.2"},
		{"100 KB command", "EHLO " + strings.Repeat("a", 100<<10) + "\r\n", "500 5.4.0"},
		{"DATA before MAIL", "EHLO x\r\nDATA\r\nQUIT\r\n", "502 5.5.1"},
		{"RCPT before MAIL", "EHLO x\r\nRCPT TO:<b@example.net>\r\nQUIT\r\n", "502 5.5.1"},
		{"pipelined junk", "EHLO x\r\nFOO\r\nBAR\r\nBAZ\r\nQUIT\r\n", "501 5.5.2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := rawSession(t, gw.smtpAddr, tt.script)
			if !strings.Contains(out, tt.want) {
				t.Fatalf("replies %q do not contain %q", out, tt.want)
			}
		})
	}
	// The daemon keeps serving everyone else.
	if err := gw.send("a@example.com", []string{"b@example.net"}, []byte("Subject: ok\r\n\r\nstill here\r\n")); err != nil {
		t.Fatalf("after hostile clients: %v", err)
	}
}

// TestSMTPSmuggling sends a message whose body hides a second transaction
// behind bare-LF end-of-data markers; the gateway must treat it as one
// message and relay it so the next hop cannot split it either.
func TestSMTPSmuggling(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	gw := startGateway(t, hop.Addr)
	for _, marker := range []string{"\n.\n", "\r.\r", "\n.\r\n", "\r\n.\n"} {
		before := len(hop.Messages())
		script := "EHLO x\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n" +
			"Subject: first\r\n\r\nhello" + marker +
			"MAIL FROM:<admin@example.com>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\nQUIT\r\n"
		out := rawSession(t, gw.smtpAddr, script)
		if strings.Count(out, "queued") > 1 {
			t.Fatalf("marker %q: more than one message accepted:\n%s", marker, out)
		}
		msgs := hop.Messages()[before:]
		if len(msgs) != 1 {
			t.Fatalf("marker %q: next hop got %d messages", marker, len(msgs))
		}
		for _, to := range msgs[0].To {
			if to == "victim@example.net" {
				t.Fatalf("marker %q: smuggled recipient reached the next hop", marker)
			}
		}
	}
}
