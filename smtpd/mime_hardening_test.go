package smtpd

import (
	"regexp"
	"testing"

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
