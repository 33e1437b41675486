package mailpart

import (
	"encoding/base64"
	"fmt"
	"mime"
	"path"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxFilenameBytes caps a decoded name: most file systems allow 255 bytes.
const maxFilenameBytes = 255

// partFilename returns the decoded name of an entity: Content-Disposition
// filename (RFC 2231 already joined by parseParamHeader), else Content-Type
// name. The result is sanitised; "" when there is none.
func partFilename(dispParams, typeParams map[string]string) string {
	for _, v := range []string{dispParams["filename"], typeParams["name"]} {
		if v == "" {
			continue
		}
		if name := sanitizeFilename(decodeParamText(v)); name != "" {
			return name
		}
	}
	return ""
}

// decodeParamText decodes a plain (non-RFC 2231) parameter value: raw 8-bit
// or JIS bytes first, then RFC 2047 encoded words that Outlook and Gmail put
// inside quoted parameters.
func decodeParamText(s string) string {
	if !utf8.ValidString(s) || strings.Contains(s, "\x1b") {
		s = sniffText([]byte(s))
	}
	if strings.Contains(s, "=?") {
		s = decodeEncodedWords(s)
	}
	return s
}

// decodeEncodedWords decodes RFC 2047 encoded words anywhere in s. Adjacent
// words in the same charset are joined as bytes before conversion, so a
// multi-byte character split across two words (Gmail, long Japanese names)
// survives; whitespace between words is dropped. Malformed words stay literal.
func decodeEncodedWords(s string) string {
	var (
		out        strings.Builder
		runCharset string // charset of the pending run of words
		runBytes   []byte
		inRun      bool
	)
	flush := func() {
		if inRun {
			out.WriteString(decodeBytes(runCharset, runBytes))
			runBytes, inRun = runBytes[:0], false
		}
	}
	for len(s) > 0 {
		start := strings.Index(s, "=?")
		if start < 0 {
			flush()
			out.WriteString(s)
			return out.String()
		}
		cs, data, n, ok := parseEncodedWord(s[start:])
		if !ok {
			flush()
			out.WriteString(s[:start+2])
			s = s[start+2:]
			continue
		}
		between := s[:start]
		if inRun && strings.TrimSpace(between) == "" {
			between = "" // whitespace between adjacent words is not text
		} else {
			flush()
		}
		if between != "" {
			out.WriteString(between)
		}
		cs = normalizeCharset(cs)
		if inRun && cs != runCharset {
			flush()
		}
		runCharset, inRun = cs, true
		runBytes = append(runBytes, data...)
		s = s[start+n:]
	}
	flush()
	return out.String()
}

// parseEncodedWord parses "=?charset?enc?text?=" at the start of s and
// returns the decoded bytes and the length consumed. Whitespace inside the
// text is tolerated (clients fold long words illegally).
func parseEncodedWord(s string) (charset string, data []byte, n int, ok bool) {
	rest := s[2:]
	q1 := strings.IndexByte(rest, '?')
	if q1 <= 0 || q1 > 64 || len(rest) < q1+3 || rest[q1+2] != '?' {
		return "", nil, 0, false
	}
	charset, enc := rest[:q1], rest[q1+1]
	body := rest[q1+3:]
	end := strings.Index(body, "?=")
	if end < 0 || end > 2000 {
		return "", nil, 0, false
	}
	text := body[:end]
	switch enc {
	case 'B', 'b':
		data, ok = decodeBase64Word(text)
	case 'Q', 'q':
		data, ok = decodeQWord(text), true
	}
	if !ok {
		return "", nil, 0, false
	}
	return charset, data, 2 + q1 + 3 + end + 2, true
}

func decodeBase64Word(text string) ([]byte, bool) {
	text = strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, text)
	if b, err := base64.StdEncoding.DecodeString(text); err == nil {
		return b, true
	}
	// Missing or broken padding: decode what is whole. A lone trailing
	// character carries no complete byte.
	text = strings.TrimRight(text, "=")
	if len(text)%4 == 1 {
		text = text[:len(text)-1]
	}
	b, err := base64.RawStdEncoding.DecodeString(text)
	if err != nil {
		return nil, false
	}
	return b, true
}

func decodeQWord(text string) []byte {
	out := make([]byte, 0, len(text))
	for i := 0; i < len(text); i++ {
		switch c := text[i]; {
		case c == '_':
			out = append(out, ' ')
		case c == '=' && i+2 < len(text) && isHex(text[i+1]) && isHex(text[i+2]):
			out = append(out, unhex(text[i+1])<<4|unhex(text[i+2]))
			i += 2
		default:
			out = append(out, c)
		}
	}
	return out
}

// sanitizeFilename makes a decoded name safe to store and show: no path
// components, no control or bidi-override characters (which disguise
// extensions), trimmed, at most 255 bytes cut on a UTF-8 boundary with the
// extension kept. It returns "" for names that are empty after that.
func sanitizeFilename(name string) string {
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Map(func(r rune) rune {
		switch {
		case r == '\t':
			return ' '
		case unicode.IsControl(r), isBidiControl(r):
			return -1
		}
		return r
	}, name)
	name = strings.TrimSpace(name)
	if name == "." || name == ".." {
		return ""
	}
	return truncateName(name, maxFilenameBytes)
}

func isBidiControl(r rune) bool {
	return r == '\u200e' || r == '\u200f' || r == '\u061c' ||
		('\u202a' <= r && r <= '\u202e') || ('\u2066' <= r && r <= '\u2069')
}

// truncateName cuts name to at most max bytes on a UTF-8 boundary, keeping a
// short extension so the file still opens with the right program.
func truncateName(name string, max int) string {
	if len(name) <= max {
		return name
	}
	ext := path.Ext(name)
	if len(ext) > 16 || len(ext) >= max {
		ext = ""
	}
	stem := name[:len(name)-len(ext)]
	limit := max - len(ext)
	for limit > 0 && !utf8.RuneStart(stem[limit]) {
		limit--
	}
	return strings.TrimSpace(stem[:limit]) + ext
}

// fallbackFilename names an attachment that has no usable name:
// "attachment-N.ext", N counting attachments from 1.
func fallbackFilename(index int, mediaType string) string {
	return fmt.Sprintf("attachment-%d%s", index, extensionFor(mediaType))
}

// commonExtensions pins the extension of frequent types; mime.ExtensionsByType
// depends on the host's mime tables and sorts ".jfif" before ".jpg".
var commonExtensions = map[string]string{
	"application/pdf":               ".pdf",
	"application/zip":               ".zip",
	"application/octet-stream":      ".bin",
	"application/msword":            ".doc",
	"application/vnd.ms-excel":      ".xls",
	"application/vnd.ms-powerpoint": ".ppt",
	"application/vnd.openxmlformats-officedocument.wordprocessingml.document":   ".docx",
	"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet":         ".xlsx",
	"application/vnd.openxmlformats-officedocument.presentationml.presentation": ".pptx",
	"application/gzip": ".gz",
	"application/json": ".json",
	"application/xml":  ".xml",
	"application/ics":  ".ics",
	"image/jpeg":       ".jpg",
	"image/png":        ".png",
	"image/gif":        ".gif",
	"image/webp":       ".webp",
	"image/tiff":       ".tif",
	"image/svg+xml":    ".svg",
	"text/plain":       ".txt",
	"text/html":        ".html",
	"text/csv":         ".csv",
	"text/calendar":    ".ics",
	"audio/mpeg":       ".mp3",
	"video/mp4":        ".mp4",
	"message/rfc822":   ".eml",
	"message/global":   ".eml",
}

func extensionFor(mediaType string) string {
	if ext, ok := commonExtensions[mediaType]; ok {
		return ext
	}
	if exts, err := mime.ExtensionsByType(mediaType); err == nil && len(exts) > 0 {
		return exts[0]
	}
	return ".bin"
}
