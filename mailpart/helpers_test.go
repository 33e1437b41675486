package mailpart

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// crlfText turns a test message written with "\n" into SMTP form.
func crlfText(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")
}

func mustHeader(t testing.TB, s string) textproto.Header {
	t.Helper()
	h, err := textproto.ReadHeader(bufio.NewReader(strings.NewReader(crlfText(s) + "\r\n")))
	if err != nil {
		t.Fatalf("read header %q: %v", s, err)
	}
	return h
}

// walkedPart is what a test keeps of one Walk callback.
type walkedPart struct {
	Part
	Body []byte
}

func walkAll(t testing.TB, msg string, lim Limits) ([]walkedPart, Summary) {
	t.Helper()
	var parts []walkedPart
	sum, err := Walk(strings.NewReader(msg), lim, func(p *Part, body io.Reader) error {
		b, err := io.ReadAll(body)
		if err != nil {
			return err
		}
		parts = append(parts, walkedPart{Part: *p, Body: b})
		return nil
	})
	if err != nil {
		t.Fatalf("Walk: %v", err)
	}
	return parts, sum
}

func partByPath(t testing.TB, parts []walkedPart, path string) walkedPart {
	t.Helper()
	for _, p := range parts {
		if p.Path == path {
			return p
		}
	}
	t.Fatalf("no part %s", path)
	return walkedPart{}
}

func rewriteString(t testing.TB, msg string, remove map[string]bool, n Notice) string {
	t.Helper()
	var out bytes.Buffer
	if err := Rewrite(strings.NewReader(msg), &out, Limits{}, remove, n); err != nil {
		t.Fatalf("Rewrite: %v", err)
	}
	return out.String()
}

// gmPart is a leaf as go-message decodes it: transfer encoding and
// charset removed.
type gmPart struct {
	MediaType string
	Params    map[string]string
	Header    message.Header
	Text      string
}

// parseWithGoMessage checks that go-message, an independent parser, reads
// msg, and returns its leaves.
func parseWithGoMessage(t testing.TB, msg string) []gmPart {
	t.Helper()
	parts, err := goMessageLeaves(msg, true)
	if err != nil {
		t.Fatalf("go-message cannot read the message: %v", err)
	}
	return parts
}

// goMessageLeaves reads msg with go-message. Unknown transfer encodings and
// charsets are not failures: go-message reports them and still hands the
// body over. Unless strictBodies is set, errors decoding a leaf's content
// (corrupt base64) are ignored: only the structure must be readable.
func goMessageLeaves(msg string, strictBodies bool) ([]gmPart, error) {
	tolerable := func(err error) bool {
		return err == nil || message.IsUnknownCharset(err) || message.IsUnknownEncoding(err)
	}
	e, err := message.Read(strings.NewReader(msg))
	if !tolerable(err) {
		return nil, err
	}
	var parts []gmPart
	err = e.Walk(func(path []int, ent *message.Entity, err error) error {
		if !tolerable(err) {
			return err
		}
		mt, params, _ := ent.Header.ContentType()
		if strings.HasPrefix(mt, "multipart/") {
			return nil
		}
		b, err := io.ReadAll(ent.Body)
		if err != nil && strictBodies {
			return err
		}
		parts = append(parts, gmPart{MediaType: mt, Params: params, Header: ent.Header, Text: string(b)})
		return nil
	})
	return parts, err
}

func testNotice(files ...string) Notice {
	jst := time.FixedZone("JST", 9*3600)
	n := Notice{Language: "both"}
	for i, name := range files {
		n.Files = append(n.Files, NoticeFile{
			Name:    name,
			Size:    int64(1000 * (i + 1)),
			SHA256:  strings.Repeat("ab", 32),
			Expires: time.Date(2026, 12, 2, 19, 10, 0, 0, jst),
			URL:     "https://files.example.com/d/token" + string(rune('A'+i)),
		})
	}
	return n
}
