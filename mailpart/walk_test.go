package mailpart

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

// altRelatedMessage is a typical mail client message: text and HTML
// alternatives, the HTML with an inline logo in multipart/related, and a
// PDF attachment.
var altRelatedMessage = crlfText(`From: Sender <sender@example.com>
To: Recipient <rcpt@example.net>
Subject: Quarterly report
Message-ID: <alt-related-1@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="mixed-b"

This is a multi-part message in MIME format.
--mixed-b
Content-Type: multipart/alternative; boundary="alt-b"

--alt-b
Content-Type: text/plain; charset=utf-8; format=flowed
Content-Transfer-Encoding: quoted-printable

Hello, the report is attached. Caf=C3=A9 at 10?
--alt-b
Content-Type: multipart/related; boundary="rel-b"; type="text/html"

--rel-b
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: quoted-printable

<html><head><meta charset=3D"utf-8"></head><body><p>Hello, the report is =
attached.</p><img src=3D"cid:logo@example.com"></body></html>
--rel-b
Content-Type: image/png; name="logo.png"
Content-Transfer-Encoding: base64
Content-ID: <logo@example.com>
Content-Disposition: inline; filename="logo.png"

iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA
60e6kgAAAABJRU5ErkJggg==
--rel-b--

--alt-b--

--mixed-b
Content-Type: application/pdf; name="report.pdf"
Content-Transfer-Encoding: base64
Content-Disposition: attachment; filename="report.pdf"

JVBERi0xLjQKJcOkw7zDtsOfCjEgMCBvYmoKPDwvVHlwZS9DYXRhbG9nPj4KZW5kb2JqCg==
--mixed-b--
`)

func TestWalkStructure(t *testing.T) {
	parts, sum := walkAll(t, altRelatedMessage, Limits{})
	type want struct {
		path, mediaType string
		depth           int
		attachment      bool
		filename        string
	}
	wants := []want{
		{"1.1.1", "text/plain", 2, false, ""},
		{"1.1.2.1", "text/html", 3, false, ""},
		{"1.1.2.2", "image/png", 3, false, "logo.png"},
		{"1.2", "application/pdf", 1, true, "report.pdf"},
	}
	if len(parts) != len(wants) {
		t.Fatalf("got %d parts, want %d", len(parts), len(wants))
	}
	for i, w := range wants {
		p := parts[i]
		if p.Path != w.path || p.MediaType != w.mediaType || p.Depth != w.depth || p.Attachment != w.attachment || p.Filename != w.filename {
			t.Errorf("part %d = {%s %s depth %d att %v %q}, want %+v", i, p.Path, p.MediaType, p.Depth, p.Attachment, p.Filename, w)
		}
	}
	if sum.Parts != 4 || sum.Attachments != 1 || sum.MessageID != "<alt-related-1@example.com>" {
		t.Errorf("summary = %+v", sum)
	}
	if got := sum.Header.Get("Subject"); got != "Quarterly report" {
		t.Errorf("summary header Subject = %q", got)
	}
	if got := string(partByPath(t, parts, "1.1.1").Body); got != "Hello, the report is attached. Café at 10?" {
		t.Errorf("quoted-printable body = %q", got)
	}
	if got := string(partByPath(t, parts, "1.2").Body); !strings.HasPrefix(got, "%PDF-1.4\n") {
		t.Errorf("base64 body = %q", got)
	}
	if got := partByPath(t, parts, "1.1.2.2").ContentID; got != "logo@example.com" {
		t.Errorf("ContentID = %q", got)
	}
}

func TestWalkTransferEncodings(t *testing.T) {
	tests := []struct {
		name, cte, body, want string
	}{
		{"base64 with junk and spaces", "base64", " aGVs\r\n bG8g\r\n!!d29y\r\nbGQ=\r\n", "hello world"},
		{"base64 stops at padding", "base64", "aGk=\r\nIHRoZXJl\r\n", "hi"},
		{"base64 junk after padding", "base64", "JVBERg==\r\n\r\n-- \r\nSent from my gateway\r\n", "%PDF"},
		{"base64 single padding", "base64", "aGk/\r\naGk=AAAA\r\n", "hi?hi"},
		{"base64 missing padding", "BASE64", "aGk\r\n", "hi"},
		{"quoted-printable soft breaks", "quoted-printable", "long=\r\nline=20\r\nnext  \r\n", "longline \r\nnext\r\n"},
		{"quoted-printable invalid escape kept", "Quoted-Printable;", "100%=zz=3D\r\n", "100%=zz=\r\n"},
		{"7bit as is", "7bit", "plain\r\ntext\r\n", "plain\r\ntext\r\n"},
		{"unknown as is", "x-uuencode", "begin 644 x\r\n", "begin 644 x\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msg := crlfText("Content-Type: application/octet-stream\nContent-Transfer-Encoding: "+tc.cte+"\n\n") + tc.body
			parts, _ := walkAll(t, msg, Limits{})
			if len(parts) != 1 || string(parts[0].Body) != tc.want {
				t.Errorf("body = %q, want %q", parts[0].Body, tc.want)
			}
		})
	}
}

// The line ending before a boundary line belongs to the boundary.
func TestWalkBoundaryLineEnding(t *testing.T) {
	msg := crlfText("Content-Type: multipart/mixed; boundary=b\n\n--b\n\nfirst\n\n--b\n\nsecond\n--b--\n")
	parts, _ := walkAll(t, msg, Limits{})
	if len(parts) != 2 || string(parts[0].Body) != "first\r\n" || string(parts[1].Body) != "second" {
		t.Errorf("bodies %q %q", parts[0].Body, parts[1].Body)
	}
}

func TestWalkSimilarBoundaries(t *testing.T) {
	msg := crlfText(`Content-Type: multipart/mixed; boundary="abc"

--abc
Content-Type: multipart/alternative; boundary="abc-alt"

--abc-alt
Content-Type: text/plain

inner
--abc-alt--
--abc
Content-Type: application/pdf; name=a.pdf

x
--abc--
`)
	parts, _ := walkAll(t, msg, Limits{})
	if len(parts) != 2 || parts[0].Path != "1.1.1" || parts[1].Path != "1.2" {
		t.Fatalf("parts %+v", parts)
	}
}

func TestWalkFnPartialReadAndError(t *testing.T) {
	var seen []string
	_, err := Walk(strings.NewReader(altRelatedMessage), Limits{}, func(p *Part, body io.Reader) error {
		seen = append(seen, p.Path)
		_, _ = body.Read(make([]byte, 1)) // read a little; Walk drains the rest
		return nil
	})
	if err != nil || len(seen) != 4 {
		t.Fatalf("err %v, seen %v", err, seen)
	}
	boom := errors.New("boom")
	_, err = Walk(strings.NewReader(altRelatedMessage), Limits{}, func(p *Part, body io.Reader) error {
		if p.Attachment {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "1.2") {
		t.Errorf("err = %v, want boom wrapped with the part path", err)
	}
}

func TestWalkLimits(t *testing.T) {
	deep := func(n int) string {
		var b strings.Builder
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i)
		}
		b.WriteString("Content-Type: text/plain\r\n\r\nx\r\n")
		return b.String()
	}
	many := func(n int) string {
		var b strings.Builder
		b.WriteString("Content-Type: multipart/mixed; boundary=b\r\n\r\n")
		for i := 0; i < n; i++ {
			b.WriteString("--b\r\nContent-Type: text/plain\r\n\r\nx\r\n")
		}
		b.WriteString("--b--\r\n")
		return b.String()
	}
	// 5,000 bytes on one line, foldable at its spaces (Rewrite folds it;
	// a line without white space is TestRewriteLineLengths' business).
	bigHeader := "Subject: " + strings.Repeat("xxxx ", 1000) + "\r\n\r\nbody\r\n"
	tests := []struct {
		name    string
		msg     string
		lim     Limits
		tooDeep bool
	}{
		{"depth within limit", deep(5), Limits{MaxDepth: 5}, false},
		{"depth over limit", deep(6), Limits{MaxDepth: 5}, true},
		{"default depth", deep(40), Limits{}, true},
		{"parts within limit", many(9), Limits{MaxParts: 10}, false},
		{"parts over limit", many(10), Limits{MaxParts: 10}, true},
		{"default parts", many(2500), Limits{}, true},
		{"header within limit", bigHeader, Limits{MaxHeaderBytes: 6000}, false},
		{"header over limit", bigHeader, Limits{MaxHeaderBytes: 4096}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Walk(strings.NewReader(tc.msg), tc.lim, func(*Part, io.Reader) error { return nil })
			if tc.tooDeep != errors.Is(err, ErrTooComplex) {
				t.Errorf("err = %v, want ErrTooComplex: %v", err, tc.tooDeep)
			}
			if !tc.tooDeep && err != nil {
				t.Errorf("unexpected error %v", err)
			}
			var out strings.Builder
			err = Rewrite(strings.NewReader(tc.msg), &out, tc.lim, nil, Notice{})
			if tc.tooDeep != errors.Is(err, ErrTooComplex) {
				t.Errorf("Rewrite err = %v", err)
			}
		})
	}
}

// Broken input is read the way mail clients read it, and never hangs.
func TestWalkMalformed(t *testing.T) {
	tests := []struct {
		name  string
		msg   string
		parts int
	}{
		{"empty", "", 1},
		{"header only", "Subject: x", 1},
		{"no blank line before body", "Content-Type: text/plain\r\nhello there\r\n", 1},
		{"stray header line", "Subject: x\r\nquite Content-Type: nonsense\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: application/pdf\r\n\r\nx\r\n--b--\r\n", 1},
		{"missing close delimiter", "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\none\r\n--b\r\n\r\ntwo\r\n", 2},
		{"inner multipart not closed", "Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\nContent-Type: multipart/alternative; boundary=i\r\n\r\n--i\r\n\r\na\r\n--o\r\n\r\nb\r\n--o--\r\n", 2},
		{"boundary never appears", "Content-Type: multipart/mixed; boundary=b\r\n\r\njust text\r\n", 0},
		{"multipart without boundary", "Content-Type: multipart/mixed\r\n\r\ntext\r\n", 1},
		{"empty boundary", "Content-Type: multipart/mixed; boundary=\"\"\r\n\r\ntext\r\n", 1},
		{"header cut by boundary", "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n--b--\r\n", 1},
		{"truncated in part header", "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: app", 1},
		{"binary garbage", "\x00\xff\xfe--\r\n\r\n\x1b$B", 1},
		{"lf only", "Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--b--\n", 1},
		{"very long line", "Content-Type: text/plain\r\n\r\n" + strings.Repeat("a", 200000) + "\r\n", 1},
		{"very long boundary-like line", "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n--b" + strings.Repeat("-", 100000) + "\r\n--b--\r\n", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan struct{})
			go func() {
				defer close(done)
				parts, _ := walkAll(t, tc.msg, Limits{})
				if len(parts) != tc.parts {
					t.Errorf("got %d parts, want %d", len(parts), tc.parts)
				}
				var out strings.Builder
				if err := Rewrite(strings.NewReader(tc.msg), &out, Limits{}, map[string]bool{"1.1": true}, testNotice("x.pdf")); err != nil {
					t.Errorf("Rewrite: %v", err)
				}
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("hang")
			}
		})
	}
}

func TestWalkStrayHeaderLineDoesNotHideAttachment(t *testing.T) {
	msg := "Subject: x\r\nquite Content-Type: nonsense\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: application/pdf\r\n\r\nx\r\n--b--\r\n"
	_, sum := walkAll(t, msg, Limits{})
	if sum.Attachments != 1 {
		t.Errorf("Attachments = %d; the stray line hid the MIME structure", sum.Attachments)
	}
}

func TestWalkForwardedMessageNamedBySubject(t *testing.T) {
	msg := crlfText(`Content-Type: multipart/mixed; boundary=b

--b
Content-Type: text/plain

see below
--b
Content-Type: message/rfc822
Content-Transfer-Encoding: base64

` + b64("Subject: =?UTF-8?B?"+b64("月次/報告")+"?=\r\nFrom: a@example.com\r\n\r\nhi\r\n") + `
--b
Content-Type: message/rfc822

From: a@example.com

no subject
--b--
`)
	parts, _ := walkAll(t, msg, Limits{})
	if got := partByPath(t, parts, "1.2").Filename; got != "月次_報告.eml" {
		t.Errorf("Filename = %q", got)
	}
	if got := string(partByPath(t, parts, "1.2").Body); !strings.HasPrefix(got, "Subject: ") {
		t.Errorf("body after subject peek = %q", got)
	}
	if got := partByPath(t, parts, "1.3").Filename; got != "message.eml" {
		t.Errorf("Filename = %q", got)
	}
}

// TestNestedMultipartReusingBoundaryRefused: a multipart inside one with
// the same boundary (the FuzzRewrite finding 97bedae00d83ef3d, whose outer
// boundary differs only by trailing white space) has delimiter lines that
// belong to both; go-message and mail clients read a different structure than the
// policies would, so the message is refused as too complex (554 5.6.0).
func TestNestedMultipartReusingBoundaryRefused(t *testing.T) {
	for name, outer := range map[string]string{
		"same":                `boundary="b1"`,
		"unquoted same value": `boundary=b1`,
	} {
		t.Run(name, func(t *testing.T) {
			msg := "Content-Type: multipart/mixed; " + outer + "\r\n\r\n--b1\r\n" +
				"Content-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\n" +
				"Content-Type: application/pdf; name=a.pdf\r\n\r\n%PDF\r\n--b1--\r\n--b1--\r\n"
			_, err := Walk(strings.NewReader(msg), Limits{}, func(*Part, io.Reader) error { return nil })
			if !errors.Is(err, ErrTooComplex) {
				t.Fatalf("Walk = %v, want ErrTooComplex", err)
			}
		})
	}
	// Distinct nested boundaries stay fine.
	msg := "Content-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\n" +
		"Content-Type: multipart/mixed; boundary=b2\r\n\r\n--b2\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b2--\r\n--b1--\r\n"
	if _, err := Walk(strings.NewReader(msg), Limits{}, func(*Part, io.Reader) error { return nil }); err != nil {
		t.Fatalf("Walk of distinct nested boundaries: %v", err)
	}
}
