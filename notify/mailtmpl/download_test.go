package mailtmpl

import (
	"strings"
	"testing"
)

// TestDownloadNotice: the download notice names the file and the verified
// recipient, says "not verified" otherwise, in both languages, and escapes
// a hostile file name in the HTML part and keeps it on one line in the
// subject and text.
func TestDownloadNotice(t *testing.T) {
	s, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	d := sampleDownload()
	d.FileName = "<script>alert(1)</script>\r\nBcc: evil@example.org.pdf"
	for _, tt := range []struct {
		lang, rcpt, want string
	}{
		{"en", "bob@example.net", "By:          bob@example.net"},
		{"en", "", "a recipient (not verified)"},
		{"ja", "", "受信者(未確認)"},
		{"ja", "bob@example.net", "bob@example.net"},
	} {
		d.Recipient = tt.rcpt
		r, err := s.Render("download", tt.lang, d)
		if err != nil {
			t.Fatalf("%s: %v", tt.lang, err)
		}
		if !strings.Contains(r.Text, tt.want) {
			t.Errorf("%s %q: text lacks %q:\n%s", tt.lang, tt.rcpt, tt.want, r.Text)
		}
		if strings.Contains(r.HTML, "<script>") || !strings.Contains(r.HTML, "&lt;script&gt;") {
			t.Errorf("%s: file name not escaped in HTML:\n%s", tt.lang, r.HTML)
		}
		if strings.ContainsAny(r.Subject, "\r\n") || strings.Contains(r.Text, "\nBcc:") {
			t.Errorf("%s: file name broke a line: subject %q text %q", tt.lang, r.Subject, r.Text)
		}
		if !strings.Contains(r.Text, "1.5 MiB") || !strings.Contains(r.Text, "1,572,864") {
			t.Errorf("%s: size not shown:\n%s", tt.lang, r.Text)
		}
		if strings.Contains(r.Text, "/s/") || strings.Contains(r.HTML, "/s/") {
			t.Errorf("%s: the notice carries a manage link", tt.lang)
		}
	}
}
