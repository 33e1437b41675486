package mailpart

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
)

// Line length of rewritten mail.
//
// smtp.max_line_length lets lines of up to 4000 bytes in, but a message
// attachgate rewrites is its own output, and RFC 5322 (2.1.1) and RFC 5321
// (4.5.3.1.6) allow at most 998 bytes per line: strict next hops refuse
// longer lines, others cut them. So Rewrite
//
//   - folds every header line over 998 bytes at white space (RFC 5322
//     2.2.3: a CRLF is put before a space or tab; unfolding gives the
//     field back unchanged). A line with no white space to fold at (one
//     1,000-byte token) cannot be shortened without changing the field,
//     and is refused: ErrTooComplex, which smtpd answers with 554 5.6.0.
//   - re-encodes a kept part in 7bit, 8bit or binary (or without
//     Content-Transfer-Encoding) quoted-printable when a line of it is
//     over 998 bytes, or when it is too big to look at whole (more than
//     keepPeek bytes); the recipient decodes the same content.
//
// Signed or encrypted units (sealed) are copied byte for byte, long lines
// included: any change breaks their signature. message/* and multipart/*
// leaves may not be quoted-printable (RFC 2046 5.2.1) and keep their lines.
// Base64 and quoted-printable parts are kept as they are.

// keepPeek is how much of a kept part is looked at for long lines before
// its header is written; a bigger part in an identity encoding goes out
// quoted-printable.
const keepPeek = 64 << 10

// errUnfoldable: a header line over 998 bytes without white space.
var errUnfoldable = fmt.Errorf("%w: header line over %d bytes with no white space to fold at", ErrTooComplex, maxLine)

// foldHeader returns raw header lines (CRLF ended) with every line over
// maxLine bytes folded at white space.
func foldHeader(raw []byte) ([]byte, error) {
	if !hasLongLine(raw) {
		return raw, nil
	}
	var out []byte
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i+1], raw[i+1:]
		} else {
			raw = nil
		}
		content := bytes.TrimRight(line, "\r\n")
		ending := line[len(content):]
		for len(content) > maxLine {
			i := foldPoint(content)
			if i < 0 {
				name, _, _ := bytes.Cut(content, []byte(":"))
				return nil, fmt.Errorf("%w (field %.40q, %d bytes)", errUnfoldable, name, len(content))
			}
			out = append(append(out, content[:i]...), '\r', '\n')
			content = content[i:]
		}
		out = append(append(out, content...), ending...)
	}
	return out, nil
}

// foldPoint returns the index of the last space or tab of line at which it
// can be folded: within maxLine bytes, with something other than white
// space both before and after it (RFC 5322 forbids lines of white space
// only). -1 when there is none.
func foldPoint(line []byte) int {
	// What follows the fold point must hold a non-white-space byte.
	lastText := len(line) - 1
	for lastText >= 0 && isWSP(line[lastText]) {
		lastText--
	}
	for i := min(maxLine, len(line)-1); i > 0; i-- {
		if !isWSP(line[i]) || i > lastText {
			continue
		}
		if len(bytes.TrimLeft(line[:i], " \t")) > 0 {
			return i
		}
		return -1
	}
	return -1
}

func isWSP(c byte) bool { return c == ' ' || c == '\t' }

// hasLongLine reports whether some line of b is over maxLine bytes (line
// ending excluded).
func hasLongLine(b []byte) bool {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		line := b
		if i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if len(bytes.TrimSuffix(line, []byte("\r"))) > maxLine {
			return true
		}
	}
	return false
}

// mayReencode reports whether a kept leaf is one whose long lines Rewrite
// re-encodes: not sealed, in an identity transfer encoding, and of a type
// that may be quoted-printable.
func mayReencode(e *entity) bool {
	if e.sealed || strings.HasPrefix(e.part.MediaType, "message/") || strings.HasPrefix(e.part.MediaType, "multipart/") {
		return false
	}
	switch transferEncoding(e.part.Header.Get("Content-Transfer-Encoding")) {
	case "", "7bit", "8bit", "binary":
		return true
	}
	return false
}

// keepChecked copies a kept leaf as it is when all of it was seen and no
// line is over maxLine bytes, and re-encodes it quoted-printable otherwise.
func (rw *rewriter) keepChecked(e *entity, body *section) error {
	raw := bufio.NewReaderSize(body, keepPeek)
	head, err := raw.Peek(keepPeek)
	if err == io.EOF && !hasLongLine(head) {
		if err := rw.writeRawHeader(e); err != nil {
			return err
		}
		if _, err := io.Copy(rw.out, raw); err != nil {
			return fmt.Errorf("rewrite: %w", err)
		}
		rw.endingOwed = body.droppedEnding
		return nil
	}
	if err := rw.writeHeader(e.part.Header, map[string]string{"Content-Transfer-Encoding": "quoted-printable"}, false); err != nil {
		return err
	}
	enc := &qpEncoder{w: rw.out}
	if _, err := io.Copy(enc, raw); err != nil {
		return fmt.Errorf("rewrite part %s: %w", e.part.Path, err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("rewrite part %s: %w", e.part.Path, err)
	}
	rw.endingOwed = body.droppedEnding
	return nil
}
