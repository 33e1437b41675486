package mailpart

import (
	"bytes"
	"io"
	"regexp"
)

const (
	// htmlHeadWindow is how much of an HTML body is held to find and fix
	// <meta> charset declarations before <body> starts.
	htmlHeadWindow = 16 << 10
	// htmlTailLimit bounds what is held after the last "</body" seen; if
	// more follows, that one was not the end and the notice goes last.
	htmlTailLimit = 64 << 10
)

// metaCharset matches the charset value of <meta charset=...> and of
// <meta http-equiv="Content-Type" content="text/html; charset=...">.
var metaCharset = regexp.MustCompile(`(?i)(<meta\b[^>]*?charset\s*=\s*["']?)([^"'\s;/>]+)`)

// htmlNoticeWriter streams decoded HTML through, rewrites <meta> charset
// declarations to utf-8 (the body is re-encoded as UTF-8 and some clients
// believe the meta over the MIME header), and inserts the notice at the top
// of the body, right after the <body> tag, where readers see it first. An
// HTML fragment without a <body> tag in its first htmlHeadWindow bytes gets
// the notice before the last "</body>", or at the end when there is none.
type htmlNoticeWriter struct {
	w        io.Writer
	notice   string
	head     []byte
	headDone bool
	placed   bool   // the notice went after <body>
	hold     []byte // bytes from the last "</body" on, or a possible prefix of it
}

func newHTMLNoticeWriter(w io.Writer, notice string) *htmlNoticeWriter {
	return &htmlNoticeWriter{w: w, notice: notice}
}

func (h *htmlNoticeWriter) Write(p []byte) (int, error) {
	n := len(p)
	if !h.headDone {
		h.head = append(h.head, p...)
		if len(h.head) < htmlHeadWindow && bodyTagEnd(h.head) < 0 {
			return n, nil
		}
		p = h.flushHead()
	}
	if h.placed {
		_, err := h.w.Write(p)
		return n, err
	}
	return n, h.push(p)
}

// bodyTagEnd returns the index just after the ">" of the first <body> tag,
// or -1.
func bodyTagEnd(b []byte) int {
	for off := 0; ; {
		i := indexFold(b[off:], "<body")
		if i < 0 {
			return -1
		}
		i += off + len("<body")
		if i < len(b) && (b[i] == '>' || b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n' || b[i] == '/') {
			if gt := bytes.IndexByte(b[i:], '>'); gt >= 0 {
				return i + gt + 1
			}
			return -1
		}
		off = i
	}
}

// flushHead returns the held head with its meta charset rewritten and, when
// it has a <body> tag, the notice after it.
func (h *htmlNoticeWriter) flushHead() []byte {
	h.headDone = true
	head := h.head
	h.head = nil
	if end := bodyTagEnd(head); end >= 0 {
		h.placed = true
		out := metaCharset.ReplaceAll(head[:end], []byte("${1}utf-8"))
		out = append(out, "\n"+h.notice...)
		return append(out, head[end:]...)
	}
	return metaCharset.ReplaceAll(head, []byte("${1}utf-8"))
}

func (h *htmlNoticeWriter) push(p []byte) error {
	const marker = "</body"
	h.hold = append(h.hold, p...)
	cut := len(h.hold) - (len(marker) - 1) // keep a possible partial marker
	if i := lastIndexFold(h.hold, marker); i >= 0 {
		cut = i
		if len(h.hold)-i > htmlTailLimit {
			cut = len(h.hold) - (len(marker) - 1)
		}
	}
	if cut <= 0 {
		return nil
	}
	if _, err := h.w.Write(h.hold[:cut]); err != nil {
		return err
	}
	h.hold = append(h.hold[:0], h.hold[cut:]...)
	return nil
}

// Close writes the notice (unless it went after <body>) and whatever was
// held.
func (h *htmlNoticeWriter) Close() error {
	if !h.headDone {
		head := h.flushHead()
		if h.placed {
			_, err := h.w.Write(head)
			return err
		}
		if err := h.push(head); err != nil {
			return err
		}
	}
	if h.placed {
		return nil
	}
	if indexFold(h.hold, "</body") == 0 {
		if _, err := io.WriteString(h.w, "\n"+h.notice); err != nil {
			return err
		}
		_, err := h.w.Write(h.hold)
		return err
	}
	if _, err := h.w.Write(h.hold); err != nil {
		return err
	}
	_, err := io.WriteString(h.w, "\n"+h.notice)
	return err
}

func lastIndexFold(s []byte, lowerNeedle string) int {
	last := -1
	for off := 0; ; {
		i := indexFold(s[off:], lowerNeedle)
		if i < 0 {
			return last
		}
		last = off + i
		off += i + 1
	}
}
