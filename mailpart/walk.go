package mailpart

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// entity is one node of the MIME tree while it is being read.
type entity struct {
	part     Part
	header   headerBlock
	parent   *entity
	pos      position
	boundary string // set for a multipart with a usable boundary
	verdict  classification
	named    bool // the header gave a file name (not a fallback)
	children int
	sealed   bool // signed, encrypted or automatic content: passes untouched (sealed.go)
}

func (e *entity) isRoot() bool      { return e.parent == nil }
func (e *entity) isMultipart() bool { return e.boundary != "" }

// ancestorWithBoundary returns the enclosing multipart whose delimiter
// lines are also delimiters of boundary b: the same boundary, up to the
// trailing white space a delimiter line may carry (transport padding).
func (e *entity) ancestorWithBoundary(b string) *entity {
	if b == "" {
		return nil
	}
	b = strings.TrimRight(b, " \t")
	for a := e.parent; a != nil; a = a.parent {
		if a.boundary != "" && strings.TrimRight(a.boundary, " \t") == b {
			return a
		}
	}
	return nil
}

// visitor receives the tree as the walker reads it, in input order.
type visitor interface {
	// enter is called for every entity once its header is read (and, for
	// leaves, classified), before any of its content.
	enter(e *entity) error
	// leaf gets the raw body of a leaf, transfer encoding intact.
	leaf(e *entity, body *section) error
	preamble(e *entity, body *section) error
	// leave is called at the end of a multipart; closed is false when the
	// close delimiter was missing.
	leave(e *entity, closed bool) error
	epilogue(e *entity, body *section) error
}

// walker drives one streaming pass over a message.
type walker struct {
	sc        *scanner
	lim       Limits
	cls       classifier
	v         visitor
	normalize bool // sections emit CRLF line endings
	entities  int
	seal      sealing
}

func newWalker(r io.Reader, lim Limits, v visitor, normalize bool) *walker {
	return &walker{sc: newScanner(r), lim: lim.withDefaults(), v: v, normalize: normalize}
}

func (w *walker) run() error {
	return w.entity(nil, "1", 0)
}

// entity reads one entity starting at its header. When it returns, the
// scanner's stop tells what ended it: a boundary line of an enclosing
// multipart or EOF.
func (w *walker) entity(parent *entity, path string, depth int) error {
	w.entities++
	if w.entities > w.lim.MaxParts {
		return fmt.Errorf("%w: more than %d parts", ErrTooComplex, w.lim.MaxParts)
	}
	hb, err := w.sc.readHeader(w.lim.MaxHeaderBytes, parent == nil)
	if err != nil {
		if errors.Is(err, errHeaderTooBig) {
			return fmt.Errorf("%w: header of part %s exceeds %d bytes", ErrTooComplex, path, w.lim.MaxHeaderBytes)
		}
		return fmt.Errorf("read header of part %s: %w", path, err)
	}
	e := &entity{part: describePart(hb.header), header: hb, parent: parent}
	e.part.Path, e.part.Depth = path, depth
	if parent != nil {
		e.pos = position{
			parentType: parent.part.MediaType,
			inRelated:  parent.pos.inRelated || parent.part.MediaType == "multipart/related",
		}
	}
	if strings.HasPrefix(e.part.MediaType, "multipart/") {
		e.boundary = e.part.Params["boundary"]
		if a := e.ancestorWithBoundary(e.boundary); a != nil {
			// RFC 2046 5.1.1: a nested multipart's delimiter lines would
			// also be its ancestor's; parsers disagree on where either
			// ends, so the structure the policies see is not the one the
			// recipient's client sees.
			return fmt.Errorf("%w: multipart %s reuses the boundary of %s", ErrTooComplex, path, a.part.Path)
		}
	}
	w.seal.sealEntity(e)
	if !e.isMultipart() {
		e.named = e.part.Filename != ""
		if e.sealed {
			// Part of signed, encrypted or automatic content: neither a
			// file to link nor a body to take the notice.
			e.part.Attachment = false
		} else {
			e.verdict = w.cls.classify(&e.part, e.pos)
		}
		return w.leafEntity(e)
	}
	if depth+1 > w.lim.MaxDepth {
		return fmt.Errorf("%w: multipart %s nested deeper than %d", ErrTooComplex, path, w.lim.MaxDepth)
	}
	return w.multipartEntity(e)
}

func (w *walker) bodySection(e *entity) *section {
	if e.header.noBody {
		return emptySection()
	}
	return w.sc.newSection(w.normalize, e.header.firstBody, e.header.firstBodyEnding)
}

func (w *walker) leafEntity(e *entity) error {
	if err := w.v.enter(e); err != nil {
		return err
	}
	body := w.bodySection(e)
	if err := w.v.leaf(e, body); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, body); err != nil {
		return fmt.Errorf("read part %s: %w", e.part.Path, err)
	}
	return nil
}

func (w *walker) multipartEntity(e *entity) error {
	if err := w.v.enter(e); err != nil {
		return err
	}
	if e.header.noBody {
		return w.v.leave(e, false)
	}
	w.sc.push(e.boundary)
	level := len(w.sc.bounds) - 1
	pre := w.bodySection(e)
	if err := w.v.preamble(e, pre); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, pre); err != nil {
		return fmt.Errorf("read part %s: %w", e.part.Path, err)
	}
	for {
		sc := w.sc
		switch {
		case sc.stop == stopDelimiter && sc.stopLevel == level:
			e.children++
			if err := w.entity(e, e.part.Path+"."+strconv.Itoa(e.children), e.part.Depth+1); err != nil {
				return err
			}
		case sc.stop == stopClose && sc.stopLevel == level:
			sc.pop()
			if err := w.v.leave(e, true); err != nil {
				return err
			}
			epi := sc.newSection(w.normalize, nil, nil)
			if err := w.v.epilogue(e, epi); err != nil {
				return err
			}
			if _, err := io.Copy(io.Discard, epi); err != nil {
				return fmt.Errorf("read part %s: %w", e.part.Path, err)
			}
			return nil
		default:
			// EOF or a boundary of an enclosing multipart: this one was
			// never closed. Treat what was read as its content.
			sc.pop()
			return w.v.leave(e, false)
		}
	}
}

// Walk reads the message once, streaming, and calls fn for every leaf part
// (multipart containers are not passed; message/rfc822 is a leaf, never
// descended) with the part body with Content-Transfer-Encoding removed
// (base64, quoted-printable; 7bit/8bit/binary/unknown → as is). fn need not
// read body fully; Walk drains it. Nothing is held whole in memory: bodies
// stream.
func Walk(r io.Reader, lim Limits, fn func(p *Part, body io.Reader) error) (Summary, error) {
	wv := &walkVisitor{fn: fn}
	w := newWalker(r, lim, wv, false)
	wv.w = w
	err := w.run()
	return wv.finish(), err
}

// finish completes the summary with what the walker learnt on the way.
func (v *walkVisitor) finish() Summary {
	w := v.w
	v.summary.Signed, v.summary.Encrypted = w.seal.signed, w.seal.encrypted
	v.summary.Report, v.summary.AutoSubmitted = w.seal.report, w.seal.autoSubmitted
	return v.summary
}

type walkVisitor struct {
	w       *walker
	fn      func(p *Part, body io.Reader) error
	summary Summary
	// elide, for WalkTee: whether an attachment's raw body stays out of
	// the copy.
	elide func(p *Part) bool
}

func (v *walkVisitor) enter(e *entity) error {
	if e.isRoot() {
		v.summary.Header = e.part.Header
		v.summary.MessageID = strings.TrimSpace(e.part.Header.Get("Message-Id"))
	}
	return nil
}

func (v *walkVisitor) leaf(e *entity, raw *section) error {
	v.summary.Parts++
	body := transferDecoder(transferEncoding(e.part.Header.Get("Content-Transfer-Encoding")), raw)
	if e.part.Attachment && isTNEF(&e.part) {
		t, br, ok := openTNEF(body)
		if ok {
			return v.tnefFiles(e, t)
		}
		body = br // not TNEF after all: an ordinary attachment
	}
	if e.part.Attachment {
		v.summary.Attachments++
	}
	if e.part.Attachment && strings.HasPrefix(e.part.MediaType, "message/") && !e.named {
		br := bufio.NewReaderSize(body, 16<<10)
		if subject := peekSubject(br); subject != "" {
			e.part.Filename = truncateName(subject, maxFilenameBytes-len(".eml")) + ".eml"
		}
		body = br
	}
	if e.verdict.body && e.part.MediaType == "text/html" {
		body = &cidScanner{r: body, c: &v.w.cls}
	}
	if !e.part.Attachment && strings.HasPrefix(e.part.MediaType, "text/") {
		body = &armourScanner{r: body, s: &v.w.seal}
	}
	part := e.part // fn gets its own copy
	t := v.w.sc.tee
	elided := t != nil && e.part.Attachment && v.elide != nil && v.elide(&part)
	if elided {
		if err := t.startElision(v.w.sc.pos()); err != nil {
			return fmt.Errorf("walk part %s: %w", e.part.Path, err)
		}
	}
	if err := v.fn(&part, body); err != nil {
		return fmt.Errorf("walk part %s: %w", e.part.Path, err)
	}
	// Drain through the decoders so the cid scanner sees the whole body.
	if _, err := io.Copy(io.Discard, body); err != nil {
		return fmt.Errorf("walk part %s: %w", e.part.Path, err)
	}
	if elided {
		if err := t.endElision(v.w.sc.pos() - int64(raw.tail)); err != nil {
			return fmt.Errorf("walk part %s: %w", e.part.Path, err)
		}
	}
	return nil
}

// tnefFiles hands each file inside a TNEF part to fn instead of the part
// itself: policies see the files, and they are linked under their names.
// A TNEF part without files (only a rich-text body) is left in the mail.
func (v *walkVisitor) tnefFiles(e *entity, t *tnefReader) error {
	for i := 1; ; i++ {
		f, err := t.next()
		if err != nil {
			return nil // io.EOF: no more files
		}
		v.summary.Parts++
		v.summary.Attachments++
		part := Part{
			Path: e.part.Path + ".t" + strconv.Itoa(i), Header: e.part.Header,
			MediaType: f.MediaType, Disposition: "attachment", Filename: f.Name,
			Attachment: true, Depth: e.part.Depth + 1, Container: e.part.Path, Provisional: true,
		}
		final := func(f *tnefFile) {
			part.Filename, part.MediaType, part.Provisional = f.Name, f.MediaType, false
			if part.Filename == "" {
				part.Filename = fallbackFilename(i, part.MediaType)
			}
		}
		if part.Filename == "" {
			part.Filename = fallbackFilename(i, part.MediaType)
		}
		f.data.onFinal = final
		if err := v.fn(&part, f.data); err != nil {
			return fmt.Errorf("walk part %s: %w", part.Path, err)
		}
		if _, err := io.Copy(io.Discard, f.data); err != nil {
			return fmt.Errorf("walk part %s: %w", part.Path, err)
		}
	}
}

func (v *walkVisitor) preamble(*entity, *section) error { return nil }
func (v *walkVisitor) leave(*entity, bool) error        { return nil }
func (v *walkVisitor) epilogue(*entity, *section) error { return nil }

// peekSubject reads the Subject of an attached message from the start of its
// body without consuming it.
func peekSubject(br *bufio.Reader) string {
	head, _ := br.Peek(br.Size())
	if end := bytes.Index(head, []byte("\n\r\n")); end >= 0 {
		head = head[:end+1]
	} else if end := bytes.Index(head, []byte("\n\n")); end >= 0 {
		head = head[:end+1]
	}
	for _, line := range unfoldHeader(head) {
		name, value, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(strings.TrimSpace(name), "subject") {
			subject := decodeParamText(strings.TrimSpace(value))
			return sanitizeFilename(pathSeparators.Replace(subject))
		}
	}
	return ""
}

// pathSeparators keeps "Re: a/b" whole when a subject becomes a file name.
var pathSeparators = strings.NewReplacer("/", "_", `\`, "_")

// unfoldHeader joins folded header lines.
func unfoldHeader(b []byte) []string {
	var fields []string
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimRight(line, "\r")
		if line == "" {
			continue
		}
		if (line[0] == ' ' || line[0] == '\t') && len(fields) > 0 {
			fields[len(fields)-1] += " " + strings.TrimSpace(line)
			continue
		}
		fields = append(fields, line)
	}
	return fields
}
