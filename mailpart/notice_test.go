package mailpart

import (
	"strings"
	"testing"
	"time"
)

func TestNoticeRendering(t *testing.T) {
	jst := time.FixedZone("JST", 9*3600)
	files := []NoticeFile{
		{Name: "<script>.pdf", Size: 1572864, SHA256: strings.Repeat("0f", 32),
			Expires: time.Date(2026, 12, 2, 19, 10, 0, 0, jst), URL: "https://files.example.com/d/abc?x=1&y=2"},
		{Name: "見積書.xlsx", Size: 512, SHA256: strings.Repeat("a1", 32),
			Expires: time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC), URL: "https://files.example.com/d/def"},
	}
	tests := []struct {
		language string
		want     []string // in the plain text
		unwanted []string
	}{
		{"en", []string{introEN, "Size: 1.5 MiB (1,572,864 bytes)", "Expires: 2026-12-02 19:10 JST (+09:00)", "Size: 512 B (512 bytes)", "2026-12-03 08:00 UTC (+00:00)"}, []string{introJA, "サイズ"}},
		{"ja", []string{introJA, "サイズ: 1.5 MiB (1,572,864 バイト)", "有効期限: 2026-12-02 19:10 JST (+09:00)"}, []string{introEN, "Size"}},
		{"both", []string{introEN, introJA, "Size / サイズ: 1.5 MiB", "Expires / 有効期限: 2026-12-02 19:10 JST (+09:00)"}, nil},
		{"", []string{introEN, introJA}, nil},
	}
	for _, tc := range tests {
		t.Run("lang="+tc.language, func(t *testing.T) {
			n := Notice{Files: files, Language: tc.language}
			plain := n.PlainText()
			for _, w := range tc.want {
				if !strings.Contains(plain, w) {
					t.Errorf("plain text lacks %q:\n%s", w, plain)
				}
			}
			for _, u := range tc.unwanted {
				if strings.Contains(plain, u) {
					t.Errorf("plain text has %q", u)
				}
			}
			for _, f := range files {
				if c := strings.Count(plain, f.URL); c != 1 {
					t.Errorf("URL %s appears %d times in plain text", f.URL, c)
				}
				if !strings.Contains(plain, "\n  "+f.URL+"\n") {
					t.Errorf("URL %s not on a line of its own", f.URL)
				}
				if !strings.Contains(plain, f.Name) || !strings.Contains(plain, f.SHA256) {
					t.Errorf("plain text lacks name or hash of %s", f.Name)
				}
			}

			h := n.HTML()
			if strings.Contains(h, "<script>") {
				t.Errorf("HTML has an unescaped name:\n%s", h)
			}
			if !strings.Contains(h, "&lt;script&gt;.pdf") {
				t.Errorf("HTML lacks the escaped name:\n%s", h)
			}
			if c := strings.Count(h, `href="https://files.example.com/d/abc?x=1&amp;y=2"`); c != 1 {
				t.Errorf("escaped href appears %d times:\n%s", c, h)
			}
			if c := strings.Count(h, "https://files.example.com/d/def"); c != 1 {
				t.Errorf("URL appears %d times in HTML", c)
			}
		})
	}
}

func TestNoticeValuesStayOnOneLine(t *testing.T) {
	n := Notice{Language: "en", Files: []NoticeFile{{Name: "a\r\nFake: line.pdf", URL: "https://x/d/1"}}}
	if strings.Contains(n.PlainText(), "\nFake") {
		t.Errorf("a line break in a name reached the notice:\n%s", n.PlainText())
	}
}

// TestNoticeListsMessagePageFirst: the page of the whole message comes
// before the files, on a line of its own in text and once as a link in
// HTML, in every language.
func TestNoticeListsMessagePageFirst(t *testing.T) {
	const page = "https://files.example.com/m/PAGE&x"
	files := []NoticeFile{{Name: "a.pdf", Size: 1, URL: "https://files.example.com/d/A"},
		{Name: "b.pdf", Size: 2, URL: "https://files.example.com/d/B"}}
	for lang, label := range map[string]string{"en": "All files of this message", "ja": "このメールのすべてのファイル",
		"both": "All files of this message / このメールのすべてのファイル"} {
		n := Notice{MessageURL: page, Files: files, Language: lang}
		plain := n.PlainText()
		want := "\n" + label + ":\n  " + page + "\n"
		i := strings.Index(plain, want)
		if i < 0 {
			t.Fatalf("%s: plain text lacks %q:\n%s", lang, want, plain)
		}
		if j := strings.Index(plain, files[0].URL); j < i {
			t.Errorf("%s: the first file comes before the message page:\n%s", lang, plain)
		}
		if c := strings.Count(plain, page); c != 1 {
			t.Errorf("%s: message page appears %d times in plain text", lang, c)
		}
		h := n.HTML()
		link := `<a href="https://files.example.com/m/PAGE&amp;x">` + label + `</a>`
		i = strings.Index(h, link)
		if i < 0 {
			t.Fatalf("%s: HTML lacks %s:\n%s", lang, link, h)
		}
		if j := strings.Index(h, files[0].URL); j < i {
			t.Errorf("%s: HTML lists a file before the message page", lang)
		}
		if c := strings.Count(h, "/m/PAGE"); c != 1 {
			t.Errorf("%s: message page appears %d times in HTML", lang, c)
		}
	}
	if plain := (Notice{Files: files, Language: "en"}).PlainText(); strings.Contains(plain, "All files") {
		t.Errorf("a notice without a message page mentions one:\n%s", plain)
	}
}
