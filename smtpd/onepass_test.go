package smtpd

import (
	"bytes"
	"encoding/base64"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/attachgate/attachgate/smtptest"
)

// TestLateSealedPartRelaysWholeMessage: attachments are cut out of the
// spool as they stream into the vault; when a later part (a body text
// with inline PGP armour) makes the message one that must pass untouched, the message still
// reaches the next hop byte for byte, and nothing stays stored.
func TestLateSealedPartRelaysWholeMessage(t *testing.T) {
	pdf := make([]byte, 200<<10)
	rand.NewChaCha8([32]byte{3}).Read(pdf)
	var b64 strings.Builder
	enc := base64.StdEncoding.EncodeToString(pdf)
	for len(enc) > 76 {
		b64.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b64.WriteString(enc + "\r\n")
	msg := "From: alice@example.com\r\nTo: bob@example.net\r\nSubject: report and encrypted note\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"m\"\r\n\r\n--m\r\nContent-Type: text/plain\r\n\r\nSee both.\r\n" +
		"--m\r\nContent-Type: application/pdf; name=\"r.pdf\"\r\nContent-Disposition: attachment; filename=\"r.pdf\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n" + b64.String() +
		"--m\r\nContent-Type: text/plain\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n\r\nhQEMA1uS4JDnSmv4AQf/ZSu8vW5z\r\n-----END PGP MESSAGE-----\r\n--m--\r\n"

	// The same with an attachment whose body is empty: a cut of nothing.
	empty := "From: alice@example.com\r\nTo: bob@example.net\r\nSubject: empty file and encrypted note\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"m\"\r\n\r\n--m\r\nContent-Type: text/plain\r\n\r\nSee both.\r\n" +
		"--m\r\nContent-Type: application/pdf; name=\"e.pdf\"\r\nContent-Disposition: attachment; filename=\"e.pdf\"\r\n\r\n" +
		"--m\r\nContent-Type: text/plain\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n\r\nhQEMA1uS4JDnSmv4AQf/ZSu8vW5z\r\n-----END PGP MESSAGE-----\r\n--m--\r\n"

	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	gw := startGateway(t, hop.Addr)
	for i, msg := range []string{msg, empty} {
		if err := gw.send("alice@example.com", []string{"bob@example.net"}, []byte(msg)); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		msgs := hop.Messages()
		if len(msgs) != i+1 {
			t.Fatalf("next hop got %d messages", len(msgs))
		}
		got := msgs[i].Data
		if !bytes.HasPrefix(got, []byte("Received: ")) || !bytes.HasSuffix(got, []byte(msg)) {
			t.Fatalf("message %d not relayed byte for byte (%d bytes, want %d after Received)", i, len(got), len(msg))
		}
	}
	if n := fileCount(t, filepath.Join(gw.dir, "blobs")); n != 0 {
		t.Errorf("%d blobs stored", n)
	}
	gw.assertNoLeftovers()
}
