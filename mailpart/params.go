package mailpart

import (
	"sort"
	"strconv"
	"strings"
)

// rawParam is one "name=value" pair of a structured header field, before any
// RFC 2231 or RFC 2047 decoding.
type rawParam struct {
	name  string // lowercased, may carry RFC 2231 "*N" / "*" suffixes
	value string // unquoted
}

// parseParamHeader splits a structured field such as Content-Type or
// Content-Disposition into its lowercased value and parameters. Unlike
// mime.ParseMediaType it never fails: it accepts unquoted values with
// spaces or tspecials (Outlook boundaries such as "----=_NextPart_..."),
// RFC 2231 extended values in any charset, duplicate parameters (first
// wins) and unterminated quotes, as mail clients do.
func parseParamHeader(field string) (value string, params map[string]string) {
	value, raw := splitParams(field)
	return value, joinParams(raw)
}

func splitParams(s string) (value string, params []rawParam) {
	head, rest, _ := strings.Cut(s, ";")
	value = strings.ToLower(strings.TrimSpace(stripComment(head)))
	for len(rest) > 0 {
		rest = strings.TrimLeft(rest, " \t\r\n;")
		if rest == "" {
			break
		}
		end := strings.IndexAny(rest, "=;")
		if end < 0 || rest[end] == ';' {
			// A parameter without a value carries nothing we use.
			if end < 0 {
				break
			}
			rest = rest[end:]
			continue
		}
		name := strings.ToLower(strings.TrimSpace(rest[:end]))
		rest = strings.TrimLeft(rest[end+1:], " \t\r\n")
		var val string
		if strings.HasPrefix(rest, `"`) {
			val, rest = readQuoted(rest[1:])
			// Skip anything between the closing quote and the next ';'.
			if i := strings.IndexByte(rest, ';'); i >= 0 {
				rest = rest[i:]
			} else {
				rest = ""
			}
		} else {
			if i := strings.IndexByte(rest, ';'); i >= 0 {
				val, rest = rest[:i], rest[i:]
			} else {
				val, rest = rest, ""
			}
			val = strings.TrimSpace(val)
		}
		if name != "" {
			params = append(params, rawParam{name: name, value: val})
		}
	}
	return value, params
}

// stripComment drops a trailing RFC 5322 comment such as "7bit (note)".
func stripComment(s string) string {
	if i := strings.IndexByte(s, '('); i >= 0 {
		return s[:i]
	}
	return s
}

// readQuoted reads a quoted string whose opening quote has been consumed.
// A backslash escapes only '"' and '\': Windows paths sent unescaped by many
// clients keep their separators so the path can be stripped later.
func readQuoted(s string) (val, rest string) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			return b.String(), s[i+1:]
		case c == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\'):
			i++
			b.WriteByte(s[i])
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), "" // unterminated: take the rest
}

// extendedSection is one RFC 2231 piece "name*N" or "name*N*".
type extendedSection struct {
	index   int
	encoded bool
	value   string
}

// joinParams assembles RFC 2231 continuations and charsets. An extended
// value (name*=) wins over a plain one (name=), as RFC 2231 asks.
func joinParams(raw []rawParam) map[string]string {
	params := make(map[string]string, len(raw))
	extended := map[string][]extendedSection{}
	for _, p := range raw {
		base, section, isExtended := strings.Cut(p.name, "*")
		if !isExtended {
			if _, dup := params[p.name]; !dup {
				params[p.name] = p.value
			}
			continue
		}
		sec := extendedSection{index: -1, value: p.value}
		switch {
		case section == "":
			sec.encoded = true // name*=charset'lang'value
		default:
			num := strings.TrimSuffix(section, "*")
			sec.encoded = num != section
			n, err := strconv.Atoi(num)
			if err != nil || n < 0 || n > 999 {
				continue
			}
			sec.index = n
		}
		extended[base] = append(extended[base], sec)
	}
	for base, sections := range extended {
		if v, ok := decodeExtended(sections); ok {
			params[base] = v
		}
	}
	return params
}

// decodeExtended joins the sections of one RFC 2231 parameter and converts
// the bytes from the charset named in the first encoded section.
func decodeExtended(sections []extendedSection) (string, bool) {
	// A lone "name*=" is self-contained.
	for _, s := range sections {
		if s.index < 0 {
			cs, text := splitCharset(s.value)
			return decodeBytes(cs, percentDecode(text)), true
		}
	}
	sort.SliceStable(sections, func(i, j int) bool { return sections[i].index < sections[j].index })
	var (
		buf     []byte
		cs      string
		next    int
		decoded bool
	)
	for _, s := range sections {
		if s.index != next {
			if s.index < next {
				continue // duplicate section: first wins
			}
			break // gap: what follows cannot be trusted
		}
		next++
		v := s.value
		if s.encoded {
			if s.index == 0 {
				cs, v = splitCharset(v)
			}
			buf = append(buf, percentDecode(v)...)
			decoded = true
		} else {
			buf = append(buf, v...)
		}
	}
	if next == 0 {
		return "", false
	}
	if !decoded {
		// Plain continuations may still carry RFC 2047 words or raw 8-bit.
		return decodeParamText(string(buf)), true
	}
	return decodeBytes(cs, buf), true
}

// splitCharset splits "charset'language'text". Without the two quotes the
// whole value is text in an unknown charset.
func splitCharset(v string) (charset, text string) {
	cs, rest, ok := strings.Cut(v, "'")
	if !ok {
		return "", v
	}
	_, text, ok = strings.Cut(rest, "'")
	if !ok {
		return "", v
	}
	return strings.TrimSpace(cs), text
}

// percentDecode undoes RFC 2231 %XX escapes; a malformed escape stays literal.
func percentDecode(s string) []byte {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			out = append(out, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		out = append(out, s[i])
	}
	return out
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
