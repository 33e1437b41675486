package notify

import (
	"bytes"
	"strings"
	"testing"

	"github.com/emersion/go-message/textproto"
)

// FuzzDSNOriginalHeaders: whatever the original message holds, the DSN is
// CRLF, 7-bit, no line over 998 bytes, parses, and its rfc822-headers part
// is the original's header section with CRLF line ends.
func FuzzDSNOriginalHeaders(f *testing.F) {
	f.Add([]byte(originalHeaders + "body\r\n"))
	f.Add([]byte("Subject: x\n\nbody"))
	f.Add([]byte("X: " + strings.Repeat("y", 5000) + "\r\nZ: \xff\xfe\r\r\n\r\n"))
	f.Add([]byte("no header end"))
	f.Add([]byte("\r\n\r\nbody only"))
	f.Add([]byte("=?utf-8?q?a?=\r\n.\r\n..\r\n"))
	f.Add([]byte("X: " + strings.Repeat("z", 4092) + "\r\nY: split CRLF at the read size\r\n\r\n"))
	f.Add([]byte("X: " + strings.Repeat("z", 4092) + "\rY: bare CR at the read size\r\n\r\n"))
	ring := newRing(f, f.TempDir())
	c := newComposer(f, "both", ring)
	f.Fuzz(func(t *testing.T, orig []byte) {
		m, err := c.DSN(DSN{To: "alice@corp.example", Subject: string(orig[:min(len(orig), 200)]),
			Reason: string(orig[:min(len(orig), 100)]),
			Recipients: []DSNRecipient{{Address: "bob@example.net", Action: ActionFailed,
				Diagnostic: string(orig[:min(len(orig), 300)])}},
			OriginalHeaders: bytes.NewReader(orig)})
		if err != nil {
			t.Fatal(err)
		}
		raw := render(t, m)
		top := parse(t, raw)
		if len(top.parts) != 3 {
			t.Fatalf("%d parts", len(top.parts))
		}
		want := headerSection(orig)
		if top.parts[2].body != want {
			t.Fatalf("rfc822-headers part %q, want %q", top.parts[2].body, want)
		}
		if b := statusBlocks(t, top.parts[1].body); len(b) != 2 || b[1].Get("Final-Recipient") != "rfc822; bob@example.net" {
			t.Fatalf("delivery-status blocks %v", b)
		}
	})
}

// headerSection is the reference for copyHeaderSection: the lines before
// the first empty one, each ended by CRLF.
func headerSection(b []byte) string {
	var out strings.Builder
	for len(b) > 0 && out.Len() < maxCopiedHeader {
		i := bytes.IndexByte(b, '\n')
		var line []byte
		if i < 0 {
			line, b = b, nil
		} else {
			line, b = b[:i], b[i+1:]
			line = bytes.TrimSuffix(line, []byte("\r"))
			if len(line) == 0 {
				break
			}
		}
		out.Write(bytes.ReplaceAll(line, []byte("\r"), []byte(" ")))
		out.WriteString("\r\n")
	}
	return out.String()
}

// FuzzIsGatewayMail: hostile header values never panic the check and never
// pass it without the marker key.
func FuzzIsGatewayMail(f *testing.F) {
	f.Add("auto-generated", "code; v=1; mac=AAAA", "<a@b>", "Tue, 01 Dec 2026 09:00:00 +0000", "bob@example.net", "bob@example.net")
	f.Add("auto-replied", "dsn; v=1; mac=", "a@b", "garbage", "=?utf-8?b?5bGx?= <x@y>", "x@y")
	f.Add("", "", "", "", "", "")
	marker := NewMarker([]byte("0123456789abcdef0123456789abcdef"))
	f.Fuzz(func(t *testing.T, as, notice, id, date, to, rcpt string) {
		var h textproto.Header
		h.Add("Auto-Submitted", as)
		h.Add(HeaderNotice, notice)
		h.Add("Message-Id", id)
		h.Add("Date", date)
		h.Add("To", to)
		if marker.IsGatewayMail(&h, []string{rcpt}) {
			t.Fatalf("forged header accepted: %v", h.Map())
		}
	})
}
