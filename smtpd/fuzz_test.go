package smtpd

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/attachgate/attachgate/smtptest"
)

var replyLineRE = regexp.MustCompile(`^[2-5][0-9][0-9][ -]`)

// FuzzSession feeds raw bytes to a live gateway: every line it answers must
// be a well-formed SMTP reply, and it must go on serving afterwards.
func FuzzSession(f *testing.F) {
	for _, seed := range []string{
		"EHLO x\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\nSubject: s\r\n\r\nbody\r\n.\r\nQUIT\r\n",
		"HELO x\r\nMAIL FROM:<>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n\r\n.\r\n",
		"EHLO x\r\nBDAT 5 LAST\r\nhello",
		"EHLO x\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nBDAT 12\r\nSubject: s\r\n\r\nBDAT 6 LAST\r\nbody\r\nQUIT\r\n",
		"EHLO x\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nBDAT 3\r\nabcDATA\r\nBDAT 0 LAST\r\n",
		"EHLO x\r\nMAIL FROM:<\"q@x> RET=FULL\"@example.com> RET=HDRS ENVID=a+2Bb\r\nRCPT TO:<b@example.net> NOTIFY=SUCCESS ORCPT=rfc822;b@example.net\r\nDATA\r\n..x\r\n.\r\n",
		"EHLO x\r\nMAIL FROM:<a@example.com> SIZE=99999999999\r\n",
		"EHLO x\r\nAUTH PLAIN AGFsaWNlAHB3\r\nSTARTTLS\r\n",
		"\x00\x01\x02\xff\r\n",
		"EHLO x\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Disposition: attachment; filename=a\r\n\r\nx\r\n--b--\r\n.\r\n",
	} {
		f.Add([]byte(seed))
	}
	hop := smtptest.NewServer(f, smtptest.Behaviour{})
	gw := startGateway(f, hop.Addr, withOptions(func(o *Options) { o.ReadTimeout = 2 * time.Second }))
	f.Fuzz(func(t *testing.T, input []byte) {
		conn, err := net.Dial("tcp", gw.smtpAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		go func() {
			conn.Write(input)
			conn.Write([]byte("\r\n.\r\nQUIT\r\n"))
		}()
		sc := bufio.NewScanner(conn)
		sc.Buffer(make([]byte, 64<<10), 64<<10)
		for sc.Scan() {
			line := strings.TrimRight(sc.Text(), "\r")
			if !replyLineRE.MatchString(line) {
				t.Fatalf("malformed reply line %q", line)
			}
		}
		// Still serving.
		c, err := net.DialTimeout("tcp", gw.smtpAddr, 2*time.Second)
		if err != nil {
			t.Fatalf("gateway stopped accepting: %v", err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		greeting, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if !strings.HasPrefix(greeting, "220 ") {
			t.Fatalf("gateway greeting after fuzz input: %q", greeting)
		}
	})
}

// FuzzAuthSession feeds raw bytes to a gateway that trusts no network,
// over implicit TLS, so AUTH (PLAIN and LOGIN) and what only authenticated
// clients reach (MAIL, RCPT, DATA, BDAT chunks) get hostile input: every
// line it answers must be a well-formed SMTP reply, and it must go on
// serving afterwards.
func FuzzAuthSession(f *testing.F) {
	plain := func(user, pass string) string {
		return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
	}
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	const pass = "correct horse battery" // alice's, in authGateway
	for _, seed := range []string{
		"EHLO x\r\nAUTH PLAIN " + plain("alice", pass) + "\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nBDAT 12\r\nSubject: s\r\n\r\nBDAT 6 LAST\r\nbody\r\nQUIT\r\n",
		"EHLO x\r\nAUTH PLAIN\r\n" + plain("alice", pass) + "\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\nSubject: s\r\n\r\nx\r\n.\r\n",
		"EHLO x\r\nAUTH LOGIN\r\n" + b64("alice") + "\r\n" + b64(pass) + "\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nBDAT 5 LAST\r\nhello",
		"EHLO x\r\nAUTH LOGIN " + b64("alice") + "\r\n" + b64("wrong") + "\r\nAUTH PLAIN " + plain("alice", pass) + "\r\nAUTH PLAIN " + plain("alice", pass) + "\r\n",
		"EHLO x\r\nAUTH PLAIN " + b64("bob\x00alice\x00pw") + "\r\nAUTH PLAIN *\r\nAUTH PLAIN =\r\nAUTH CRAM-MD5\r\nAUTH\r\n",
		"EHLO x\r\nAUTH PLAIN !!notbase64\r\nAUTH LOGIN\r\n*\r\nMAIL FROM:<a@example.com>\r\nBDAT 4 LAST\r\nxxxx",
		"EHLO x\r\nAUTH PLAIN " + plain("alice", pass) + "\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nBDAT 99999999999\r\nBDAT -1\r\nBDAT 3 MORE\r\nRSET\r\n",
		"EHLO x\r\nAUTH PLAIN " + plain("alice", pass) + "\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nBDAT 10\r\nabcBDAT 1 LAST\r\n",
		"EHLO x\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nBDAT 5 LAST\r\nhello",
	} {
		f.Add([]byte(seed))
	}
	hop := smtptest.NewServer(f, smtptest.Behaviour{})
	gw, cert := authGateway(f, hop.Addr, true, withOptions(func(o *Options) {
		// go-smtp's deadline covers the implicit-TLS handshake too: at
		// 500 ms a loaded machine failed handshakes (EOF at tls.Dial).
		o.ReadTimeout = 2 * time.Second
		// Fuzzing guesses passwords all the time: no lockout here.
		o.AuthMaxFailures = 1 << 30
	}))
	f.Fuzz(func(t *testing.T, input []byte) {
		conn, err := tls.Dial("tcp", gw.tlsAddr, cert.ClientConfig())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		go func() {
			conn.Write(input)
			conn.Write([]byte("\r\n.\r\nQUIT\r\n"))
		}()
		sc := bufio.NewScanner(conn)
		sc.Buffer(make([]byte, 64<<10), 64<<10)
		for sc.Scan() {
			line := strings.TrimRight(sc.Text(), "\r")
			if !replyLineRE.MatchString(line) {
				t.Fatalf("malformed reply line %q", line)
			}
		}
		// Still serving.
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", gw.tlsAddr, cert.ClientConfig())
		if err != nil {
			t.Fatalf("gateway stopped accepting: %v", err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		greeting, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if !strings.HasPrefix(greeting, "220 ") {
			t.Fatalf("gateway greeting after fuzz input: %q", greeting)
		}
	})
}
