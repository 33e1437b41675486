package mailpart

import (
	"encoding/base64"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/japanese"
)

func encodeTo(t *testing.T, e encoding.Encoding, s string) string {
	t.Helper()
	b, err := e.NewEncoder().String(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func percent(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		b.WriteString("%" + strings.ToUpper(string("0123456789abcdef"[s[i]>>4])+string("0123456789abcdef"[s[i]&15])))
	}
	return b.String()
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestFilenameDecoding runs the file-name rules through describePart, the
// path Walk uses: Content-Disposition and Content-Type together.
func TestFilenameDecoding(t *testing.T) {
	sjis := encodeTo(t, japanese.ShiftJIS, "予定表ソース")
	utf8Name := "日本語のファイル名.pdf"
	tests := []struct {
		name   string
		header string
		want   string
	}{
		{"plain quoted", `Content-Disposition: attachment; filename="report.pdf"`, "report.pdf"},
		{"plain token", `Content-Disposition: attachment; filename=report.pdf`, "report.pdf"},
		{"unquoted with spaces", `Content-Disposition: attachment; filename=my report.pdf`, "my report.pdf"},
		{"escaped quote", `Content-Disposition: attachment; filename="say \"hi\".txt"`, `say "hi".txt`},
		{"rfc2231 utf-8", `Content-Disposition: attachment; filename*=UTF-8''` + percent("報告書") + ".pdf", "報告書.pdf"},
		{"rfc2231 with language", `Content-Disposition: attachment; filename*=utf-8'ja'` + percent("報告書") + ".pdf", "報告書.pdf"},
		{"rfc2231 iso-2022-jp", `Content-Disposition: attachment; filename*=ISO-2022-JP''` + percent(encodeTo(t, japanese.ISO2022JP, "見積書")) + ".pdf", "見積書.pdf"},
		{"rfc2231 shift_jis", `Content-Disposition: attachment; filename*=shift_jis''` + percent(sjis) + ".pdf", "予定表ソース.pdf"},
		{"rfc2231 cp932 alias", `Content-Disposition: attachment; filename*=cp932''` + percent(sjis) + ".pdf", "予定表ソース.pdf"},
		{"rfc2231 euc-jp", `Content-Disposition: attachment; filename*=euc-jp''` + percent(encodeTo(t, japanese.EUCJP, "議事録")) + ".pdf", "議事録.pdf"},
		{"rfc2231 iso-8859-1", `Content-Disposition: attachment; filename*=iso-8859-1''` + percent(encodeTo(t, charmap.ISO8859_1, "Übersicht")) + ".pdf", "Übersicht.pdf"},
		{"rfc2231 continuations mixed", "Content-Disposition: attachment;\n filename*0*=utf-8''" + percent("四半期") + ";\n filename*1*=" + percent("報告") + ";\n filename*2=\"_v2.pdf\"", "四半期報告_v2.pdf"},
		{"rfc2231 continuations out of order", "Content-Disposition: attachment; filename*1=\"b.pdf\"; filename*0=\"a\"", "ab.pdf"},
		{"rfc2231 beats plain", `Content-Disposition: attachment; filename="fallback.pdf"; filename*=utf-8''` + percent("正式") + ".pdf", "正式.pdf"},
		{"rfc2231 unknown charset sniffs", `Content-Disposition: attachment; filename*=x-unknown''` + percent(sjis), "予定表ソース"},
		{"rfc2231 bad percent stays literal", `Content-Disposition: attachment; filename*=utf-8''100%25%zz.txt`, "100%%zz.txt"},
		{"rfc2047 utf-8 B in quotes (Outlook)", `Content-Disposition: attachment; filename="=?UTF-8?B?` + b64("契約書.pdf") + `?="`, "契約書.pdf"},
		{"rfc2047 split inside a character (Gmail)", "Content-Disposition: attachment; filename=\"=?UTF-8?B?" + b64(utf8Name[:4]) + "?=\n =?UTF-8?B?" + b64(utf8Name[4:]) + "?=\"", utf8Name},
		{"rfc2047 iso-2022-jp words", `Content-Type: application/pdf; name="=?ISO-2022-JP?B?` + b64(encodeTo(t, japanese.ISO2022JP, "提案書")) + `?= =?iso-2022-jp?B?` + b64(encodeTo(t, japanese.ISO2022JP, "（改訂）")) + `?=.pdf"`, "提案書（改訂）.pdf"},
		{"rfc2047 shift_jis split bytes", `Content-Disposition: attachment; filename="=?shift_jis?B?` + b64(sjis[:3]) + `?= =?shift_jis?B?` + b64(sjis[3:]) + `?="`, "予定表ソース"},
		{"rfc2047 Q", `Content-Disposition: attachment; filename="=?iso-8859-1?Q?R=E9sum=E9_2026.pdf?="`, "Résumé 2026.pdf"},
		{"rfc2047 word amid text", `Content-Disposition: attachment; filename="scan =?utf-8?q?=E2=84=962?=.pdf"`, "scan №2.pdf"},
		{"rfc2047 malformed stays literal", `Content-Disposition: attachment; filename="=?utf-8?X?abc?=.pdf"`, "=?utf-8?X?abc?=.pdf"},
		{"raw utf-8", `Content-Disposition: attachment; filename="見積書 v2.pdf"`, "見積書 v2.pdf"},
		{"raw shift_jis", `Content-Disposition: attachment; filename="` + sjis + `.pdf"`, "予定表ソース.pdf"},
		{"raw iso-2022-jp", `Content-Disposition: attachment; filename="` + encodeTo(t, japanese.ISO2022JP, "資料") + `.pdf"`, "資料.pdf"},
		{"raw latin-1 falls back", "Content-Disposition: attachment; filename=\"caf\xe9.txt\"", "café.txt"},
		{"name on content-type", `Content-Type: application/pdf; name="from-type.pdf"`, "from-type.pdf"},
		{"disposition without filename uses name", "Content-Type: application/pdf; name=\"from-type.pdf\"\nContent-Disposition: attachment", "from-type.pdf"},
		{"windows path stripped", `Content-Disposition: attachment; filename="C:\Users\taro\plan.pdf"`, "plan.pdf"},
		{"unix path stripped", `Content-Disposition: attachment; filename="../../etc/passwd"`, "passwd"},
		{"control and bidi characters removed", "Content-Disposition: attachment; filename*=utf-8''" + percent("a\x01b\u202Efdp.exe"), "abfdp.exe"},
		{"dot-dot is no name", `Content-Disposition: attachment; filename=".."`, ""},
		{"blank is no name", `Content-Disposition: attachment; filename="  "`, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := describePart(mustHeader(t, tc.header))
			if p.Filename != tc.want {
				t.Errorf("Filename = %q, want %q", p.Filename, tc.want)
			}
		})
	}
}

func TestSanitizeFilenameLength(t *testing.T) {
	long := strings.Repeat("あ", 100) + ".pdf"
	got := sanitizeFilename(long)
	if len(got) > maxFilenameBytes || !utf8.ValidString(got) || !strings.HasSuffix(got, ".pdf") {
		t.Errorf("sanitizeFilename(long) = %q (%d bytes)", got, len(got))
	}
	ascii := strings.Repeat("x", 300)
	if got := sanitizeFilename(ascii); len(got) != maxFilenameBytes {
		t.Errorf("ASCII name cut to %d bytes", len(got))
	}
}

func TestFallbackFilename(t *testing.T) {
	tests := []struct {
		index     int
		mediaType string
		want      string
	}{
		{1, "application/pdf", "attachment-1.pdf"},
		{2, "image/jpeg", "attachment-2.jpg"},
		{3, "application/x-never-heard-of", "attachment-3.bin"},
		{4, "message/rfc822", "attachment-4.eml"},
	}
	for _, tc := range tests {
		if got := fallbackFilename(tc.index, tc.mediaType); got != tc.want {
			t.Errorf("fallbackFilename(%d, %q) = %q, want %q", tc.index, tc.mediaType, got, tc.want)
		}
	}
}

func TestParseParamHeader(t *testing.T) {
	v, p := parseParamHeader(`multipart/alternative; boundary=----=_NextPart_000_0093_01C81419.EB75E850; charset="x"; charset="dup"`)
	if v != "multipart/alternative" || p["boundary"] != "----=_NextPart_000_0093_01C81419.EB75E850" || p["charset"] != "x" {
		t.Errorf("got %q %v", v, p)
	}
	v, p = parseParamHeader(`attachment; filename="unterminated.pdf`)
	if v != "attachment" || p["filename"] != "unterminated.pdf" {
		t.Errorf("got %q %v", v, p)
	}
	v, p = parseParamHeader(`inline (a comment); ; novalue; x = "y" junk ; z=1`)
	if v != "inline" || p["x"] != "y" || p["z"] != "1" {
		t.Errorf("got %q %v", v, p)
	}
}

// fixtureNames maps each file in testdata/filenames to the attachment name
// Walk must report. Every fixture must be listed.
var fixtureNames = map[string]string{
	"rfc2231-utf8.eml":               "報告書.pdf",
	"rfc2231-continuation.eml":       "四半期の売上報告_final.pdf",
	"rfc2231-iso-2022-jp.eml":        "見積書.pdf",
	"rfc2231-shift_jis.eml":          "請求書_ソフト表.pdf",
	"rfc2231-euc-jp.eml":             "議事録.pdf",
	"rfc2231-iso-8859-1.eml":         "Übersicht_März.pdf",
	"rfc2231-unknown-charset.eml":    "図面.pdf",
	"rfc2047-b-utf8-outlook.eml":     "契約書.pdf",
	"rfc2047-b-utf8-split-gmail.eml": "日本語のファイル名.pdf",
	"rfc2047-b-iso-2022-jp.eml":      "提案書（改訂）.pdf",
	"rfc2047-q-iso-8859-1.eml":       "Résumé 2026.pdf",
	"raw-utf8.eml":                   "見積書 v2.pdf",
	"raw-shift_jis.eml":              "予定表ソース.pdf",
	"raw-iso-2022-jp.eml":            "資料.pdf",
	"content-type-name-only.eml":     "budget 2026.xlsx",
	"windows-path.eml":               "plan.pdf",
	"unix-path.eml":                  "passwd",
	"bidi-control.eml":               "invoicefdp.exe",
	"no-name.eml":                    "attachment-1.pdf",
	"long-name.eml":                  strings.Repeat("あ", 83) + ".pdf",
	"message-rfc822-subject.eml":     "会議_議題.eml",
}

func TestFilenameFixtures(t *testing.T) {
	dir := filepath.Join("..", "testdata", "filenames")
	files, err := filepath.Glob(filepath.Join(dir, "*.eml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no fixtures in %s", dir)
	}
	seen := map[string]bool{}
	for _, file := range files {
		base := filepath.Base(file)
		seen[base] = true
		want, ok := fixtureNames[base]
		if !ok {
			t.Errorf("fixture %s has no expected name in fixtureNames", base)
			continue
		}
		t.Run(base, func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			_, err = Walk(strings.NewReader(string(raw)), Limits{}, func(p *Part, body io.Reader) error {
				if p.Attachment {
					names = append(names, p.Filename)
				}
				return nil
			})
			if err != nil {
				t.Fatalf("Walk: %v", err)
			}
			if len(names) != 1 || names[0] != want {
				t.Errorf("attachment names %q, want [%q]", names, want)
			}
		})
	}
	for base := range fixtureNames {
		if !seen[base] {
			t.Errorf("fixtureNames lists %s but the file is missing", base)
		}
	}
}
