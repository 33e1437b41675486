package mailpart

import (
	"bufio"
	"encoding/base64"
	"errors"
	"io"
	"strings"
)

// transferEncoding returns the normalised Content-Transfer-Encoding token:
// "quoted-printable;" and "Base64 (comment)" occur in the wild.
func transferEncoding(field string) string {
	v, _, _ := strings.Cut(field, ";")
	return strings.ToLower(strings.TrimSpace(stripComment(v)))
}

// transferDecoder removes a Content-Transfer-Encoding. Both decoders are
// lenient like mail clients: garbage is skipped or kept literally instead of
// failing the whole message. 7bit, 8bit, binary and unknown encodings pass
// through as they are.
func transferDecoder(enc string, r io.Reader) io.Reader {
	switch enc {
	case "base64":
		return newBase64Decoder(r)
	case "quoted-printable":
		return newQPDecoder(r)
	}
	return r
}

const (
	b64Invalid = 0xff
	b64Pad     = 0xfe
)

var b64Table = func() (t [256]byte) {
	for i := range t {
		t[i] = b64Invalid
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = byte(i)
	}
	t['='] = b64Pad
	return t
}()

// base64Decoder decodes base64 skipping every byte outside the alphabet
// (line breaks, stray spaces, garbage). Padding ends the data, as it does
// in mail clients: whatever follows it (a signature line, junk appended in
// transit) is not part of the file.
type base64Decoder struct {
	r      io.Reader
	padded bool // padding seen: the rest of the input is ignored
	in     []byte
	chars  []byte // alphabet characters not decoded yet (fewer than 4 between reads)
	outBuf []byte // backing array of out, reused
	out    []byte
	err    error
}

func newBase64Decoder(r io.Reader) *base64Decoder {
	const chunk = 32 << 10
	return &base64Decoder{
		r:      r,
		in:     make([]byte, chunk),
		chars:  make([]byte, 0, chunk+4),
		outBuf: make([]byte, 0, chunk/4*3+3),
	}
}

func (d *base64Decoder) Read(p []byte) (int, error) {
	for len(d.out) == 0 {
		if d.err != nil {
			return 0, d.err
		}
		n, err := d.r.Read(d.in)
		d.out = d.outBuf[:0]
		d.decode(d.in[:n])
		if err != nil {
			d.flush()
			d.err = err
		}
		d.outBuf = d.out[:0]
	}
	n := copy(p, d.out)
	d.out = d.out[n:]
	return n, nil
}

// decode collects alphabet characters and decodes the whole quanta in bulk.
func (d *base64Decoder) decode(in []byte) {
	for i := 0; i < len(in) && !d.padded; {
		// Append runs of alphabet characters (a whole line, usually) at
		// once rather than byte by byte.
		j := i
		for j < len(in) && b64Table[in[j]] < 64 {
			j++
		}
		d.chars = append(d.chars, in[i:j]...)
		if j == len(in) {
			break
		}
		if b64Table[in[j]] == b64Pad {
			d.flush()
			d.padded = true
		}
		i = j + 1
	}
	whole := len(d.chars) / 4 * 4
	d.emit(d.chars[:whole])
	d.chars = append(d.chars[:0], d.chars[whole:]...)
}

// flush decodes everything pending, including an unfinished quantum's
// whole bytes (2 or 3 characters); a lone character carries none.
func (d *base64Decoder) flush() {
	n := len(d.chars)
	if n%4 == 1 {
		n--
	}
	d.emit(d.chars[:n])
	d.chars = d.chars[:0]
}

func (d *base64Decoder) emit(chars []byte) {
	if len(chars) == 0 {
		return
	}
	need := base64.RawStdEncoding.DecodedLen(len(chars))
	if cap(d.out)-len(d.out) < need {
		d.out = append(make([]byte, 0, 2*cap(d.out)+need), d.out...)
	}
	// Only alphabet characters reach here and there is no padding: the
	// non-strict decoder cannot fail.
	n, _ := base64.RawStdEncoding.Decode(d.out[len(d.out):cap(d.out)], chars)
	d.out = d.out[:len(d.out)+n]
}

// qpDecoder decodes quoted-printable leniently: "=" not followed by two hex
// digits or a line break stays literal (mime/quotedprintable fails on it),
// trailing whitespace added in transport is dropped, line breaks become CRLF.
type qpDecoder struct {
	br     *bufio.Reader
	carry  []byte // an incomplete "=X" escape cut by the buffer size
	outBuf []byte // backing array of out, reused
	out    []byte
	err    error
}

func newQPDecoder(r io.Reader) *qpDecoder {
	return &qpDecoder{br: bufio.NewReaderSize(r, 32<<10)}
}

func (d *qpDecoder) Read(p []byte) (int, error) {
	for len(d.out) == 0 {
		if d.err != nil {
			return 0, d.err
		}
		d.fill()
	}
	n := copy(p, d.out)
	d.out = d.out[n:]
	return n, nil
}

func (d *qpDecoder) fill() {
	line, err := d.br.ReadSlice('\n')
	buf := line
	if len(d.carry) > 0 {
		buf = append(d.carry, line...)
		d.carry = nil
	}
	out := d.outBuf[:0]
	switch {
	case err == nil:
		content, _ := cutLineEnding(buf)
		content = trimRightSpace(content)
		if n := len(content); n > 0 && content[n-1] == '=' {
			out = appendQP(out, content[:n-1]) // soft line break
		} else {
			out = appendQP(out, content)
			out = append(out, '\r', '\n')
		}
	case errors.Is(err, bufio.ErrBufferFull):
		// Keep a possibly split "=X" for the next round.
		cut := len(buf)
		for i := max(0, len(buf)-2); i < len(buf); i++ {
			if buf[i] == '=' {
				cut = i
				break
			}
		}
		d.carry = append([]byte(nil), buf[cut:]...)
		out = appendQP(out, buf[:cut])
	default:
		content := trimRightSpace(buf)
		if n := len(content); n > 0 && content[n-1] == '=' {
			content = content[:n-1]
		}
		out = appendQP(out, content)
		d.err = err
	}
	d.out, d.outBuf = out, out[:0]
}

func appendQP(out, in []byte) []byte {
	for i := 0; i < len(in); i++ {
		c := in[i]
		if c == '=' && i+2 < len(in) && isHex(in[i+1]) && isHex(in[i+2]) {
			out = append(out, unhex(in[i+1])<<4|unhex(in[i+2]))
			i += 2
			continue
		}
		out = append(out, c)
	}
	return out
}

// cutLineEnding splits a line read up to '\n' into content and ending.
func cutLineEnding(line []byte) (content []byte, ending []byte) {
	n := len(line)
	switch {
	case n >= 2 && line[n-2] == '\r' && line[n-1] == '\n':
		return line[:n-2], crlf
	case n >= 1 && line[n-1] == '\n':
		return line[:n-1], lf
	}
	return line, nil
}

var (
	crlf = []byte("\r\n")
	lf   = []byte("\n")
)

func trimRightSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}
