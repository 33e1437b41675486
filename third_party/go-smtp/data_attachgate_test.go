package smtp

// attachgate: the DATA reader of this copy is compared with go-smtp
// v0.26.0's byte-at-a-time reader (upstreamDataReader below, unchanged but
// for its name) on any input: same bytes, same error, same bytes left for
// the next command.

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

type upstreamDataReader struct {
	r     *bufio.Reader
	state int

	limited bool
	n       int64 // Maximum bytes remaining
}

func (r *upstreamDataReader) Read(b []byte) (n int, err error) {
	if r.limited {
		if r.n <= 0 {
			return 0, ErrDataTooLarge
		}
		if int64(len(b)) > r.n {
			b = b[0:r.n]
		}
	}

	for n < len(b) && r.state != stateEOF {
		var c byte
		c, err = r.r.ReadByte()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			break
		}
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
		case stateData:
			if c == '\r' {
				r.state = stateCR
			}
		}
		b[n] = c
		n++
	}
	if err == nil && r.state == stateEOF {
		err = io.EOF
	}

	if r.limited {
		r.n -= int64(n)
	}
	return
}

// readAll reads r with buffers of the given sizes in turn until an error,
// which it returns (io.EOF included).
func readAll(r io.Reader, sizes ...int) ([]byte, error) {
	var out []byte
	for i := 0; ; i++ {
		buf := make([]byte, sizes[i%len(sizes)])
		n, err := r.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			return out, err
		}
		if i > 1<<20 {
			return out, errors.New("reader makes no progress")
		}
	}
}

func rest(r *bufio.Reader) string {
	b, _ := io.ReadAll(r)
	return string(b)
}

func dataSeeds() []string {
	return []string{
		"",
		".\r\n",
		"Subject: a\r\n\r\nbody\r\n.\r\n",
		"..leading dot\r\n...two\r\n.\r\nNOOP\r\n",
		"bare\nLF\n.\n.\r\nafter",
		"bare\rCR\r.\r\r\n.\r\n",
		"\r.\r\nx\r\n.\r\n",
		".\rx\r\n.\r\n",
		"a\r\r\n.\r\nb\r\n.\r\n",
		"no terminator\r\n",
		"no final CRLF\r\n.",
		strings.Repeat("x", 3000) + "\r\nshort\r\n.\r\nRSET\r\n",
		"ok\r\n" + strings.Repeat("y", 100) + "\r\n.\r\n",
		".\r\n" + strings.Repeat("z", 5000),
		"line\r\n.. \r\n.\r\n",
		"\x00\xff\r\n\r\n..\r\n.\r\n",
	}
}

// FuzzDataReader is the proof that the line-scanning reader is a drop-in
// replacement: for every input, read-buffer size, bufio size, size limit
// and line limit it gives what v0.26.0's reader gives.
func FuzzDataReader(f *testing.F) {
	for _, s := range dataSeeds() {
		f.Add([]byte(s), uint16(0), uint16(0), uint16(0), uint16(0))
		f.Add([]byte(s), uint16(16), uint16(3), uint16(50), uint16(10))
		f.Add([]byte(s), uint16(4096), uint16(7), uint16(2000), uint16(0))
	}
	f.Fuzz(func(t *testing.T, in []byte, bufSize, readSize, lineLimit, maxBytes uint16) {
		bufSize = 16 + bufSize%8192 // bufio's minimum is 16
		rs := []int{1 + int(readSize)%5000, 1, 4096, 3}

		// 1. No line limit: the same bytes, error and leftover for any
		// buffering, with and without a size limit.
		ref := &upstreamDataReader{r: bufio.NewReaderSize(bytes.NewReader(in), 4096)}
		got := &dataReader{r: bufio.NewReaderSize(bytes.NewReader(in), int(bufSize)), lineLen: 1}
		if maxBytes > 0 {
			ref.limited, ref.n = true, int64(maxBytes)
			got.limited, got.n = true, int64(maxBytes)
		}
		refOut, refErr := readAll(ref, 4096)
		gotOut, gotErr := readAll(got, rs...)
		if !bytes.Equal(refOut, gotOut) || refErr != gotErr {
			t.Fatalf("input %q:\nupstream %q, %v\npatched  %q, %v", in, refOut, refErr, gotOut, gotErr)
		}
		if a, b := rest(ref.r), rest(got.r); a != b {
			t.Fatalf("input %q: left for the next command: upstream %q, patched %q", in, a, b)
		}
		if maxBytes > 0 {
			return
		}

		// 2. Line limit: upstream's limit is lineLimitReader under the
		// bufio.Reader (fed a byte at a time, so it fails exactly at the
		// byte that overflows); ours is in the reader. Same bytes, same
		// error.
		limit := 1 + int(lineLimit)%3000
		llr := &lineLimitReader{R: iotest.OneByteReader(bytes.NewReader(in)), LineLimit: limit, curLineLength: 1}
		ref = &upstreamDataReader{r: bufio.NewReaderSize(llr, 16)}
		got = &dataReader{r: bufio.NewReaderSize(bytes.NewReader(in), int(bufSize)), lineLimit: limit, lineLen: 1}
		refOut, refErr = readAll(ref, 4096)
		gotOut, gotErr = readAll(got, rs...)
		if !bytes.Equal(refOut, gotOut) || refErr != gotErr {
			t.Fatalf("input %q, line limit %d:\nupstream %q, %v\npatched  %q, %v", in, limit, refOut, refErr, gotOut, gotErr)
		}

		// 3. After ErrTooLongLine, lifting the limit reads on to the end
		// of DATA without losing a byte (what handleData does before its
		// one reply): the whole message is what the unlimited reader gives.
		if gotErr == ErrTooLongLine {
			got.lineLimit = 0
			more, err := readAll(got, rs...)
			full := &upstreamDataReader{r: bufio.NewReader(bytes.NewReader(in))}
			fullOut, fullErr := readAll(full, 4096)
			if !bytes.Equal(append(gotOut, more...), fullOut) || err != fullErr {
				t.Fatalf("input %q, line limit %d: drained %q, %v; want %q, %v", in, limit, append(gotOut, more...), err, fullOut, fullErr)
			}
			if a, b := rest(full.r), rest(got.r); a != b {
				t.Fatalf("input %q: left after drain %q, want %q", in, b, a)
			}
		}
	})
}

// BenchmarkDataReader reads a 1 MiB message of 76-column base64 lines (a
// typical attachment) through each reader.
func BenchmarkDataReader(b *testing.B) {
	var msg bytes.Buffer
	msg.WriteString("Subject: bench\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	line := strings.Repeat("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo", 3)[:76] + "\r\n"
	for msg.Len() < 1<<20 {
		msg.WriteString(line)
	}
	msg.WriteString(".\r\n")
	data := msg.Bytes()
	for _, bc := range []struct {
		name string
		new  func(*bufio.Reader) io.Reader
	}{
		{"upstream-v0.26.0", func(br *bufio.Reader) io.Reader { return &upstreamDataReader{r: br} }},
		{"line-scan", func(br *bufio.Reader) io.Reader { return &dataReader{r: br, lineLimit: 2000, lineLen: 1} }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			src := bytes.NewReader(data)
			br := bufio.NewReaderSize(src, 4096)
			buf := make([]byte, 64<<10)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				src.Reset(data)
				br.Reset(src)
				if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{bc.new(br)}, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
