package mailtmpl

import (
	"strings"
	"testing"
	"time"
)

// TestReceiptShowsEverythingEscaped: the receipt lists subject,
// recipients, each file with size, SHA-256 and expiry, and the manage
// link on a line of its own; sender-controlled text is escaped in HTML
// and cannot fake lines in text.
func TestReceiptShowsEverythingEscaped(t *testing.T) {
	tokyo := time.FixedZone("JST", 9*3600)
	s, err := Load("", tokyo)
	if err != nil {
		t.Fatal(err)
	}
	d := sampleReceipt()
	d.Subject = "<script>alert(1)</script>\r\nBcc: x@evil.example"
	d.Files[0].Name = `"><img src=x>.pdf`
	d.ManageURL = "https://files.example.com/s/AbC-_1"
	for lang, words := range map[string][]string{"en": {"Recipients:", "Size: 1.5 MiB (1,572,864 bytes)", "Expires: 2026-12-04 18:30 JST (+09:00)"},
		"ja": {"宛先:", "サイズ: 1.5 MiB (1,572,864 バイト)", "有効期限: 2026-12-04 18:30 JST (+09:00)"}} {
		r, err := s.Render(KindReceipt, lang, d)
		if err != nil {
			t.Fatalf("%s: %v", lang, err)
		}
		for _, w := range append(words, "bob@example.net", "carol@example.org", d.Files[0].SHA256, "\n  "+d.ManageURL+"\n") {
			if !strings.Contains(r.Text, w) {
				t.Errorf("%s text lacks %q:\n%s", lang, w, r.Text)
			}
		}
		if strings.Contains(r.Text, "\nBcc:") || strings.Contains(r.Subject, "\n") || strings.Contains(r.Subject, "\r") {
			t.Errorf("%s: a line break in the subject reached the mail:\n%s", lang, r.Text)
		}
		if strings.Contains(r.HTML, "<script>") || strings.Contains(r.HTML, "<img") {
			t.Errorf("%s HTML not escaped:\n%s", lang, r.HTML)
		}
		if !strings.Contains(r.HTML, `href="https://files.example.com/s/AbC-_1"`) {
			t.Errorf("%s HTML lacks the manage link:\n%s", lang, r.HTML)
		}
	}
}
