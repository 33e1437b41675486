package mailpart

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"mime"
	"strings"

	"github.com/emersion/go-message/textproto"
)

// Rewrite copies the message from r to w in one streaming pass, dropping the
// leaf parts whose Path is in remove (and a TNEF part when a file in it is
// removed) and adding the notice to every body text part (text/plain and
// text/html that are not attachments). Mail whose Summary.PassThrough is
// set is not for Rewrite: relay it with CopyPassThrough.
//
// Untouched entities are copied byte for byte: their header lines as read,
// their bodies raw, with the original boundaries, preamble and epilogue.
// Only line endings change: output uses CRLF throughout. A body that gets
// the notice is decoded (transfer encoding and charset) and re-encoded as
// UTF-8 quoted-printable. When no body can take the notice, a text/plain
// part carrying it is appended to the top-level multipart; a top-level
// single part that is removed has its body replaced by the notice.
func Rewrite(r io.Reader, w io.Writer, lim Limits, remove map[string]bool, n Notice) error {
	out := &trackingWriter{w: bufio.NewWriterSize(w, ioBufferSize)}
	rw := &rewriter{out: out, remove: remove, notice: n, withNotice: len(n.Files) > 0, containers: map[string]bool{}}
	for path := range remove {
		// A file inside TNEF ("1.2.t1") takes its container ("1.2") out.
		if i := strings.Index(path, ".t"); i > 0 {
			rw.containers[path[:i]] = true
		}
	}
	if err := newWalker(r, lim, rw, true).run(); err != nil {
		return err
	}
	if err := out.w.Flush(); err != nil {
		return fmt.Errorf("rewrite: write output: %w", err)
	}
	return nil
}

// trackingWriter remembers the last byte written, so that a boundary line
// can always be started on a fresh line.
type trackingWriter struct {
	w    *bufio.Writer
	last byte
}

func (t *trackingWriter) Write(p []byte) (int, error) {
	if len(p) > 0 {
		t.last = p[len(p)-1]
	}
	n, err := t.w.Write(p)
	if err != nil {
		return n, fmt.Errorf("write output: %w", err)
	}
	return n, nil
}

func (t *trackingWriter) WriteString(s string) (int, error) {
	if len(s) > 0 {
		t.last = s[len(s)-1]
	}
	n, err := t.w.WriteString(s)
	if err != nil {
		return n, fmt.Errorf("write output: %w", err)
	}
	return n, nil
}

// leafAction is what Rewrite does with one leaf.
type leafAction int

const (
	actionKeep        leafAction = iota // copy as is
	actionDrop                          // removed: nothing of it is written
	actionNotice                        // body text: decoded, notice added, re-encoded
	actionReplace                       // removed top-level single part: body becomes the notice
	actionWrap                          // top-level single part that cannot take the notice: wrapped in multipart/mixed with it
	actionKeepChecked                   // kept, re-encoded quoted-printable if a line is too long (linelength.go)
)

type rewriter struct {
	out        *trackingWriter
	remove     map[string]bool
	containers map[string]bool // TNEF parts a removed file was found in
	notice     Notice
	withNotice bool

	action  leafAction // of the leaf entered last; leaf() follows enter() directly
	noticed bool       // some body took the notice

	// endingOwed is set when the last section written gave its final line
	// ending to the boundary line after it: write one back before the next
	// boundary line.
	endingOwed bool

	wrapBoundary string

	// head writes the header of the rewritten body entered last, given
	// its transfer encoding.
	head func(cte string) error

	// armoured is set once a body text with inline PGP armour was seen.
	armoured bool
}

// bodyEncoder encodes a rewritten text body of e (nil: a part of the
// root multipart added by the rewrite).
func (rw *rewriter) bodyEncoder(e *entity, head func(cte string) error) *bodyEncoder {
	return &bodyEncoder{out: rw.out, head: head, allow8bit: rw.notice.EightBit,
		boundaries: func() [][]byte {
			var bs [][]byte
			if rw.wrapBoundary != "" {
				bs = append(bs, []byte("--"+rw.wrapBoundary))
			}
			for p := e; p != nil; p = p.parent {
				if p.boundary != "" {
					bs = append(bs, []byte("--"+p.boundary))
				}
			}
			return bs
		}}
}

func (rw *rewriter) enter(e *entity) error {
	if e.isMultipart() {
		if !e.isRoot() {
			if err := rw.writeDelimiter(e.parent.boundary, false); err != nil {
				return err
			}
		}
		if ct, repair := repairedMultipartType(e); repair {
			return rw.writeHeader(e.part.Header, map[string]string{"Content-Type": ct}, false)
		}
		return rw.writeRawHeader(e)
	}
	rw.action = rw.decide(e)
	if rw.action == actionDrop {
		return nil
	}
	if rw.action == actionKeep && !rw.armoured && !e.isRoot() && mayReencode(e) {
		rw.action = actionKeepChecked
	}
	if !e.isRoot() {
		if err := rw.writeDelimiter(e.parent.boundary, false); err != nil {
			return err
		}
	}
	// A rewritten body's header is written once its transfer encoding is
	// decided (textenc.go), by leaf, which follows directly.
	switch rw.action {
	case actionNotice:
		ct := noticeContentType(e.part.MediaType, e.part.Params)
		rw.head = func(cte string) error {
			return rw.writeHeader(e.part.Header, map[string]string{
				"Content-Type":              ct,
				"Content-Transfer-Encoding": cte,
			}, false)
		}
		return nil
	case actionReplace:
		rw.head = func(cte string) error {
			return rw.writeHeader(e.part.Header, map[string]string{
				"Content-Type":              "text/plain; charset=utf-8",
				"Content-Transfer-Encoding": cte,
				"Content-Disposition":       "",
			}, true)
		}
		return nil
	case actionWrap:
		return rw.writeWrapHeader(e.part.Header)
	case actionKeepChecked:
		return nil // leaf writes the header once the transfer encoding is known
	}
	return rw.writeRawHeader(e)
}

func (rw *rewriter) decide(e *entity) leafAction {
	removed := rw.remove[e.part.Path] || rw.containers[e.part.Path]
	switch {
	case e.sealed || rw.armoured:
		return actionKeep // signed, encrypted or automatic content stays as it is
	case removed && e.isRoot():
		return actionReplace
	case removed:
		return actionDrop
	case rw.withNotice && e.verdict.body && canDecodeText(e):
		return actionNotice
	case rw.withNotice && e.isRoot():
		return actionWrap
	}
	return actionKeep
}

// canDecodeText reports whether a body's charset can be converted; a body
// in an unknown charset is left untouched rather than garbled.
func canDecodeText(e *entity) bool {
	_, ok := textDecoder(e.part.Params["charset"], strings.NewReader(""))
	return ok
}

func (rw *rewriter) leaf(e *entity, body *section) error {
	switch rw.action {
	case actionDrop:
		return nil
	case actionNotice:
		raw := bufio.NewReaderSize(body, armourPeek)
		if hasArmour(e, raw) {
			// Inline PGP: the text stays as it is (Walk, which reads the
			// whole body, tells callers to pass such mail through), and
			// so does everything after it.
			rw.armoured = true
			if err := rw.writeRawHeader(e); err != nil {
				return err
			}
			if _, err := io.Copy(rw.out, raw); err != nil {
				return fmt.Errorf("rewrite: %w", err)
			}
			rw.endingOwed = body.droppedEnding
			return nil
		}
		if err := rw.writeNoticeBody(e, raw, rw.bodyEncoder(e, rw.head)); err != nil {
			return fmt.Errorf("rewrite part %s: %w", e.part.Path, err)
		}
		rw.noticed, rw.endingOwed = true, true
		return nil
	case actionReplace:
		if err := rw.writeText(rw.bodyEncoder(e, rw.head), rw.notice.PlainText()); err != nil {
			return err
		}
		rw.noticed, rw.endingOwed = true, true
		return nil
	case actionWrap:
		if err := rw.copySection(body); err != nil {
			return err
		}
		if err := rw.writeNoticePart(e, rw.wrapBoundary); err != nil {
			return err
		}
		return rw.writeDelimiter(rw.wrapBoundary, true)
	case actionKeepChecked:
		return rw.keepChecked(e, body)
	}
	return rw.copySection(body)
}

func (rw *rewriter) preamble(_ *entity, body *section) error { return rw.copySection(body) }
func (rw *rewriter) epilogue(_ *entity, body *section) error { return rw.copySection(body) }

func (rw *rewriter) leave(e *entity, closed bool) error {
	if !closed {
		// The content ran to EOF or into an outer boundary: its last line
		// ending is content, not part of the delimiter written here.
		rw.endingOwed = true
	}
	if e.isRoot() && rw.withNotice && !rw.noticed && !e.sealed && !rw.armoured {
		if err := rw.writeNoticePart(e, e.boundary); err != nil {
			return err
		}
	}
	// A missing close delimiter is written, so the output is well formed.
	return rw.writeDelimiter(e.boundary, true)
}

func (rw *rewriter) copySection(body *section) error {
	if _, err := io.Copy(rw.out, body); err != nil {
		return fmt.Errorf("rewrite: %w", err)
	}
	rw.endingOwed = body.droppedEnding
	return nil
}

// writeDelimiter writes "--boundary" or "--boundary--" on a line of its own.
func (rw *rewriter) writeDelimiter(boundary string, close bool) error {
	var b strings.Builder
	if rw.endingOwed || rw.out.last != '\n' {
		b.WriteString("\r\n")
	}
	b.WriteString("--")
	b.WriteString(boundary)
	if close {
		b.WriteString("--")
	}
	b.WriteString("\r\n")
	rw.endingOwed = false
	_, err := rw.out.WriteString(b.String())
	return err
}

// writeRawHeader writes e's header as read, its long lines folded
// (linelength.go) unless e is sealed: signed content stays byte for byte.
func (rw *rewriter) writeRawHeader(e *entity) error {
	raw := e.header.raw
	if !e.sealed {
		var err error
		if raw, err = foldHeader(raw); err != nil {
			return fmt.Errorf("rewrite header of part %s: %w", e.part.Path, err)
		}
	}
	if _, err := rw.out.Write(raw); err != nil {
		return err
	}
	_, err := rw.out.WriteString("\r\n")
	return err
}

// writeHeader writes h with the fields in set replaced in place (the first
// occurrence; later duplicates dropped) or added at the end; an empty value
// deletes the field. All other fields keep their raw bytes.
func (rw *rewriter) writeHeader(h textproto.Header, set map[string]string, needMIMEVersion bool) error {
	written := map[string]bool{}
	fields := h.Fields()
	for fields.Next() {
		key := fields.Key()
		if v, ok := set[key]; ok {
			if !written[key] && v != "" {
				if err := rw.writeField(key, v); err != nil {
					return err
				}
			}
			written[key] = true
			continue
		}
		raw, err := fields.Raw()
		if err != nil {
			continue
		}
		if err := rw.writeFolded(raw); err != nil {
			return err
		}
	}
	if needMIMEVersion && !h.Has("Mime-Version") {
		if err := rw.writeField("MIME-Version", "1.0"); err != nil {
			return err
		}
	}
	for _, key := range []string{"Content-Type", "Content-Transfer-Encoding"} {
		if v := set[key]; v != "" && !written[key] {
			if err := rw.writeField(key, v); err != nil {
				return err
			}
		}
	}
	_, err := rw.out.WriteString("\r\n")
	return err
}

func (rw *rewriter) writeField(key, value string) error {
	return rw.writeFolded([]byte(key + ": " + value + "\r\n"))
}

// writeFolded writes header lines with the long ones folded.
func (rw *rewriter) writeFolded(raw []byte) error {
	folded, err := foldHeader(raw)
	if err != nil {
		return fmt.Errorf("rewrite header: %w", err)
	}
	_, err = rw.out.Write(folded)
	return err
}

// writeWrapHeader turns a top-level single part into multipart/mixed: the
// message fields stay on top, the Content-* fields move to the first part.
func (rw *rewriter) writeWrapHeader(h textproto.Header) error {
	rw.wrapBoundary = newBoundary()
	var content []byte
	fields := h.Fields()
	for fields.Next() {
		raw, err := fields.Raw()
		if err != nil {
			continue
		}
		if strings.HasPrefix(fields.Key(), "Content-") {
			content = append(content, raw...)
			continue
		}
		if err := rw.writeFolded(raw); err != nil {
			return err
		}
	}
	if !h.Has("Mime-Version") {
		if err := rw.writeField("MIME-Version", "1.0"); err != nil {
			return err
		}
	}
	if err := rw.writeField("Content-Type", `multipart/mixed; boundary="`+rw.wrapBoundary+`"`); err != nil {
		return err
	}
	if _, err := rw.out.WriteString("\r\n"); err != nil {
		return err
	}
	if err := rw.writeDelimiter(rw.wrapBoundary, false); err != nil {
		return err
	}
	if err := rw.writeFolded(content); err != nil {
		return err
	}
	_, err := rw.out.WriteString("\r\n")
	return err
}

// writeNoticePart appends a text/plain part with the notice to a multipart.
func (rw *rewriter) writeNoticePart(root *entity, boundary string) error {
	if err := rw.writeDelimiter(boundary, false); err != nil {
		return err
	}
	head := func(cte string) error {
		_, err := rw.out.WriteString("Content-Type: text/plain; charset=utf-8\r\n" +
			"Content-Transfer-Encoding: " + cte + "\r\n" +
			"Content-Disposition: inline\r\n\r\n")
		return err
	}
	if err := rw.writeText(rw.bodyEncoder(root, head), rw.notice.PlainText()); err != nil {
		return err
	}
	rw.noticed, rw.endingOwed = true, true
	return nil
}

func (rw *rewriter) writeText(enc *bodyEncoder, text string) error {
	if _, err := io.WriteString(enc, text); err != nil {
		return err
	}
	return enc.Close()
}

// writeNoticeBody decodes a body text, adds the notice and writes it as
// UTF-8 through qp. It streams: only the HTML head and tail, or a plain
// text's signature, are held.
func (rw *rewriter) writeNoticeBody(e *entity, raw io.Reader, qp *bodyEncoder) error {
	decoded := transferDecoder(transferEncoding(e.part.Header.Get("Content-Transfer-Encoding")), raw)
	text, ok := textDecoder(e.part.Params["charset"], decoded)
	if !ok {
		return fmt.Errorf("charset %q cannot be decoded", e.part.Params["charset"])
	}
	if e.part.MediaType == "text/html" {
		hw := newHTMLNoticeWriter(qp, rw.notice.HTML())
		if _, err := io.Copy(hw, text); err != nil {
			return err
		}
		if err := hw.Close(); err != nil {
			return err
		}
		return qp.Close()
	}
	sw := &signatureWriter{w: qp, bol: true}
	if _, err := io.Copy(sw, text); err != nil {
		return err
	}
	if err := sw.Close(rw.notice.PlainText()); err != nil {
		return err
	}
	return qp.Close()
}

// maxSignature bounds what is held as a signature: text after a "-- "
// line that runs longer is not a signature, and the notice goes last.
const maxSignature = 16 << 10

// signatureWriter passes plain text through and puts the notice before the
// signature (the text from the last "-- " line on, RFC 3676 4.3), so mail
// clients show it as part of the message, or after the text when it has no
// signature. Only the signature is held.
type signatureWriter struct {
	w       io.Writer
	bol     bool   // at the start of a line
	pend    []byte // start of a line that may still become "-- "
	holding bool
	hold    []byte // from the signature separator on
	n       int64  // content bytes seen before the signature
	last    byte   // last of them
	lastTwo [2]byte
}

var (
	sigSeparatorLF   = []byte("-- \n")
	sigSeparatorCRLF = []byte("-- \r\n")
)

func (s *signatureWriter) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		if s.bol || len(s.pend) > 0 {
			s.pend = append(s.pend, p[0])
			p = p[1:]
			switch {
			case bytes.Equal(s.pend, sigSeparatorLF) || bytes.Equal(s.pend, sigSeparatorCRLF):
				if err := s.startSignature(); err != nil {
					return 0, err
				}
			case bytes.HasPrefix(sigSeparatorLF, s.pend) || bytes.HasPrefix(sigSeparatorCRLF, s.pend):
				s.bol = false // collecting
			default:
				pend := s.pend
				s.pend = nil
				if err := s.emit(pend); err != nil {
					return 0, err
				}
			}
			continue
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			return total, s.emit(p)
		}
		if err := s.emit(p[:i+1]); err != nil {
			return 0, err
		}
		p = p[i+1:]
	}
	return total, nil
}

// emit passes content on, or holds it as part of the signature.
func (s *signatureWriter) emit(b []byte) error {
	s.bol = b[len(b)-1] == '\n'
	if s.holding {
		s.hold = append(s.hold, b...)
		if len(s.hold) <= maxSignature {
			return nil
		}
		// Too long for a signature: it was text.
		hold := s.hold
		s.holding, s.hold = false, nil
		return s.write(hold)
	}
	return s.write(b)
}

func (s *signatureWriter) write(b []byte) error {
	s.n += int64(len(b))
	for _, c := range b[max(0, len(b)-2):] {
		s.lastTwo[0], s.lastTwo[1] = s.lastTwo[1], c
	}
	s.last = b[len(b)-1]
	_, err := s.w.Write(b)
	return err
}

// startSignature begins holding at a separator line; a signature held
// before it was not the last, so it is text.
func (s *signatureWriter) startSignature() error {
	sep := s.pend
	s.pend, s.bol = nil, true
	if s.holding {
		if err := s.write(s.hold); err != nil {
			return err
		}
	}
	s.holding, s.hold = true, append([]byte(nil), sep...)
	return nil
}

// Close writes the notice, set off by blank lines, and the signature.
func (s *signatureWriter) Close(notice string) error {
	if len(s.pend) > 0 {
		pend := s.pend
		s.pend = nil
		if err := s.emit(pend); err != nil {
			return err
		}
	}
	var sep string
	switch {
	case s.n == 0:
	case s.last != '\n':
		sep = "\n\n"
	case !s.endsWithBlankLine():
		sep = "\n"
	}
	text := sep + notice
	if s.holding {
		text += "\n"
	}
	if _, err := io.WriteString(s.w, text); err != nil {
		return err
	}
	if s.holding {
		_, err := s.w.Write(s.hold)
		return err
	}
	return nil
}

func (s *signatureWriter) endsWithBlankLine() bool {
	return s.n >= 2 && s.lastTwo[1] == '\n' && (s.lastTwo[0] == '\n' || s.lastTwo[0] == '\r' && s.n >= 3)
}

// noticeContentType is the Content-Type of a body re-encoded as UTF-8: the
// original parameters stay (format=flowed is still valid: the text is the
// same), charset becomes utf-8.
func noticeContentType(mediaType string, params map[string]string) string {
	p := maps.Clone(params)
	if p == nil {
		p = map[string]string{}
	}
	p["charset"] = "utf-8"
	if v := mime.FormatMediaType(mediaType, p); v != "" {
		return v
	}
	return mediaType + "; charset=utf-8"
}

// repairedMultipartType returns a well-formed Content-Type for a multipart
// whose boundary strict parsers (mime.ParseMediaType, go-message) cannot
// read, such as Outlook's unquoted "boundary=----=_NextPart_...". Without
// it the next hop would see a different structure than the one we checked.
func repairedMultipartType(e *entity) (string, bool) {
	_, params, err := mime.ParseMediaType(e.part.Header.Get("Content-Type"))
	if err == nil && params["boundary"] == e.boundary {
		return "", false
	}
	for i := 0; i < len(e.boundary); i++ {
		if c := e.boundary[i]; c < ' ' || c > '~' {
			return "", false // no form both parsers would read the same
		}
	}
	if v := mime.FormatMediaType(e.part.MediaType, e.part.Params); v != "" {
		return v, true
	}
	return mime.FormatMediaType(e.part.MediaType, map[string]string{"boundary": e.boundary}), true
}

func newBoundary() string {
	var b [15]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read does not fail
	return "attachgate-" + hex.EncodeToString(b[:])
}
