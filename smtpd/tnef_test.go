package smtpd

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"io"
	"mime"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/attachgate/attachgate/mailpart"
	"github.com/attachgate/attachgate/smtptest"
)

// winmailDat builds a TNEF stream as Outlook writes it: each file with an
// 8.3 title, its bytes, then MAPI properties with the long file name.
func winmailDat(files ...[3]string) []byte { // title, long name, content
	var b bytes.Buffer
	le := func(w *bytes.Buffer, v any) { binary.Write(w, binary.LittleEndian, v) }
	attr := func(level byte, id uint32, data []byte) {
		b.WriteByte(level)
		le(&b, id)
		le(&b, uint32(len(data)))
		b.Write(data)
		var sum uint16
		for _, c := range data {
			sum += uint16(c)
		}
		le(&b, sum)
	}
	le(&b, uint32(0x223E9F78))
	le(&b, uint16(1))
	attr(1, 0x00069007, []byte{0xe4, 0x04, 0, 0, 0, 0, 0, 0}) // code page 1252
	for _, f := range files {
		attr(2, 0x00069002, make([]byte, 14))
		attr(2, 0x00018010, []byte(f[0]+"\x00"))
		attr(2, 0x0006800F, []byte(f[2]))
		var props bytes.Buffer
		name := []byte(f[1] + "\x00")
		le(&props, uint32(1))
		le(&props, uint32(0x001E)|0x3707<<16) // PR_ATTACH_LONG_FILENAME, PT_STRING8
		le(&props, uint32(1))
		le(&props, uint32(len(name)))
		props.Write(name)
		props.Write(make([]byte, (4-len(name)%4)%4))
		attr(2, 0x00069005, props.Bytes())
	}
	return b.Bytes()
}

func outlookMail(winmail []byte) []byte {
	enc := base64.StdEncoding.EncodeToString(winmail)
	var lines []string
	for len(enc) > 76 {
		lines, enc = append(lines, enc[:76]), enc[76:]
	}
	lines = append(lines, enc)
	return []byte("From: alice@example.com\r\nTo: bob@example.net\r\nSubject: budget\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nThe budget is attached.\r\n" +
		"--b\r\nContent-Type: application/ms-tnef; name=\"winmail.dat\"\r\nContent-Disposition: attachment; filename=\"winmail.dat\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n" + strings.Join(lines, "\r\n") + "\r\n--b--\r\n")
}

// Issue 9.18: a file inside winmail.dat cannot slip past a policy, and is
// linked under its real name.
func TestTNEFFilesArePolicedAndLinked(t *testing.T) {
	budget := strings.Repeat("PK\x03\x04 spreadsheet ", 1000)
	msg := outlookMail(winmailDat([3]string{"BUDGET~1.XLS", "budget 2026.xlsx", budget}, [3]string{"NOTES.TXT", "notes.txt", "hello"}))

	g := startPolicyGateway(t, `
- name: no-spreadsheets
  match: {extensions: [".xlsx"]}
  action: reject
`, time.Hour)
	err := g.send("alice@example.com", []string{"bob@example.net"}, msg)
	wantCode(t, "xlsx inside winmail.dat", err, 550, smtp.EnhancedCode{5, 7, 1})
	if len(g.hop.Messages()) != 0 {
		t.Fatal("a refused message reached the next hop")
	}

	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	gw := startGateway(t, hop.Addr)
	if err := gw.send("alice@example.com", []string{"bob@example.net"}, msg); err != nil {
		t.Fatal(err)
	}
	relayed := hop.Messages()[0].Data
	if bytes.Contains(relayed, []byte("winmail.dat")) {
		t.Errorf("winmail.dat still in the mail:\n%s", truncate(relayed))
	}
	var text string
	if _, err := mailpart.Walk(bytes.NewReader(relayed), mailpart.Limits{}, func(p *mailpart.Part, body io.Reader) error {
		b, err := io.ReadAll(body)
		if p.MediaType == "text/plain" {
			text += string(b)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	links := regexp.MustCompile(`https?://\S+/d/[A-Za-z0-9_-]+`).FindAllString(text, -1)
	if len(links) != 2 || !strings.Contains(text, "budget 2026.xlsx") || !strings.Contains(text, "notes.txt") {
		t.Fatalf("notice:\n%s", text)
	}
	for i, want := range []struct{ name, content string }{{"budget 2026.xlsx", budget}, {"notes.txt", "hello"}} {
		resp, data := download(t, links[i])
		_, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Disposition"))
		if string(data) != want.content || params["filename"] != want.name {
			t.Errorf("download %d: name %q (%s), %d bytes", i, params["filename"], resp.Header.Get("Content-Disposition"), len(data))
		}
	}
}
