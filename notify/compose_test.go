package notify

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"

	"github.com/attachgate/attachgate/notify/mailtmpl"
)

var codeData = mailtmpl.CodeData{Code: "40318277", Expires: time.Date(2026, 12, 1, 10, 40, 0, 0, time.UTC),
	Sender: "alice@corp.example", Subject: "見積書の送付について"}

func TestComposeNoticeStructure(t *testing.T) {
	ring := newRing(t, t.TempDir())
	tests := []struct {
		lang        string
		subject     string // decoded Subject header
		contentLang string
		bodyHas     []string
		bodyLacks   []string
	}{
		{"en", "Your verification code: 40318277", "en",
			[]string{"40318277", "Enter it on the download page", "2026-12-01 19:40 JST", "見積書の送付について"},
			[]string{"確認コードは"}},
		{"ja", "確認コード: 40318277", "ja",
			[]string{"40318277", "確認コードは次のとおりです", "2026-12-01 19:40 JST", "「見積書の送付について」"},
			[]string{"Enter it"}},
		{"both", "Your verification code: 40318277 / 確認コード: 40318277", "en, ja",
			[]string{"Enter it on the download page", "確認コードは次のとおりです"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.lang, func(t *testing.T) {
			c := newComposer(t, tt.lang, ring)
			m, err := c.Compose(Notice{Kind: "code", To: []string{"bob@example.net", "carol@example.org"},
				Data: codeData, About: "msg-1"})
			if err != nil {
				t.Fatal(err)
			}
			raw := render(t, m)
			top := parse(t, raw)
			h := mail.Header{Header: top.header}

			subj, err := h.Subject()
			if err != nil || subj != tt.subject {
				t.Errorf("Subject = %q (%v), want %q", subj, err, tt.subject)
			}
			rawSubj := top.header.Get("Subject")
			if strings.ContainsFunc(tt.subject, func(r rune) bool { return r > 0x7e }) && !strings.Contains(rawSubj, "=?utf-8?") {
				t.Errorf("non-ASCII subject not RFC 2047-encoded: %q", rawSubj)
			}
			if got := top.header.Get("Auto-Submitted"); got != "auto-generated" {
				t.Errorf("Auto-Submitted = %q", got)
			}
			if got := top.header.Get("MIME-Version"); got != "1.0" {
				t.Errorf("MIME-Version = %q", got)
			}
			if got := top.header.Get("Content-Language"); got != tt.contentLang {
				t.Errorf("Content-Language = %q, want %q", got, tt.contentLang)
			}
			if id, err := h.MessageID(); err != nil || id != m.MessageID || !strings.HasSuffix(id, "@gw.corp.example") {
				t.Errorf("Message-ID = %q (%v), want %q", id, err, m.MessageID)
			}
			if d, err := h.Date(); err != nil || time.Since(d) > time.Hour || time.Since(d) < -time.Minute {
				t.Errorf("Date = %v (%v)", d, err)
			}
			from, err := h.AddressList("From")
			if err != nil || len(from) != 1 || from[0].Address != "attachgate@corp.example" || from[0].Name != "Attachgate" {
				t.Errorf("From = %v (%v)", from, err)
			}
			to, err := h.AddressList("To")
			if err != nil || len(to) != 2 || to[0].Address != "bob@example.net" || to[1].Address != "carol@example.org" {
				t.Errorf("To = %v (%v)", to, err)
			}
			if top.header.Get(HeaderNotice) == "" {
				t.Errorf("no %s header", HeaderNotice)
			}
			if ct, _ := top.contentType(t); ct != "multipart/alternative" || len(top.parts) != 2 {
				t.Fatalf("top = %s with %d parts, want multipart/alternative with 2", ct, len(top.parts))
			}
			for i, want := range []string{"text/plain", "text/html"} {
				p := top.parts[i]
				ct, params := p.contentType(t)
				if ct != want || params["charset"] != "utf-8" {
					t.Errorf("part %d = %s %v, want %s; charset=utf-8", i, ct, params, want)
				}
				if cte := p.header.Get("Content-Transfer-Encoding"); cte != "quoted-printable" {
					t.Errorf("part %d Content-Transfer-Encoding = %q", i, cte)
				}
				for _, s := range tt.bodyHas {
					if !strings.Contains(p.body, s) {
						t.Errorf("part %s lacks %q:\n%s", ct, s, p.body)
					}
				}
				for _, s := range tt.bodyLacks {
					if strings.Contains(p.body, s) {
						t.Errorf("part %s has %q (other language)", ct, s)
					}
				}
			}
			if !strings.Contains(top.parts[1].body, `<html lang=`) {
				t.Errorf("html part is not a document:\n%s", top.parts[1].body)
			}
			if m.NullSender || m.Kind != "code" || m.About != "msg-1" || len(m.To) != 2 {
				t.Errorf("mail envelope = %+v", m)
			}
		})
	}
}

func TestComposeEscapesHTML(t *testing.T) {
	ring := newRing(t, t.TempDir())
	c := newComposer(t, "en", ring)
	d := codeData
	d.Subject = `<script>alert(1)</script> & "q"`
	d.Sender = `x"><img src=x onerror=alert(1)>@corp.example`
	m, err := c.Compose(Notice{Kind: "code", To: []string{"bob@example.net"}, Data: d})
	if err != nil {
		t.Fatal(err)
	}
	html := parse(t, render(t, m)).parts[1].body
	for _, bad := range []string{"<script>", "<img"} {
		if strings.Contains(html, bad) {
			t.Errorf("html part contains %q unescaped:\n%s", bad, html)
		}
	}
	if !strings.Contains(html, "&lt;script&gt;") {
		t.Errorf("subject not shown escaped:\n%s", html)
	}
}

// TestHeaderInjection: user text (an original subject, a reply text) and
// configured names never make a header of their own.
func TestHeaderInjection(t *testing.T) {
	ring := newRing(t, t.TempDir())
	c := newComposer(t, "en", ring)
	payloads := []string{
		"hello\r\nBcc: evil@attacker.example",
		"hello\nBcc: evil@attacker.example",
		"hello\rBcc: evil@attacker.example",
		"hello\r\n\r\nbody injected",
		"hello\u2028Bcc: evil@attacker.example",
		"=?utf-8?q?hi=0D=0ABcc:_evil@attacker.example?=",
		"件名\r\nBcc: evil@attacker.example",
		strings.Repeat("x", 1200) + "\r\nBcc: evil@attacker.example",
	}
	check := func(t *testing.T, raw []byte) {
		t.Helper()
		top := parse(t, raw)
		if top.header.Has("Bcc") {
			t.Errorf("a Bcc header was injected: %q", top.header.Get("Bcc"))
		}
		hdr := raw[:bytes.Index(raw, []byte("\r\n\r\n"))]
		if bytes.Contains(hdr, []byte("\r\nBcc:")) || bytes.Contains(hdr, []byte("\r\nbody injected")) {
			t.Errorf("injected line in header:\n%s", hdr)
		}
		subj, _ := (&mail.Header{Header: top.header}).Subject()
		if strings.ContainsAny(subj, "\r\n") {
			t.Errorf("decoded subject has a line break: %q", subj)
		}
	}
	for _, p := range payloads {
		t.Run("dsn subject "+strings.ToValidUTF8(p[:min(len(p), 20)], ""), func(t *testing.T) {
			m, err := c.DSN(DSN{To: "alice@corp.example", Subject: p, Reason: p,
				Recipients: []DSNRecipient{{Address: "bob@example.net", Action: ActionFailed, Status: "5.1.1", Diagnostic: "550 " + p}}})
			if err != nil {
				t.Fatal(err)
			}
			raw := render(t, m)
			check(t, raw)
			status := parse(t, raw).parts[1].body
			if strings.Contains(status, "\nBcc:") || strings.Contains(status, "\nbody injected") {
				t.Errorf("reply text made a field of its own:\n%s", status)
			}
		})
		t.Run("raw subject "+strings.ToValidUTF8(p[:min(len(p), 20)], ""), func(t *testing.T) {
			// Below the templates: the header builder itself.
			m := c.newMail("code", []string{"bob@example.net"}, "", time.Time{})
			h, err := c.header(m, p, "en")
			if err != nil {
				t.Fatal(err)
			}
			h.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
			var buf bytes.Buffer
			if err := writeTextOnly(&buf, h); err != nil {
				t.Fatal(err)
			}
			checkWire(t, buf.Bytes())
			check(t, buf.Bytes())
		})
	}
	bad := []struct {
		name string
		fn   func() error
	}{
		{"recipient with CRLF", func() error {
			_, err := c.Compose(Notice{Kind: "code", To: []string{"bob@example.net\r\nBcc: evil@attacker.example"}, Data: codeData})
			return err
		}},
		{"recipient with LF", func() error {
			_, err := c.Compose(Notice{Kind: "code", To: []string{"bob@example.net\nX: y"}, Data: codeData})
			return err
		}},
		{"recipient with angle bracket", func() error {
			_, err := c.Compose(Notice{Kind: "code", To: []string{"bob@example.net>, <evil@attacker.example"}, Data: codeData})
			return err
		}},
		{"DSN sender with CRLF", func() error {
			_, err := c.DSN(DSN{To: "alice@corp.example\r\nBcc: evil@attacker.example",
				Recipients: []DSNRecipient{{Address: "bob@example.net", Action: ActionFailed}}})
			return err
		}},
		{"from with CRLF", func() error {
			_, err := ParseFrom("Gate\r\nBcc: evil@attacker.example <gw@corp.example>")
			return err
		}},
	}
	for _, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			if b.fn() == nil {
				t.Errorf("accepted")
			}
		})
	}
}

func TestFromDisplayNameEncoded(t *testing.T) {
	ring := newRing(t, t.TempDir())
	set, _ := mailtmpl.Load("", tokyo)
	c, err := NewComposer(ComposerOptions{Templates: set, Hostname: "gw.corp.example",
		From: "添付ゲートウェイ <attachgate@corp.example>", Language: "ja", MarkerKey: ring.MACKey()})
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.Compose(Notice{Kind: "code", To: []string{"bob@example.net"}, Data: codeData})
	if err != nil {
		t.Fatal(err)
	}
	h := mail.Header{Header: parse(t, render(t, m)).header}
	from, err := h.AddressList("From")
	if err != nil || len(from) != 1 || from[0].Name != "添付ゲートウェイ" {
		t.Errorf("From = %v (%v)", from, err)
	}
}

func TestMailWrittenOnce(t *testing.T) {
	ring := newRing(t, t.TempDir())
	m, err := newComposer(t, "en", ring).Compose(Notice{Kind: "code", To: []string{"bob@example.net"}, Data: codeData})
	if err != nil {
		t.Fatal(err)
	}
	render(t, m)
	if _, err := m.WriteTo(&bytes.Buffer{}); err == nil {
		t.Errorf("second WriteTo succeeded")
	}
}

func writeTextOnly(w io.Writer, h mail.Header) error {
	mw, err := message.CreateWriter(w, h.Header)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(mw, "body\r\n"); err != nil {
		return err
	}
	return mw.Close()
}

func TestSubjectRoundTrip(t *testing.T) {
	ring := newRing(t, t.TempDir())
	c := newComposer(t, "en", ring)
	subjects := []string{
		"Quarterly report",
		"【至急】第3四半期の売上報告書および関連資料一式の送付について（社外秘・取扱注意）ご確認のほどよろしくお願いいたします",
		"Re: 見積書 / quote #42",
		"=?utf-8?q?not_an_encoded_word?=",
		"price =? 100 ?= maybe",
		"絵文字 📎 添付",
		strings.Repeat("長い件名", 60),
		"tab\tinside",
	}
	for _, s := range subjects {
		t.Run(s[:min(len(s), 24)], func(t *testing.T) {
			m, err := c.DSN(DSN{To: "alice@corp.example", Subject: s,
				Recipients: []DSNRecipient{{Address: "bob@example.net", Action: ActionFailed}}})
			if err != nil {
				t.Fatal(err)
			}
			raw := render(t, m)
			top := parse(t, raw)
			got, err := (&mail.Header{Header: top.header}).Subject()
			want := "Undelivered Mail Returned to Sender: " + strings.ReplaceAll(s, "\t", " ")
			if err != nil || got != want {
				t.Errorf("Subject reads back as %q (%v), want %q\nraw: %q", got, err, want, top.header.Get("Subject"))
			}
			for _, line := range strings.Split(string(raw[:bytes.Index(raw, []byte("\r\n\r\n"))]), "\r\n") {
				if strings.HasPrefix(line, "Subject:") || strings.HasPrefix(line, " =?") {
					if len(line) > 78 {
						t.Errorf("Subject line %d bytes (RFC 5322 says 78): %q", len(line), line)
					}
				}
			}
		})
	}
}
