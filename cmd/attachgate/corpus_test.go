package main

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset"
	"github.com/emersion/go-smtp"

	"github.com/attachgate/attachgate/smtptest"
)

// decodedText returns the concatenated decoded bodies of all leaf parts of
// the given media type.
func decodedText(t *testing.T, raw []byte, mediaType string) string {
	t.Helper()
	e, err := message.Read(bytes.NewReader(raw))
	if err != nil && !message.IsUnknownCharset(err) {
		// Not MIME we can read (an mbox "From " line, say): no text parts.
		return ""
	}
	var out strings.Builder
	e.Walk(func(_ []int, part *message.Entity, err error) error {
		if err != nil {
			return nil
		}
		if part.MultipartReader() != nil {
			return nil
		}
		if disp, _, _ := part.Header.ContentDisposition(); disp == "attachment" {
			return nil
		}
		if mt, _, _ := part.Header.ContentType(); mt == mediaType {
			b, _ := io.ReadAll(part.Body)
			out.Write(b)
		}
		return nil
	})
	return out.String()
}

// corpusDir is ../shared/corpus beside the checkout.
func corpusDir(t *testing.T) string {
	dir, _ := filepath.Abs(filepath.Join("..", "..", "..", "shared", "corpus"))
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("corpus %s not present beside this checkout (it is in CI); skipping", dir)
	}
	return dir
}

// TestCorpus sends every real-world message of the corpus through the
// gateway: each passes through unchanged (nothing to link) or comes out
// with working links and its text intact; none is lost.
func TestCorpus(t *testing.T) {
	dir := corpusDir(t)
	var files []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && strings.HasSuffix(p, ".eml") {
			files = append(files, p)
		}
		return nil
	})
	if len(files) == 0 {
		t.Fatalf("no .eml files under %s", dir)
	}
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	d := startDaemon(t, hop.Addr, "")

	var unchanged, linked, refused, links int
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		before := len(hop.Messages())
		err = d.send("corpus@example.com", []string{"rcpt@example.net"}, raw)
		rel, _ := filepath.Rel(dir, f)
		if err != nil {
			var se *smtp.SMTPError
			// A clear permanent refusal of a malformed message is
			// acceptable; anything temporary or unexplained is not.
			if errors.As(err, &se) && se.Code == 554 && se.EnhancedCode[1] == 6 {
				refused++
				t.Logf("%s: refused: %v", rel, err)
				continue
			}
			t.Errorf("%s: %v", rel, err)
			continue
		}
		msgs := hop.Messages()
		if len(msgs) != before+1 {
			t.Errorf("%s: accepted but not relayed", rel)
			continue
		}
		out := msgs[len(msgs)-1].Data
		got := relayedLinks(t, d, out)
		if len(got) == 0 {
			got = htmlLinks(t, d, out)
		}
		if len(got) == 0 {
			// Headers go-message cannot read (an mbox "From " line): look
			// in the raw text, where the notice is quoted-printable.
			unfolded := strings.ReplaceAll(string(out), "=\r\n", "")
			got = regexp.MustCompile(regexp.QuoteMeta(d.linkURL)+`/d/[A-Za-z0-9_-]+`).FindAllString(unfolded, -1)
		}
		if len(got) == 0 {
			if !bytes.HasSuffix(bytes.TrimRight(out, "\r\n"), bytes.TrimRight(crlf(raw), "\r\n")) {
				t.Errorf("%s: nothing linked, yet the message changed", rel)
			}
			unchanged++
			continue
		}
		linked++
		for _, l := range got {
			resp, _ := download(t, l)
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s: link %s: %s", rel, l, resp.Status)
			}
			links++
		}
		if want := firstLine(decodedText(t, raw, "text/plain")); want != "" && !strings.Contains(decodedText(t, out, "text/plain"), want) {
			t.Errorf("%s: body text %q lost", rel, want)
		}
	}
	t.Logf("corpus: %d messages: %d passed through unchanged, %d rewritten with %d working links, %d refused as malformed",
		len(files), unchanged, linked, links, refused)
}

// crlf converts bare LF line ends to CRLF, as SMTP carries them.
func crlf(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
}

func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); len(l) > 8 {
			return l
		}
	}
	return ""
}

// htmlLinks finds links in the text/html parts, for mail without a
// text/plain body.
func htmlLinks(t *testing.T, d *daemon, raw []byte) []string {
	html := decodedText(t, raw, "text/html")
	re := regexp.MustCompile(`href="(` + regexp.QuoteMeta(d.linkURL) + `/d/[A-Za-z0-9_-]+)"`)
	var links []string
	for _, m := range re.FindAllStringSubmatch(html, -1) {
		links = append(links, m[1])
	}
	return links
}
