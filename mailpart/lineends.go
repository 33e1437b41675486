package mailpart

import (
	"bytes"
	"fmt"
	"io"
)

// Line ends.
//
// attachgate, go-message and Go's mime/multipart end a line only at LF
// (with or without a CR before it). Some mail clients, MIME libraries and
// MTAs also take a bare CR (one not followed by LF) for a line end, so a
// message with bare CRs reads differently to them: a part boundary or a
// header field hidden behind a bare CR is invisible to the policies but
// visible to the recipient, and "<CR>.<CR>" ends DATA for a lax next hop.
//
// So a bare CR is never passed on and never made into a line end: every
// reader of the message (Walk, Rewrite, the pass-through copy) sees it as
// a space, which keeps the structure attachgate checked the one every
// recipient sees. Every LF goes out as CRLF.

// bareCRReader replaces each bare CR with a space.
type bareCRReader struct {
	r          io.Reader
	buf        []byte
	start, end int
	err        error
}

func newBareCRReader(r io.Reader) *bareCRReader {
	return &bareCRReader{r: r, buf: make([]byte, 32<<10)}
}

func (c *bareCRReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		avail := c.buf[c.start:c.end]
		// A CR at the end of what was read waits for the byte after it,
		// unless nothing comes after it.
		safe := len(avail)
		if c.err == nil && safe > 0 && avail[safe-1] == '\r' {
			safe--
		}
		if safe > 0 {
			n := copy(p, avail[:safe])
			for off := 0; ; {
				i := bytes.IndexByte(p[off:n], '\r')
				if i < 0 {
					break
				}
				i += off
				if i+1 >= len(avail) || avail[i+1] != '\n' {
					p[i] = ' '
				}
				off = i + 1
			}
			c.start += n
			return n, nil
		}
		if c.err != nil {
			return 0, c.err
		}
		c.end = copy(c.buf, avail)
		c.start = 0
		m, err := c.r.Read(c.buf[c.end:])
		c.end += m
		c.err = err
	}
}

// CopyPassThrough copies a message that is relayed without any change to
// its content: signed or encrypted mail, reports, mail with nothing to
// link. Only line ends change: every LF is sent as CRLF and a bare CR as a
// space (see above), so no next hop can be smuggled into and every reader
// sees the structure the gateway checked. It returns the bytes read.
func CopyPassThrough(w io.Writer, r io.Reader) (int64, error) {
	cr := newBareCRReader(r)
	buf := make([]byte, ioBufferSize)
	out := make([]byte, 0, 2*ioBufferSize)
	var total int64
	prevCR := false
	for {
		n, err := cr.Read(buf)
		total += int64(n)
		if n > 0 {
			out = out[:0]
			chunk := buf[:n]
			for len(chunk) > 0 {
				i := bytes.IndexByte(chunk, '\n')
				if i < 0 {
					out = append(out, chunk...)
					prevCR = chunk[len(chunk)-1] == '\r'
					break
				}
				out = append(out, chunk[:i]...)
				if !(i > 0 && chunk[i-1] == '\r') && !(i == 0 && prevCR) {
					out = append(out, '\r')
				}
				out = append(out, '\n')
				prevCR = false
				chunk = chunk[i+1:]
			}
			if _, werr := w.Write(out); werr != nil {
				return total, fmt.Errorf("pass through: write: %w", werr)
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, fmt.Errorf("pass through: read: %w", err)
		}
	}
}
