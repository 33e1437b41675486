package mailpart

import (
	"bytes"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/charset" // also registers message.CharsetReader
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/japanese"
)

// charsetAliases maps labels seen in real mail that go-message/charset does
// not resolve to one it does. The ISO-2022-JP variants are supersets; the
// base decoder covers what Japanese mailers actually send.
var charsetAliases = map[string]string{
	"cp932":          "windows-31j",
	"x-ms-cp932":     "windows-31j",
	"iso-2022-jp-1":  "iso-2022-jp",
	"iso-2022-jp-2":  "iso-2022-jp",
	"iso-2022-jp-3":  "iso-2022-jp",
	"iso-2022-jp-ms": "iso-2022-jp",
	"cp50220":        "iso-2022-jp",
	"cp50221":        "iso-2022-jp",
	"x-euc":          "euc-jp",
	"eucjp":          "euc-jp",
}

// normalizeCharset lowercases a charset label and strips quotes, an RFC 2231
// language suffix ("utf-8*ja") and surrounding space.
func normalizeCharset(cs string) string {
	cs = strings.ToLower(strings.Trim(strings.TrimSpace(cs), `"'`))
	if i := strings.IndexByte(cs, '*'); i >= 0 {
		cs = cs[:i]
	}
	if alias, ok := charsetAliases[cs]; ok {
		return alias
	}
	return cs
}

// isPassthroughCharset reports labels under which bytes are taken as UTF-8
// (US-ASCII is a subset).
func isPassthroughCharset(cs string) bool {
	switch cs {
	case "", "utf-8", "utf8", "us-ascii", "ascii":
		return true
	}
	return false
}

// isUnknownCharsetLabel reports labels that say "some 8-bit charset": the
// bytes have to be sniffed.
func isUnknownCharsetLabel(cs string) bool {
	switch cs {
	case "x-unknown", "unknown", "unknown-8bit", "default", "x-user-defined":
		return true
	}
	return false
}

// textDecoder returns a reader converting body text in charset cs to UTF-8.
// ok is false when the charset cannot be converted; the caller then leaves
// the text untouched.
func textDecoder(cs string, r io.Reader) (io.Reader, bool) {
	cs = normalizeCharset(cs)
	if isPassthroughCharset(cs) {
		return r, true
	}
	dec, err := charset.Reader(cs, r)
	if err != nil {
		return nil, false
	}
	return dec, true
}

// decodeBytes converts a short string such as a file name from charset cs to
// UTF-8. Unknown or missing charsets fall back to sniffing.
func decodeBytes(cs string, b []byte) string {
	cs = normalizeCharset(cs)
	if isPassthroughCharset(cs) || isUnknownCharsetLabel(cs) {
		return sniffText(b)
	}
	dec, err := charset.Reader(cs, bytes.NewReader(b))
	if err != nil {
		return sniffText(b)
	}
	out, err := io.ReadAll(dec)
	if err != nil {
		return sniffText(b)
	}
	return string(out)
}

// sniffText turns bytes of unknown charset into UTF-8: ISO-2022-JP when it
// has JIS escapes, UTF-8 when valid, else Shift_JIS when it decodes
// cleanly, else ISO-8859-1 (which decodes anything).
func sniffText(b []byte) string {
	if bytes.Contains(b, []byte("\x1b$")) || bytes.Contains(b, []byte("\x1b(")) {
		if s, ok := decodeClean(japanese.ISO2022JP.NewDecoder().Bytes(b)); ok {
			return s
		}
	}
	if utf8.Valid(b) {
		return string(b)
	}
	if s, ok := decodeClean(japanese.ShiftJIS.NewDecoder().Bytes(b)); ok {
		return s
	}
	s, _ := charmap.ISO8859_1.NewDecoder().Bytes(b)
	return string(s)
}

// decodeClean accepts a decoding that produced no replacement characters.
func decodeClean(b []byte, err error) (string, bool) {
	if err != nil || bytes.ContainsRune(b, utf8.RuneError) {
		return "", false
	}
	return string(b), true
}
