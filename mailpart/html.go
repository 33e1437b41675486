package mailpart

import (
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
// believe the meta over the MIME header), and inserts the notice before the
// last "</body>", or at the end when there is none.
type htmlNoticeWriter struct {
	w        io.Writer
	notice   string
	head     []byte
	headDone bool
	hold     []byte // bytes from the last "</body" on, or a possible prefix of it
}

func newHTMLNoticeWriter(w io.Writer, notice string) *htmlNoticeWriter {
	return &htmlNoticeWriter{w: w, notice: notice}
}

func (h *htmlNoticeWriter) Write(p []byte) (int, error) {
	n := len(p)
	if !h.headDone {
		h.head = append(h.head, p...)
		if len(h.head) < htmlHeadWindow && indexFold(h.head, "<body") < 0 {
			return n, nil
		}
		p = h.flushHead()
	}
	return n, h.push(p)
}

func (h *htmlNoticeWriter) flushHead() []byte {
	h.headDone = true
	head := metaCharset.ReplaceAll(h.head, []byte("${1}utf-8"))
	h.head = nil
	return head
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

// Close writes the notice and whatever was held.
func (h *htmlNoticeWriter) Close() error {
	if !h.headDone {
		if err := h.push(h.flushHead()); err != nil {
			return err
		}
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
