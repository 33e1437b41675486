package mailpart

import (
	"bytes"
	"encoding/base64"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/text/encoding/japanese"
)

// noBareLF reports whether every "\n" in s is preceded by "\r".
func noBareLF(s string) bool {
	return !regexp.MustCompile(`(^|[^\r])\n`).MatchString(s)
}

func TestRewriteAlternativeRelatedAttachment(t *testing.T) {
	n := testNotice("report.pdf")
	out := rewriteString(t, altRelatedMessage, map[string]bool{"1.2": true}, n)

	if !noBareLF(out) {
		t.Error("output has bare LF")
	}
	if strings.Contains(out, "report.pdf\"\r\nContent-Transfer-Encoding: base64") || strings.Contains(out, "JVBERi0xLjQK") {
		t.Error("PDF part still present")
	}
	// Untouched parts and headers keep their bytes.
	for _, keep := range []string{
		"Message-ID: <alt-related-1@example.com>\r\n",
		"This is a multi-part message in MIME format.\r\n--mixed-b\r\n",
		"Content-Type: multipart/related; boundary=\"rel-b\"; type=\"text/html\"\r\n",
		"--rel-b\r\nContent-Type: image/png; name=\"logo.png\"\r\nContent-Transfer-Encoding: base64\r\nContent-ID: <logo@example.com>\r\n" +
			"Content-Disposition: inline; filename=\"logo.png\"\r\n\r\niVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA\r\n60e6kgAAAABJRU5ErkJggg==\r\n--rel-b--\r\n",
	} {
		if !strings.Contains(out, keep) {
			t.Errorf("output lost %q", keep)
		}
	}

	parts := parseWithGoMessage(t, out)
	var plain, html *gmPart
	for i := range parts {
		switch parts[i].MediaType {
		case "text/plain":
			plain = &parts[i]
		case "text/html":
			html = &parts[i]
		case "image/png":
		default:
			t.Errorf("unexpected part %s left", parts[i].MediaType)
		}
	}
	if plain == nil || html == nil || len(parts) != 3 {
		t.Fatalf("parts after rewrite: %+v", parts)
	}
	url := n.Files[0].URL
	if !strings.HasPrefix(plain.Text, "Hello, the report is attached. Café at 10?\r\n\r\n"+introEN) {
		t.Errorf("plain body = %q", plain.Text)
	}
	if strings.Count(plain.Text, url) != 1 {
		t.Errorf("URL count in plain text = %d", strings.Count(plain.Text, url))
	}
	if plain.Params["charset"] != "utf-8" || plain.Params["format"] != "flowed" {
		t.Errorf("plain params = %v", plain.Params)
	}
	if got := plain.Header.Get("Content-Transfer-Encoding"); got != "quoted-printable" {
		t.Errorf("plain CTE = %q", got)
	}
	if strings.Count(html.Text, `href="`+url+`"`) != 1 {
		t.Errorf("html body lacks one link:\n%s", html.Text)
	}
	if i, j := strings.Index(html.Text, "attachgate-notice"), strings.Index(html.Text, "</body>"); i < 0 || j < i {
		t.Errorf("notice not before </body>:\n%s", html.Text)
	}
	if !strings.Contains(html.Text, `<img src="cid:logo@example.com">`) {
		t.Error("html lost its cid image reference")
	}

	// Walking the result: no attachment left, the inline image kept.
	after, sum := walkAll(t, out, Limits{})
	if sum.Attachments != 0 {
		t.Errorf("attachments after rewrite: %d", sum.Attachments)
	}
	if img := partByPath(t, after, "1.1.2.2"); img.MediaType != "image/png" || img.Attachment {
		t.Errorf("image part after rewrite: %+v", img.Part)
	}
}

func TestRewriteISO2022JPBody(t *testing.T) {
	text := "お世話になっております。\r\n資料を添付します。\r\n"
	jis, err := japanese.ISO2022JP.NewEncoder().String(text)
	if err != nil {
		t.Fatal(err)
	}
	jisName, _ := japanese.ISO2022JP.NewEncoder().String("資料")
	msg := crlfText(`From: =?ISO-2022-JP?B?`+b64(jisName)+`?= <sender@example.co.jp>
To: rcpt@example.net
Subject: =?ISO-2022-JP?B?`+b64(jisName)+`?=
Message-ID: <jp-1@example.co.jp>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="jp-b"

--jp-b
Content-Type: text/plain; charset=ISO-2022-JP
Content-Transfer-Encoding: 7bit

`) + jis + crlfText(`--jp-b
Content-Type: application/pdf; name="=?ISO-2022-JP?B?`+b64(jisName+".pdf")+`?="
Content-Disposition: attachment; filename="=?ISO-2022-JP?B?`+b64(jisName+".pdf")+`?="
Content-Transfer-Encoding: base64

JVBERi0xLjQK
--jp-b--
`)
	parts, _ := walkAll(t, msg, Limits{})
	if pdf := partByPath(t, parts, "1.2"); !pdf.Attachment || pdf.Filename != "資料.pdf" {
		t.Fatalf("pdf part %+v", pdf.Part)
	}
	n := testNotice("資料.pdf")
	n.Language = "ja"
	out := rewriteString(t, msg, map[string]bool{"1.2": true}, n)
	if !strings.Contains(out, "Subject: =?ISO-2022-JP?B?"+b64(jisName)+"?=\r\n") {
		t.Error("subject header changed")
	}
	got := parseWithGoMessage(t, out)
	if len(got) != 1 {
		t.Fatalf("parts after rewrite: %+v", got)
	}
	body := got[0]
	if body.MediaType != "text/plain" || body.Params["charset"] != "utf-8" {
		t.Errorf("content type %s %v", body.MediaType, body.Params)
	}
	wantPrefix := text + "\r\n" + introJA
	if !strings.HasPrefix(body.Text, wantPrefix) {
		t.Errorf("body = %q, want prefix %q", body.Text, wantPrefix)
	}
	if !strings.Contains(body.Text, n.Files[0].URL) || !strings.Contains(body.Text, "資料.pdf") {
		t.Errorf("notice incomplete: %q", body.Text)
	}
}

// A Shift_JIS HTML body in base64 with a meta charset: decoded, notice
// inserted before </body>, the meta rewritten to utf-8.
func TestRewriteShiftJISHTMLBody(t *testing.T) {
	html := `<html><head><meta http-equiv="Content-Type" content="text/html; charset=Shift_JIS"></head><BODY><p>ご確認ください</p></BODY></html>`
	sjis, _ := japanese.ShiftJIS.NewEncoder().String(html)
	msg := crlfText("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/html; charset=shift_jis\nContent-Transfer-Encoding: base64\n\n") +
		b64(sjis) + crlfText("\n--b\nContent-Type: application/zip; name=a.zip\n\nPK\n--b--\n")
	out := rewriteString(t, msg, map[string]bool{"1.2": true}, testNotice("a.zip"))
	parts := parseWithGoMessage(t, out)
	if len(parts) != 1 {
		t.Fatalf("parts %+v", parts)
	}
	got := parts[0].Text
	if !strings.Contains(got, "<p>ご確認ください</p>") || !strings.Contains(got, "charset=utf-8") || strings.Contains(got, "Shift_JIS") {
		t.Errorf("html = %s", got)
	}
	if i, j := strings.Index(got, "attachgate-notice"), strings.Index(got, "</BODY>"); i < 0 || j < i {
		t.Errorf("notice not before </BODY>: %s", got)
	}
}

func TestRewriteNothingRemovedKeepsBytes(t *testing.T) {
	out := rewriteString(t, altRelatedMessage, nil, Notice{})
	if out != altRelatedMessage {
		t.Errorf("output differs from input:\n%s", out)
	}
	// LF input comes out as the same message with CRLF.
	lfMsg := strings.ReplaceAll(altRelatedMessage, "\r\n", "\n")
	if out := rewriteString(t, lfMsg, nil, Notice{}); out != altRelatedMessage {
		t.Errorf("LF input not normalised:\n%q", out)
	}
}

// Only the notice changes the text: with a notice and nothing removed, the
// original text is still there in full.
func TestRewriteKeepsTextWithNotice(t *testing.T) {
	out := rewriteString(t, altRelatedMessage, nil, testNotice("x.pdf"))
	parts := parseWithGoMessage(t, out)
	if !strings.HasPrefix(parts[0].Text, "Hello, the report is attached. Café at 10?") {
		t.Errorf("text = %q", parts[0].Text)
	}
	if len(parts) != 4 {
		t.Errorf("got %d parts, want all 4 kept", len(parts))
	}
}

func TestRewriteSinglePartAttachment(t *testing.T) {
	msg := crlfText(`From: a@example.com
To: b@example.net
Subject: scan
Message-ID: <single@example.com>
MIME-Version: 1.0
Content-Type: application/pdf; name="scan.pdf"
Content-Disposition: attachment; filename="scan.pdf"
Content-Transfer-Encoding: base64

JVBERi0xLjQK
`)
	parts, _ := walkAll(t, msg, Limits{})
	if len(parts) != 1 || parts[0].Path != "1" || !parts[0].Attachment {
		t.Fatalf("parts %+v", parts)
	}
	out := rewriteString(t, msg, map[string]bool{"1": true}, testNotice("scan.pdf"))
	if strings.Contains(out, "JVBERi0xLjQK") || strings.Contains(out, "Content-Disposition") {
		t.Errorf("attachment left:\n%s", out)
	}
	if !strings.Contains(out, "Message-ID: <single@example.com>\r\n") {
		t.Error("Message-ID lost")
	}
	got := parseWithGoMessage(t, out)
	if len(got) != 1 || got[0].MediaType != "text/plain" || !strings.Contains(got[0].Text, "https://files.example.com/d/tokenA") {
		t.Errorf("parts %+v", got)
	}
}

func TestRewriteAttachmentsOnlyAppendsNoticePart(t *testing.T) {
	msg := crlfText(`MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=b

--b
Content-Type: application/pdf; name=a.pdf

A
--b
Content-Type: multipart/mixed; boundary=inner

--inner
Content-Type: image/jpeg; name=b.jpg

B
--inner--
--b--
`)
	out := rewriteString(t, msg, map[string]bool{"1.1": true, "1.2.1": true}, testNotice("a.pdf", "b.jpg"))
	parts := parseWithGoMessage(t, out)
	if len(parts) != 1 || parts[0].MediaType != "text/plain" {
		t.Fatalf("parts %+v\n%s", parts, out)
	}
	for _, u := range []string{"https://files.example.com/d/tokenA", "https://files.example.com/d/tokenB"} {
		if strings.Count(parts[0].Text, u) != 1 {
			t.Errorf("notice part lacks %s", u)
		}
	}
	if _, sum := walkAll(t, out, Limits{}); sum.Attachments != 0 {
		t.Errorf("attachments left: %d", sum.Attachments)
	}
}

// A top-level single part that is kept but cannot take the notice (here an
// image) is wrapped in multipart/mixed with the notice.
func TestRewriteWrapsKeptSinglePart(t *testing.T) {
	msg := crlfText(`Subject: pic
MIME-Version: 1.0
Content-Type: image/png
Content-Disposition: inline
Content-Transfer-Encoding: base64

iVBORw0KGgo=
`)
	out := rewriteString(t, msg, nil, testNotice("elsewhere.pdf"))
	parts := parseWithGoMessage(t, out)
	if len(parts) != 2 || parts[0].MediaType != "image/png" || parts[1].MediaType != "text/plain" {
		t.Fatalf("parts %+v\n%s", parts, out)
	}
	if !strings.HasPrefix(out, "Subject: pic\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed;") {
		t.Errorf("wrapped header:\n%s", out)
	}
}

// A body in a charset nothing can decode is left alone; the notice goes
// into a part of its own.
func TestRewriteUnknownCharsetBodyLeftAlone(t *testing.T) {
	msg := crlfText(`Content-Type: multipart/mixed; boundary=b

--b
Content-Type: text/plain; charset=x-martian

\x01 zork
--b
Content-Type: application/pdf; name=a.pdf

A
--b--
`)
	out := rewriteString(t, msg, map[string]bool{"1.2": true}, testNotice("a.pdf"))
	if !strings.Contains(out, "Content-Type: text/plain; charset=x-martian\r\n\r\n\\x01 zork\r\n") {
		t.Errorf("body changed:\n%s", out)
	}
	if !strings.Contains(out, "tokenA") {
		t.Errorf("no notice:\n%s", out)
	}
}

func TestRewriteRepairsMissingCloseDelimiter(t *testing.T) {
	msg := crlfText("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nhello\n--b\nContent-Type: application/pdf; name=a.pdf\n\nA\n")
	out := rewriteString(t, msg, map[string]bool{"1.2": true}, testNotice("a.pdf"))
	if !strings.HasSuffix(out, "--b--\r\n") {
		t.Errorf("no close delimiter:\n%q", out)
	}
	parts := parseWithGoMessage(t, out)
	if len(parts) != 1 || !strings.HasPrefix(parts[0].Text, "hello\r\n\r\n"+introEN) {
		t.Errorf("parts %+v", parts)
	}
}

func TestHTMLNoticeWriter(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"top of body", "<html><body>a</body></html>", "<html><body>\nNOTEa</body></html>"},
		{"case and attributes", "<BODY class=\"x\">x</Body >\r\n", "<BODY class=\"x\">\nNOTEx</Body >\r\n"},
		{"not a body tag", "<bodyguard>x</bodyguard><body>y</body>", "<bodyguard>x</bodyguard><body>\nNOTEy</body>"},
		{"no body tag: before body end", "<p>a</p></body>", "<p>a</p>\nNOTE</body>"},
		{"no body tag", "<p>fragment</p>", "<p>fragment</p>\nNOTE"},
		{"meta charset", `<meta charset="iso-2022-jp"><body>x</body>`, `<meta charset="utf-8"><body>` + "\nNOTEx</body>"},
		{"meta content", `<META HTTP-EQUIV="Content-Type" CONTENT="text/html; charset=euc-jp"><body></body>`, `<META HTTP-EQUIV="Content-Type" CONTENT="text/html; charset=utf-8"><body>` + "\nNOTE</body>"},
		{"meta after body untouched", `<body><p>charset=x</p><meta charset="x"></body>`, `<body>` + "\nNOTE" + `<p>charset=x</p><meta charset="x"></body>`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, chunk := range []int{1, 3, 1 << 20} {
				var out bytes.Buffer
				w := newHTMLNoticeWriter(&out, "NOTE")
				for in := tc.in; len(in) > 0; {
					n := min(chunk, len(in))
					if _, err := io.WriteString(w, in[:n]); err != nil {
						t.Fatal(err)
					}
					in = in[n:]
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				if out.String() != tc.want {
					t.Errorf("chunk %d: got %q, want %q", chunk, out.String(), tc.want)
				}
			}
		})
	}
}

func TestEightBitKeepsLinksWhole(t *testing.T) {
	long := "https://files.example.com/some/deep/path/for/a/long/base/url/d/" + strings.Repeat("A", 43)
	msg := "From: a@example.com\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nCaf=E9 " + strings.Repeat("x", 900) + "\r\n" +
		"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\n\r\n%PDF\r\n--b--\r\n"
	var out bytes.Buffer
	n := Notice{Files: []NoticeFile{{Name: "a.pdf", Size: 4, SHA256: strings.Repeat("0", 64), Expires: time.Unix(0, 0).UTC(), URL: long}}, EightBit: true}
	if err := Rewrite(strings.NewReader(msg), &out, Limits{}, map[string]bool{"1.2": true}, n); err != nil {
		t.Fatal(err)
	}
	raw := out.String()
	if strings.Count(raw, long) != 1 {
		t.Fatalf("the link is not whole on one raw line:\n%s", raw)
	}
	if !strings.Contains(raw, "Content-Transfer-Encoding: 8bit") || !strings.Contains(raw, "Café "+strings.Repeat("x", 900)+"\r\n") {
		t.Fatalf("text part not re-encoded as 8bit UTF-8:\n%s", raw)
	}
	for _, line := range strings.Split(raw, "\r\n") {
		if strings.ContainsAny(line, "\r\n") {
			t.Fatalf("bare CR or LF in %q", line)
		}
	}
}

// Issue 9.20: a rewritten text with a line over 998 bytes goes out
// quoted-printable, so the text arrives unchanged (8bit would have to cut
// it); so do a bare CR and a line that looks like a boundary.
func TestEightBitFallsBackToQuotedPrintable(t *testing.T) {
	longLine := "Caf\u00e9 " + strings.Repeat("word ", 400) + "end"
	tests := []struct{ name, text string }{
		{"line over 998 bytes", "first\n" + longLine + "\nlast\n"},
		{"bare CR", "one\rtwo\n"},
		{"boundary-like line", "a\n--b\n--b--\nz\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msg := "From: a@example.com\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
				"--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
				base64.StdEncoding.EncodeToString([]byte(tc.text)) + "\r\n" +
				"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\n\r\n%PDF\r\n--b--\r\n"
			n := testNotice("a.pdf")
			n.Language = "en"
			n.EightBit = true
			out := rewriteString(t, msg, map[string]bool{"1.2": true}, n)
			if !strings.Contains(out, "Content-Transfer-Encoding: quoted-printable") {
				t.Fatalf("not quoted-printable:\n%s", out)
			}
			for _, line := range strings.Split(out, "\r\n") {
				if len(line) > 76 {
					t.Fatalf("line of %d bytes: %q", len(line), line)
				}
				if strings.HasPrefix(line, "--b") && line != "--b" && line != "--b--" {
					t.Fatalf("boundary-like line %q in output", line)
				}
			}
			gm := parseWithGoMessage(t, out)
			if len(gm) != 1 {
				t.Fatalf("go-message reads %d parts", len(gm))
			}
			want := strings.ReplaceAll(tc.text, "\n", "\r\n")
			if !strings.HasPrefix(gm[0].Text, want) {
				t.Errorf("text changed:\n got %q\nwant %q", gm[0].Text[:min(len(gm[0].Text), len(want))], want)
			}
		})
	}
}

// Issue 14.3: the notice goes before an existing signature, where mail
// clients show it as part of the message, not folded away with the
// signature; without a signature, after the text.
func TestSignatureWriter(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"no signature", "Hello\n", "Hello\n\nNOTE\n"},
		{"no final newline", "Hello", "Hello\n\nNOTE\n"},
		{"blank line at end", "Hello\n\n", "Hello\n\nNOTE\n"},
		{"empty", "", "NOTE\n"},
		{"signature", "Hello\n-- \nAlice\nACME\n", "Hello\n\nNOTE\n\n-- \nAlice\nACME\n"},
		{"signature CRLF", "Hello\r\n\r\n-- \r\nAlice\r\n", "Hello\r\n\r\nNOTE\n\n-- \r\nAlice\r\n"},
		{"last separator counts", "a\n-- \nb\n-- \nsig", "a\n-- \nb\n\nNOTE\n\n-- \nsig"},
		{"dashes without space are text", "a\n--\nb\n", "a\n--\nb\n\nNOTE\n"},
		{"separator inside a line is text", "x-- \n", "x-- \n\nNOTE\n"},
		{"separator only", "-- \n", "NOTE\n\n-- \n"},
		{"too long for a signature", "a\n-- \n" + strings.Repeat("s", maxSignature+1) + "\n", "a\n-- \n" + strings.Repeat("s", maxSignature+1) + "\n\nNOTE\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, chunk := range []int{1, 2, 5, 1 << 20} {
				var out bytes.Buffer
				sw := &signatureWriter{w: &out, bol: true}
				for in := tc.in; len(in) > 0; {
					n := min(chunk, len(in))
					if _, err := io.WriteString(sw, in[:n]); err != nil {
						t.Fatal(err)
					}
					in = in[n:]
				}
				if err := sw.Close("NOTE\n"); err != nil {
					t.Fatal(err)
				}
				if out.String() != tc.want {
					t.Errorf("chunk %d: got %q, want %q", chunk, out.String(), tc.want)
				}
			}
		})
	}
}

func TestRewriteNoticeBeforeSignatureAndAtTopOfHTML(t *testing.T) {
	msg := crlfText(`From: a@example.com
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=m

--m
Content-Type: multipart/alternative; boundary=a

--a
Content-Type: text/plain; charset=utf-8

Please see the report.

-- 
Alice Example
ACME Corp.
--a
Content-Type: text/html; charset=utf-8

<html><head><title>x</title></head><body style="x"><p>Please see the report.</p><div>-- <br>Alice</div></body></html>
--a--
--m
Content-Type: application/pdf
Content-Disposition: attachment; filename=report.pdf

%PDF
--m--
`)
	n := testNotice("report.pdf")
	n.Language = "en"
	parts := parseWithGoMessage(t, rewriteString(t, msg, map[string]bool{"1.2": true}, n))
	if len(parts) != 2 {
		t.Fatalf("%d parts", len(parts))
	}
	plain := parts[0].Text
	if !strings.HasPrefix(plain, "Please see the report.\r\n\r\n"+introEN) ||
		!strings.HasSuffix(plain, "tokenA\r\n\r\n-- \r\nAlice Example\r\nACME Corp.") ||
		strings.Count(plain, "-- \r\n") != 1 {
		t.Errorf("plain text:\n%s", plain)
	}
	html := parts[1].Text
	if !strings.HasPrefix(html, `<html><head><title>x</title></head><body style="x">`+"\r\n"+`<div class="attachgate-notice"`) {
		t.Errorf("html: notice not at the top of the body:\n%q", html)
	}
}
