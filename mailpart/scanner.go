package mailpart

import (
	"bufio"
	"bytes"
	"errors"
	"io"

	"github.com/emersion/go-message/textproto"
)

// stopKind says why a section (header, body, preamble, epilogue) ended.
type stopKind int

const (
	stopBlank     stopKind = iota // header only: the blank line after it
	stopDelimiter                 // "--boundary" of an open multipart
	stopClose                     // "--boundary--" of an open multipart
	stopEOF                       // end of input
)

// scanner reads a message line by line through one buffer and recognises
// the boundary lines of every open multipart at once. Checking all open
// boundaries, not only the innermost, lets a missing close delimiter end
// the inner multipart where the outer one continues, as mail clients do;
// a single buffer keeps memory flat however deep the nesting.
type scanner struct {
	br     *bufio.Reader
	tee    *tee     // WalkTee: copies what is read, less elided bodies
	bounds [][]byte // "--" + boundary of each open multipart, outermost first

	// Where the last section ended.
	stop      stopKind
	stopLevel int // index into bounds for stopDelimiter and stopClose
}

// newScanner reads r with every bare CR taken as a space (lineends.go).
func newScanner(r io.Reader) *scanner {
	return &scanner{br: bufio.NewReaderSize(newBareCRReader(r), ioBufferSize)}
}

func (s *scanner) push(boundary string) { s.bounds = append(s.bounds, []byte("--"+boundary)) }
func (s *scanner) pop()                 { s.bounds = s.bounds[:len(s.bounds)-1] }

// matchDelimiter reports whether line (with its ending) is a delimiter or
// close delimiter of an open multipart, innermost first. Trailing white
// space is allowed after the boundary (RFC 2046 5.1.1). A close delimiter
// followed by other text ("--b-->") closes the multipart too, as it does in
// mail clients and the common MIME libraries; Rewrite writes it back clean
// and keeps the epilogue after it. Exact matches win over such a close, so
// an outer boundary "b--x" is not taken for the close of an inner "b".
func (s *scanner) matchDelimiter(line []byte) (stopKind, int, bool) {
	if len(line) < 3 || line[0] != '-' || line[1] != '-' || len(line) > 1024 {
		return 0, 0, false
	}
	line, _ = cutLineEnding(line)
	line = trimRightSpace(bytes.TrimRight(line, "\r"))
	for i := len(s.bounds) - 1; i >= 0; i-- {
		b := s.bounds[i]
		if !bytes.HasPrefix(line, b) {
			continue
		}
		switch rest := line[len(b):]; {
		case len(rest) == 0:
			return stopDelimiter, i, true
		case len(rest) == 2 && rest[0] == '-' && rest[1] == '-':
			return stopClose, i, true
		}
	}
	for i := len(s.bounds) - 1; i >= 0; i-- {
		if rest, ok := bytes.CutPrefix(line, s.bounds[i]); ok && bytes.HasPrefix(rest, []byte("--")) {
			return stopClose, i, true
		}
	}
	return 0, 0, false
}

// headerBlock is a header as read: the raw field lines and the parsed form.
type headerBlock struct {
	raw    []byte // field lines, CRLF line endings, without the blank line
	header textproto.Header

	// firstBody is a line that ended the header because it cannot be a
	// field (a missing blank line); it is the first line of the body.
	firstBody       []byte
	firstBodyEnding []byte

	// noBody is set when the header ran into a delimiter or EOF.
	noBody bool
}

var errHeaderTooBig = errors.New("header too big")

// readHeader reads one header block. mbox says whether a leading mbox
// "From " line may be skipped (top level only).
//
// Lines that are not fields are handled as mail clients do: a stray line
// followed by more fields is skipped (kept out of both the parsed and the
// raw header, so output stays parseable) and the fields after it still
// count, so attachments cannot hide behind it; any other non-field line
// means the blank line is missing and starts the body.
func (s *scanner) readHeader(maxBytes int, mbox bool) (headerBlock, error) {
	var hb headerBlock
	read := 0        // bytes consumed, for the size limit
	inField := false // the last line kept was a field or its fold
	for {
		line, err := s.readLine(maxBytes - read)
		if err != nil && !errors.Is(err, io.EOF) {
			return hb, err
		}
		read += len(line)
		if len(line) == 0 { // EOF
			hb.noBody = true
			s.stop = stopEOF
			break
		}
		if kind, level, ok := s.matchDelimiter(line); ok {
			hb.noBody = true
			s.stop, s.stopLevel = kind, level
			break
		}
		content, ending := cutLineEnding(line)
		if len(bytes.TrimRight(content, "\r")) == 0 && ending != nil {
			s.stop = stopBlank
			break
		}
		atStart := read == len(line)
		isFold := content[0] == ' ' || content[0] == '\t'
		keep := false
		switch {
		case isFold && !atStart:
			keep = inField // the fold of a skipped line is skipped too
		case !isFold && validFieldLine(content):
			keep, inField = true, true
		case atStart && mbox && bytes.HasPrefix(content, []byte("From ")):
			read = 0 // mbox postmark, not part of the message; the header starts after it
			continue
		case ending != nil && s.nextLineContinuesHeader(!atStart):
			inField = false // stray line
		default:
			hb.firstBody = content
			hb.firstBodyEnding = ending
			if ending == nil {
				s.stop = stopEOF
			}
		}
		if hb.firstBody != nil {
			break
		}
		if keep {
			hb.raw = append(append(hb.raw, content...), '\r', '\n')
		}
		if ending == nil {
			hb.noBody = true
			s.stop = stopEOF
			break
		}
	}
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(append(hb.raw[:len(hb.raw):len(hb.raw)], '\r', '\n'))))
	if err != nil {
		// Cannot happen for lines validFieldLine accepted; keep what parsed.
		h = textproto.Header{}
	}
	hb.header = h
	return hb, nil
}

// nextLineContinuesHeader peeks at the next line: a field (or, if
// foldOK, a folded line) means the header goes on.
func (s *scanner) nextLineContinuesHeader(foldOK bool) bool {
	next := s.peekLine()
	if len(next) == 0 {
		return false
	}
	if next[0] == ' ' || next[0] == '\t' {
		return foldOK && len(bytes.TrimSpace(next)) > 0
	}
	content, _ := cutLineEnding(next)
	return validFieldLine(content)
}

// peekLine returns the next line without consuming it (cut at the buffer
// size).
func (s *scanner) peekLine() []byte {
	for n := 256; ; n *= 2 {
		n = min(n, s.br.Size())
		b, err := s.br.Peek(n)
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			return b[:i+1]
		}
		if err != nil || n == s.br.Size() {
			return b
		}
	}
}

// validFieldLine reports whether a line is "name: value" with a name that
// textproto accepts (printable ASCII without ':'; spaces before ':' allowed).
func validFieldLine(line []byte) bool {
	colon := bytes.IndexByte(line, ':')
	if colon < 0 {
		return false
	}
	name := bytes.TrimRight(line[:colon], " \t")
	if len(name) == 0 {
		return false
	}
	for _, c := range name {
		if c < 33 || c > 126 {
			return false
		}
	}
	return true
}

// readLine reads a whole line including its ending, at most max bytes, as a
// copy. At EOF it returns what is left and io.EOF (empty at the very end).
func (s *scanner) readLine(max int) ([]byte, error) {
	var line []byte
	for {
		frag, err := s.br.ReadSlice('\n')
		if len(line)+len(frag) > max {
			return nil, errHeaderTooBig
		}
		line = append(line, frag...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return line, err
	}
}

// section streams the raw bytes of one body, preamble or epilogue up to the
// next boundary line of any open multipart, or EOF. The line ending before
// a boundary line belongs to the boundary (RFC 2046 5.1.1), so the ending of
// each line is held back until the next line is known not to be a boundary.
type section struct {
	s         *scanner
	normalize bool // emit CRLF for every line ending (Rewrite output)

	pre    []byte // line ending to return before out
	out    []byte // content ready to return; may point into the read buffer
	held   []byte // ending of the last line, not yet known to be content
	inLine bool   // inside a line longer than the buffer: cannot be a boundary
	done   bool
	err    error

	// droppedEnding is set when the section ended at a boundary line that
	// took the last line ending with it: a rewriter writes one back before
	// the next delimiter it emits.
	droppedEnding bool
	// tail is how many of the bytes read last are not content: the line
	// ending before the boundary line and the boundary line (WalkTee cuts
	// a body without them).
	tail int
}

// newSection starts a section; firstLine and firstEnding are a line the
// header reader already consumed (nil when there is none).
func (s *scanner) newSection(normalize bool, firstLine, firstEnding []byte) *section {
	sec := &section{s: s, normalize: normalize}
	if firstLine == nil {
		return sec
	}
	// The header reader checked the line against the boundaries open then;
	// a multipart's own boundary, pushed since, may match it now.
	if kind, level, ok := s.matchDelimiter(firstLine); ok {
		sec.finish(kind, level, 0)
		return sec
	}
	sec.out, sec.held = firstLine, sec.ending(firstEnding)
	return sec
}

// emptySection is the body of an entity whose header ran into a boundary
// or EOF: the scanner stop stays as the header reader left it.
func emptySection() *section { return &section{done: true, err: io.EOF} }

// Read fills p with as many lines as fit, so decoders see large chunks.
func (sec *section) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		switch {
		case len(sec.pre) > 0:
			c := copy(p[n:], sec.pre)
			sec.pre = sec.pre[c:]
			n += c
		case len(sec.out) > 0:
			c := copy(p[n:], sec.out)
			sec.out = sec.out[c:]
			n += c
		case sec.done:
			if n > 0 {
				return n, nil
			}
			return 0, sec.err
		default:
			sec.advance()
		}
	}
	return n, nil
}

// WriteTo lets io.Copy skip an intermediate buffer.
func (sec *section) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		if len(sec.pre) > 0 {
			n, err := w.Write(sec.pre)
			total += int64(n)
			sec.pre = nil
			if err != nil {
				return total, err
			}
		}
		if len(sec.out) > 0 {
			n, err := w.Write(sec.out)
			total += int64(n)
			sec.out = nil
			if err != nil {
				return total, err
			}
		}
		if sec.done {
			if errors.Is(sec.err, io.EOF) {
				return total, nil
			}
			return total, sec.err
		}
		sec.advance()
	}
}

func (sec *section) ending(e []byte) []byte {
	if sec.normalize && e != nil {
		return crlf
	}
	return e
}

// advance reads the next line fragment and either queues it as content or
// ends the section at a boundary line or EOF.
func (sec *section) advance() {
	s := sec.s
	frag, err := s.br.ReadSlice('\n')
	switch {
	case err == nil:
		if !sec.inLine {
			if kind, level, ok := s.matchDelimiter(frag); ok {
				sec.finish(kind, level, len(frag))
				return
			}
		}
		content, ending := cutLineEnding(frag)
		sec.pre, sec.out, sec.held = sec.held, content, sec.ending(ending)
		sec.inLine = false
	case errors.Is(err, bufio.ErrBufferFull):
		sec.pre, sec.out, sec.held = sec.held, frag, nil
		sec.inLine = true
	case errors.Is(err, io.EOF):
		if len(frag) > 0 && !sec.inLine {
			if kind, level, ok := s.matchDelimiter(frag); ok {
				sec.finish(kind, level, len(frag))
				return
			}
		}
		// No boundary follows: the held ending is content after all.
		sec.pre, sec.out, sec.held = sec.held, frag, nil
		sec.done, sec.err = true, io.EOF
		s.stop = stopEOF
	default:
		sec.pre, sec.held = sec.held, nil
		sec.done, sec.err = true, err
	}
}

func (sec *section) finish(kind stopKind, level, delimiter int) {
	sec.droppedEnding = sec.held != nil
	sec.tail = len(sec.held) + delimiter
	sec.held = nil
	sec.done, sec.err = true, io.EOF
	sec.s.stop, sec.s.stopLevel = kind, level
}
