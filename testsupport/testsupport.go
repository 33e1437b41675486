// Package testsupport owns the helpers tests of several packages share:
// wait loops with generous deadlines (never timed assertions), message
// builders and free ports for daemons a test starts. It imports nothing of
// attachgate, so any package's tests may use it.
package testsupport

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"mime"
	"testing"
	"time"
)

// WaitTimeout is how long WaitFor waits: generous, for a loaded CI machine.
const WaitTimeout = 60 * time.Second

// WaitFor polls cond until it holds, and fails the test naming what it
// waited for after WaitTimeout.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(WaitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", WaitTimeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// MailWithAttachment builds a multipart/mixed mail with a text body and
// one base64 attachment whose name is encoded per RFC 2231 when not ASCII;
// every mail gets its own Message-ID.
func MailWithAttachment(subject, body, name string, content []byte) []byte {
	var b bytes.Buffer
	boundary := "=_attachgate_test_boundary"
	fmt.Fprintf(&b, "From: Alice <alice@example.com>\r\nTo: Bob <bob@example.net>\r\n")
	fmt.Fprintf(&b, "Subject: %s\r\nMessage-ID: <test-%d@example.com>\r\nMIME-Version: 1.0\r\n", mime.QEncoding.Encode("utf-8", subject), time.Now().UnixNano())
	fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n", boundary)
	fmt.Fprintf(&b, "--%s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n%s\r\n", boundary, body)
	disp := mime.FormatMediaType("attachment", map[string]string{"filename": name})
	fmt.Fprintf(&b, "--%s\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: %s\r\n\r\n", boundary, disp)
	enc := base64.StdEncoding.EncodeToString(content)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	fmt.Fprintf(&b, "--%s--\r\n", boundary)
	return b.Bytes()
}
