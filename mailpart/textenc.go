package mailpart

import (
	"bytes"
	"io"
)

// Encoding rewritten text for the wire.
//
// A rewritten body (the notice added) is UTF-8 text with "\n" or "\r\n"
// line ends. It goes out as 8bit only when the next hop offers 8BITMIME and
// the whole text is known to be safe as 8bit: at most eightBitWindow bytes,
// every line within RFC 5321's 998 bytes, no bare CR, no NUL, and no line
// that a MIME parser could take for a boundary of the message. Anything else
// goes out quoted-printable, which keeps the text exactly (soft line breaks
// instead of cutting long lines, "=0D" for a bare CR, "=2D" for the first
// dash of a line that starts with "--").

// eightBitWindow bounds what is held to decide for 8bit: the window is
// memory per rewritten body, and longer bodies go out quoted-printable.
const eightBitWindow = 256 << 10

// maxLine is RFC 5321's limit on a line, CRLF excluded.
const maxLine = 998

// bodyEncoder encodes one rewritten text body. It holds the text until the
// transfer encoding is decided, then has the part header written (head,
// given the encoding's name) before the first body byte.
type bodyEncoder struct {
	out        io.Writer
	head       func(cte string) error
	allow8bit  bool
	boundaries func() [][]byte // "--"+boundary of every multipart open in the output

	held []byte
	enc  io.WriteCloser // set once decided
}

func (b *bodyEncoder) Write(p []byte) (int, error) {
	if b.enc == nil {
		if b.allow8bit && len(b.held)+len(p) <= eightBitWindow {
			b.held = append(b.held, p...)
			return len(p), nil
		}
		if err := b.decide("quoted-printable"); err != nil {
			return 0, err
		}
	}
	return b.enc.Write(p)
}

// Close decides if nothing decided yet, and ends the text.
func (b *bodyEncoder) Close() error {
	if b.enc == nil {
		cte := "quoted-printable"
		if b.allow8bit && safeAs8bit(b.held, b.boundaries()) {
			cte = "8bit"
		}
		if err := b.decide(cte); err != nil {
			return err
		}
	}
	return b.enc.Close()
}

func (b *bodyEncoder) decide(cte string) error {
	if err := b.head(cte); err != nil {
		return err
	}
	if cte == "8bit" {
		b.enc = &eightBitWriter{w: b.out}
	} else {
		b.enc = &qpEncoder{w: b.out}
	}
	held := b.held
	b.held = nil
	if len(held) == 0 {
		return nil
	}
	_, err := b.enc.Write(held)
	return err
}

// safeAs8bit reports whether text can go out as 8bit unchanged but for
// its line ends.
func safeAs8bit(text []byte, boundaries [][]byte) bool {
	for len(text) > 0 {
		line := text
		if i := bytes.IndexByte(text, '\n'); i >= 0 {
			line, text = bytes.TrimSuffix(text[:i], []byte("\r")), text[i+1:]
		} else {
			text = nil
		}
		if len(line) > maxLine || bytes.IndexByte(line, '\r') >= 0 || bytes.IndexByte(line, 0) >= 0 {
			return false
		}
		if looksLikeBoundary(line, boundaries) {
			return false
		}
	}
	return true
}

// looksLikeBoundary reports whether a line starts with "--" and one of the
// boundaries: some parser could end a part there.
func looksLikeBoundary(line []byte, boundaries [][]byte) bool {
	if len(line) < 2 || line[0] != '-' || line[1] != '-' {
		return false
	}
	for _, b := range boundaries {
		if bytes.HasPrefix(line, b) {
			return true
		}
	}
	return false
}

// eightBitWriter writes text that safeAs8bit accepted: every LF becomes
// CRLF.
type eightBitWriter struct {
	w   io.Writer
	cr  bool // the last byte was a CR
	buf []byte
}

func (e *eightBitWriter) Write(p []byte) (int, error) {
	e.buf = e.buf[:0]
	for _, c := range p {
		if c == '\n' && !e.cr {
			e.buf = append(e.buf, '\r')
		}
		e.buf = append(e.buf, c)
		e.cr = c == '\r'
	}
	if _, err := e.w.Write(e.buf); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (e *eightBitWriter) Close() error { return nil }

// qpEncoder writes quoted-printable (RFC 2045 6.7) with CRLF line ends.
// Unlike mime/quotedprintable it keeps a bare CR as "=0D" instead of making
// it a line end, and escapes the first dash of every output line that
// starts with "--" ("=2D-"), so no line of a rewritten body can be read as
// a MIME boundary.
type qpEncoder struct {
	w       io.Writer
	pending []byte // input bytes not encoded yet: a decision needs what follows
	out     []byte
	col     int // bytes on the current output line
}

// qpLookahead is how many bytes after the current one a decision needs
// (white space before "\r\n").
const qpLookahead = 2

const qpMaxLine = 76

func (q *qpEncoder) Write(p []byte) (int, error) {
	q.pending = append(q.pending, p...)
	if err := q.encode(false); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (q *qpEncoder) Close() error {
	if err := q.encode(true); err != nil {
		return err
	}
	return nil
}

func (q *qpEncoder) encode(final bool) error {
	in := q.pending
	q.out = q.out[:0]
	i := 0
	for i < len(in) {
		if !final && i+qpLookahead >= len(in) {
			break
		}
		c := in[i]
		switch {
		case c == '\n':
			q.out = append(q.out, '\r', '\n')
			q.col = 0
			i++
			continue
		case c == '\r' && i+1 < len(in) && in[i+1] == '\n':
			q.out = append(q.out, '\r', '\n')
			q.col = 0
			i += 2
			continue
		}
		literal := c >= 33 && c <= 126 && c != '='
		if c == ' ' || c == '\t' {
			// Literal unless it ends a line: transport may strip trailing
			// white space.
			next := i + 1
			endsLine := next >= len(in) || in[next] == '\n' || (in[next] == '\r' && next+1 < len(in) && in[next+1] == '\n')
			literal = !endsLine
		}
		n := 1
		if !literal {
			n = 3
		}
		if q.col+n > qpMaxLine-1 {
			q.out = append(q.out, '=', '\r', '\n')
			q.col = 0
		}
		if q.col == 0 && c == '-' && i+1 < len(in) && in[i+1] == '-' {
			literal, n = false, 3 // no output line starts with "--"
		}
		if literal {
			q.out = append(q.out, c)
		} else {
			q.out = append(q.out, '=', upperhex[c>>4], upperhex[c&0x0f])
		}
		q.col += n
		i++
	}
	q.pending = append(q.pending[:0], in[i:]...)
	if len(q.out) == 0 {
		return nil
	}
	_, err := q.w.Write(q.out)
	return err
}

const upperhex = "0123456789ABCDEF"
