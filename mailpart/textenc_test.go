package mailpart

import (
	"bytes"
	"io"
	"mime/quotedprintable"
	"strings"
	"testing"
)

func TestQPEncoder(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"plain", "hello\n", "hello\r\n"},
		{"crlf kept", "a\r\nb", "a\r\nb"},
		{"bare CR kept as a byte", "a\rb\n", "a=0Db\r\n"},
		{"equals and 8-bit", "1=2 é\n", "1=3D2 =C3=A9\r\n"},
		{"trailing space", "a \nb\t\r\nc ", "a=20\r\nb=09\r\nc=20"},
		{"boundary-like line", "--b\n--b--\nx--y\n", "=2D-b\r\n=2D-b--\r\nx--y\r\n"},
		{"signature separator", "-- \n", "=2D-=20\r\n"},
		{"single dash", "- item\n", "- item\r\n"},
		{"soft break", strings.Repeat("x", 80), strings.Repeat("x", 75) + "=\r\n" + strings.Repeat("x", 5)},
		{"no dash-dash after a soft break", strings.Repeat("x", 75) + "--b", strings.Repeat("x", 75) + "=\r\n=2D-b"},
		{"escape not split", strings.Repeat("x", 74) + "é", strings.Repeat("x", 74) + "=\r\n=C3=A9"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, chunk := range []int{1, 2, 3, 1 << 20} {
				got := encodeQPChunks(t, tc.in, chunk)
				if got != tc.want {
					t.Errorf("chunk %d: got %q, want %q", chunk, got, tc.want)
				}
			}
		})
	}
}

func encodeQPChunks(t testing.TB, in string, chunk int) string {
	var out bytes.Buffer
	q := &qpEncoder{w: &out}
	for s := in; len(s) > 0; {
		n := min(chunk, len(s))
		if _, err := io.WriteString(q, s[:n]); err != nil {
			t.Fatal(err)
		}
		s = s[n:]
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// FuzzTextEncoding: quoted-printable keeps any text exactly (but for LF
// becoming CRLF), in lines of at most 76 bytes, none starting with "--";
// 8bit is chosen only for text that needs no change but line ends.
func FuzzTextEncoding(f *testing.F) {
	f.Add([]byte("hello\n-- \nsig"), 7)
	f.Add([]byte("a\rb\r\n--b--\n\x00 \t"), 1)
	f.Add([]byte(strings.Repeat("é", 600)+"\n"), 100)
	f.Fuzz(func(t *testing.T, text []byte, chunk int) {
		if chunk <= 0 || chunk > len(text) {
			chunk = len(text) + 1
		}
		enc := encodeQPChunks(t, string(text), chunk)
		for _, line := range strings.Split(enc, "\r\n") {
			if len(line) > 76 {
				t.Fatalf("line of %d bytes: %q", len(line), line)
			}
			if strings.HasPrefix(line, "--") {
				t.Fatalf("line starts with --: %q", line)
			}
			if strings.ContainsAny(line, "\r\n") {
				t.Fatalf("bare CR or LF in %q", line)
			}
		}
		dec, err := io.ReadAll(quotedprintable.NewReader(strings.NewReader(enc)))
		if err != nil {
			t.Fatalf("decode %q: %v", enc, err)
		}
		want := strings.ReplaceAll(strings.ReplaceAll(string(text), "\r\n", "\n"), "\n", "\r\n")
		if string(dec) != want {
			t.Fatalf("round trip:\n got %q\nwant %q\nenc  %q", dec, want, enc)
		}
		bounds := [][]byte{[]byte("--b")}
		if safeAs8bit(text, bounds) {
			var out bytes.Buffer
			w := &eightBitWriter{w: &out}
			w.Write(text)
			for _, line := range strings.Split(out.String(), "\r\n") {
				if len(line) > maxLine || strings.ContainsAny(line, "\r\n") || strings.HasPrefix(line, "--b") {
					t.Fatalf("8bit line %q", line)
				}
			}
		}
	})
}
