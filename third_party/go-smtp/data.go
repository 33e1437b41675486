package smtp

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
)

type EnhancedCode [3]int

// SMTPError specifies the error code, enhanced error code (if any) and
// message returned by the server.
type SMTPError struct {
	Code         int
	EnhancedCode EnhancedCode
	Message      string
}

// NoEnhancedCode is used to indicate that enhanced error code should not be
// included in response.
//
// Note that RFC 2034 requires an enhanced code to be included in all 2xx, 4xx
// and 5xx responses. This constant is exported for use by extensions, you
// should probably use EnhancedCodeNotSet instead.
var NoEnhancedCode = EnhancedCode{-1, -1, -1}

// EnhancedCodeNotSet is a nil value of EnhancedCode field in SMTPError, used
// to indicate that backend failed to provide enhanced status code. X.0.0 will
// be used (X is derived from error code).
var EnhancedCodeNotSet = EnhancedCode{0, 0, 0}

func (err *SMTPError) Error() string {
	s := fmt.Sprintf("SMTP error %03d", err.Code)
	if err.Message != "" {
		s += ": " + err.Message
	}
	return s
}

func (err *SMTPError) Temporary() bool {
	return err.Code/100 == 4
}

var ErrDataTooLarge = &SMTPError{
	Code:         552,
	EnhancedCode: EnhancedCode{5, 3, 4},
	Message:      "Maximum message size exceeded",
}

type dataReader struct {
	r     *bufio.Reader
	state int

	limited bool
	n       int64 // Maximum bytes remaining

	// lineLimit, when positive, bounds each line of DATA the way
	// lineLimitReader bounds command lines (the line with its CRLF). Unlike
	// lineLimitReader it loses no byte: after ErrTooLongLine the rest of
	// DATA can still be read up to its terminator once lineLimit is 0.
	lineLimit int
	lineLen   int // bytes of the current line, counted as lineLimitReader does
}

func newDataReader(c *Conn) *dataReader {
	dr := &dataReader{
		r:         c.text.R,
		lineLimit: c.server.MaxLineLength,
		lineLen:   1, // lineLimitReader counts the LF of the DATA line
	}

	if c.server.MaxMessageBytes > 0 {
		dr.limited = true
		dr.n = int64(c.server.MaxMessageBytes)
	}

	return dr
}

// States of the DATA state machine, as in net/textproto's dotReader but
// without rewriting CRLF to LF.
const (
	stateBeginLine = iota // beginning of line; initial state; must be zero
	stateDot              // read . at beginning of line
	stateDotCR            // read .\r at beginning of line
	stateCR               // read \r (possibly at end of line)
	stateData             // reading data in middle of line
	stateEOF              // reached .\r\n end marker line
)

// Read elides leading dots and stops at the end-of-data line
// (<CR><LF>.<CR><LF>). It gives the same bytes and errors as the byte-at-a-
// time reader of go-smtp v0.26.0, but works on bufio.Reader's buffer: runs
// of line content are found with bytes.IndexByte and copied at once, and
// only the bytes around line ends go through the state machine.
func (r *dataReader) Read(b []byte) (n int, err error) {
	if r.limited {
		if r.n <= 0 {
			return 0, ErrDataTooLarge
		}
		if int64(len(b)) > r.n {
			b = b[0:r.n]
		}
	}

	for n < len(b) && r.state != stateEOF {
		if r.r.Buffered() == 0 {
			if _, err = r.r.Peek(1); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				break
			}
		}
		buf, _ := r.r.Peek(r.r.Buffered())
		var used int
		used, n, err = r.scan(buf, b, n)
		r.r.Discard(used)
		if err != nil {
			break
		}
	}
	if err == nil && r.state == stateEOF {
		err = io.EOF
	}

	if r.limited {
		r.n -= int64(n)
	}
	return
}

// scan runs buffered input buf through the state machine into b[n:] and
// returns how much of buf it used and the new n. It stops when b is full,
// at the end of data, or before the byte that makes a line too long.
func (r *dataReader) scan(buf, b []byte, n int) (used, written int, err error) {
	for used < len(buf) && n < len(b) && r.state != stateEOF {
		if r.state == stateData {
			// Middle of a line: everything up to and including the next
			// CR is content.
			run := buf[used:]
			if len(run) > len(b)-n {
				run = run[:len(b)-n]
			}
			cr := false
			if i := bytes.IndexByte(run, '\r'); i >= 0 {
				run, cr = run[:i+1], true
			}
			k, tooLong := r.countLine(run)
			n += copy(b[n:], run[:k])
			used += k
			if tooLong {
				return used, n, ErrTooLongLine
			}
			if cr {
				r.state = stateCR
			}
			continue
		}

		c := buf[used]
		if r.lineLimit > 0 {
			l := r.lineLen + 1
			if c == '\n' {
				l = 1
			}
			if l > r.lineLimit {
				r.lineLen = l
				return used, n, ErrTooLongLine
			}
			r.lineLen = l
		}
		used++
		switch r.state {
		case stateBeginLine:
			if c == '.' {
				r.state = stateDot
				continue
			}
			if c == '\r' {
				r.state = stateCR
				break
			}
			r.state = stateData
		case stateDot:
			if c == '\r' {
				r.state = stateDotCR
				continue
			}
			r.state = stateData
		case stateDotCR:
			if c == '\n' {
				r.state = stateEOF
				continue
			}
			r.state = stateData
		case stateCR:
			if c == '\n' {
				r.state = stateBeginLine
				break
			}
			r.state = stateData
		}
		b[n] = c
		n++
	}
	return used, n, nil
}

// countLine counts p into the current line the way lineLimitReader does
// (an LF starts the next line, and counts in it) and returns how many bytes
// of p fit; tooLong reports that the next byte would exceed lineLimit.
func (r *dataReader) countLine(p []byte) (fit int, tooLong bool) {
	if r.lineLimit <= 0 {
		return len(p), false
	}
	for {
		seg := p[fit:]
		i := bytes.IndexByte(seg, '\n')
		if i >= 0 {
			seg = seg[:i]
		}
		if room := r.lineLimit - r.lineLen; len(seg) > room {
			if room > 0 {
				fit += room
				r.lineLen += room
			}
			return fit, true
		}
		r.lineLen += len(seg)
		fit += len(seg)
		if i < 0 {
			return fit, false
		}
		r.lineLen = 1
		fit++
	}
}
