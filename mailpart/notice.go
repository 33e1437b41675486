package mailpart

import (
	"fmt"
	"html"
	"strings"
	"time"
	"unicode"

	"github.com/attachgate/attachgate/bytesize"
)

// Notice is the text that replaces removed attachments in the mail.
type Notice struct {
	// MessageURL, when set, is the page of the whole message
	// (base_url/m/{token}); it is listed first, before the files.
	MessageURL string
	Files      []NoticeFile
	Language   string // "en", "ja" or "both" ("" = both)
	// EightBit writes the rewritten text parts as 8bit UTF-8 instead of
	// quoted-printable. Use it when the next hop offers 8BITMIME: links
	// then stay whole on one line of the raw message, where people and
	// scripts look for them (quoted-printable splits lines at 76).
	EightBit bool
}

// NoticeFile is one removed attachment and its link.
type NoticeFile struct {
	Name    string
	Size    int64
	SHA256  string    // hex
	Expires time.Time // render in its own Location: date, time and zone, e.g. "2026-12-02 19:10 JST (+09:00)"
	URL     string    // exactly one link per file
}

// expiryLayout shows date, time and zone in the time's own location.
const expiryLayout = "2006-01-02 15:04 MST (-07:00)"

const (
	introEN = "Attachments removed by attachgate. Download them before they expire:"
	introJA = "添付ファイルは attachgate により取り外されました。以下のリンクから有効期限までにダウンロードしてください。"
)

// labels holds the per-file captions in one language, or both joined.
type labels struct {
	size, bytes, expires, all string
}

var (
	labelsEN   = labels{size: "Size", bytes: "bytes", expires: "Expires", all: "All files of this message"}
	labelsJA   = labels{size: "サイズ", bytes: "バイト", expires: "有効期限", all: "このメールのすべてのファイル"}
	labelsBoth = labels{size: "Size / サイズ", bytes: "bytes / バイト", expires: "Expires / 有効期限",
		all: "All files of this message / このメールのすべてのファイル"}
)

func (n Notice) parts() (intro []string, l labels) {
	switch strings.ToLower(n.Language) {
	case "en":
		return []string{introEN}, labelsEN
	case "ja":
		return []string{introJA}, labelsJA
	}
	return []string{introEN, introJA}, labelsBoth
}

// PlainText renders the notice for text/plain bodies: the message page
// first (when set), then each file once; every URL stands alone on its own
// line so clients make it a link.
// Lines end in "\n"; the rewriter converts them to CRLF.
func (n Notice) PlainText() string {
	intro, l := n.parts()
	var b strings.Builder
	for _, line := range intro {
		b.WriteString(line)
		b.WriteByte('\n')
	}
	if n.MessageURL != "" {
		fmt.Fprintf(&b, "\n%s:\n  %s\n", l.all, oneLine(n.MessageURL))
	}
	for _, f := range n.Files {
		b.WriteString("\n- ")
		b.WriteString(oneLine(f.Name))
		b.WriteByte('\n')
		fmt.Fprintf(&b, "  %s: %s (%s %s)\n", l.size, bytesize.Human(f.Size), bytesize.Grouped(f.Size), l.bytes)
		if f.SHA256 != "" {
			fmt.Fprintf(&b, "  SHA-256: %s\n", oneLine(f.SHA256))
		}
		if !f.Expires.IsZero() {
			fmt.Fprintf(&b, "  %s: %s\n", l.expires, f.Expires.Format(expiryLayout))
		}
		fmt.Fprintf(&b, "  %s\n", oneLine(f.URL))
	}
	return b.String()
}

// HTML renders the notice as an HTML fragment for text/html bodies; every
// value is escaped. Each URL appears once, as the href of the message
// page's link (first) or of a file's link.
func (n Notice) HTML() string {
	intro, l := n.parts()
	var b strings.Builder
	b.WriteString(`<div class="attachgate-notice" style="margin-bottom:1em;padding-bottom:0.5em;border-bottom:1px solid #999;font-family:sans-serif;font-size:small">`)
	b.WriteByte('\n')
	for _, line := range intro {
		fmt.Fprintf(&b, "<p>%s</p>\n", html.EscapeString(line))
	}
	if n.MessageURL != "" {
		fmt.Fprintf(&b, "<p><a href=\"%s\">%s</a></p>\n", html.EscapeString(oneLine(n.MessageURL)), html.EscapeString(l.all))
	}
	b.WriteString("<ul>\n")
	for _, f := range n.Files {
		fmt.Fprintf(&b, `<li><a href="%s">%s</a><br>`, html.EscapeString(oneLine(f.URL)), html.EscapeString(oneLine(f.Name)))
		fmt.Fprintf(&b, "%s: %s (%s %s)<br>", html.EscapeString(l.size), bytesize.Human(f.Size), bytesize.Grouped(f.Size), html.EscapeString(l.bytes))
		if f.SHA256 != "" {
			fmt.Fprintf(&b, "SHA-256: <code>%s</code><br>", html.EscapeString(oneLine(f.SHA256)))
		}
		if !f.Expires.IsZero() {
			fmt.Fprintf(&b, "%s: %s", html.EscapeString(l.expires), html.EscapeString(f.Expires.Format(expiryLayout)))
		}
		b.WriteString("</li>\n")
	}
	b.WriteString("</ul>\n</div>\n")
	return b.String()
}

// oneLine keeps a value from breaking the notice's layout or faking lines.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}
