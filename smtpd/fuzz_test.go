package smtpd

import (
	"bufio"
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
