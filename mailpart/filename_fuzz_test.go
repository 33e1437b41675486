package mailpart

import (
	"bufio"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-message/textproto"
)

// FuzzFilename: whatever the Content-Disposition and Content-Type fields
// say (RFC 2231 continuations and charsets, RFC 2047 words, raw 8-bit,
// JIS), the decoded name is valid UTF-8 of at most 255 bytes, without path
// separators, control or bidi-override characters, and a part with a
// disposition of attachment always gets a name.
func FuzzFilename(f *testing.F) {
	f.Add(`attachment; filename*0*=utf-8''%E5%A0%B1; filename*1*=%E5%91%8A.pdf`, `application/pdf`)
	f.Add(`attachment; filename="=?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?=.txt"`, `text/plain; name="x"`)
	f.Add("attachment; filename=\"\x95\\\x8e\x86.doc\"", `application/msword`)
	f.Add(`inline`, `image/png; name="..\\..\\evil\u202egnp.exe"`)
	f.Add(`attachment; filename*=shift_jis'ja'%82%A0.txt; filename="fallback.txt"`, ``)
	f.Add(`attachment; filename="=?utf-8?Q?a=2Fb?= =?utf-8?B?5pel5pys?="`, `application/octet-stream`)
	f.Fuzz(func(t *testing.T, disposition, contentType string) {
		if strings.ContainsAny(disposition+contentType, "\r\n") {
			return // a header field value has no line breaks
		}
		h := mustHeaderNoFatal("Content-Disposition: " + disposition + "\r\nContent-Type: " + contentType)
		if h == nil {
			return
		}
		p := describePart(*h)
		again := describePart(*h)
		if p.Filename != again.Filename {
			t.Fatalf("not deterministic: %q, %q", p.Filename, again.Filename)
		}
		checkFilename(t, p.Filename)
		var c classifier
		c.classify(&p, position{parentType: "multipart/mixed"})
		if p.Attachment && p.Filename == "" {
			t.Fatal("attachment without a name")
		}
		checkFilename(t, p.Filename)
	})
}

func checkFilename(t *testing.T, name string) {
	t.Helper()
	if !utf8.ValidString(name) || len(name) > maxFilenameBytes {
		t.Fatalf("bad name %q", name)
	}
	if strings.ContainsAny(name, `/\`) || name == "." || name == ".." || strings.TrimSpace(name) != name {
		t.Fatalf("unsafe name %q", name)
	}
	for _, r := range name {
		if (unicode.IsControl(r) && r != '\t') || isBidiControl(r) || r == '\t' {
			t.Fatalf("control or bidi character %U in %q", r, name)
		}
	}
}

// mustHeaderNoFatal parses header fields; nil when textproto refuses them.
func mustHeaderNoFatal(s string) *textproto.Header {
	h, err := textproto.ReadHeader(bufio.NewReader(strings.NewReader(s + "\r\n\r\n")))
	if err != nil {
		return nil
	}
	return &h
}
