package mailpart

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

// bareCR finds a CR that does not start a CRLF.
var bareCR = regexp.MustCompile("\r[^\n]|\r$")

// bareLF finds an LF without the CR before it.
var bareLF = regexp.MustCompile("(^|[^\r])\n")

// crLines splits a message the way readers that take a bare CR for a line
// end (Python's email package, some MTAs) do.
func crLines(s string) []string {
	return regexp.MustCompile("\r\n|\r|\n").Split(s, -1)
}

// Issue 9.3: a bare CR hides a part from the policies (they read it as
// content, like go-message) that readers taking CR for a line end see, and
// "<CR>.<CR>" ends DATA for a lax next hop. Neither may reach the output.
func TestBareCRNeverEmitted(t *testing.T) {
	hidden := "Subject: a\r.\rb\r\n" +
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\n" +
		"hello\r--b\r\nContent-Type: application/x-msdownload; name=evil.exe\r\n\r\nMZ\r.\r\n" +
		"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\n\r\n%PDF\r.\r\r\n" +
		"--b--\r\n"
	parts, _ := walkAll(t, hidden, Limits{})
	if len(parts) != 2 || parts[0].MediaType != "text/plain" || parts[1].Filename != "a.pdf" {
		t.Fatalf("Walk sees %d parts: %+v", len(parts), parts)
	}
	if !strings.Contains(string(parts[0].Body), "hello --b") {
		t.Errorf("body text %q: the bare CR should read as a space", parts[0].Body)
	}
	for _, tc := range []struct {
		name   string
		remove map[string]bool
		n      Notice
	}{
		{"unchanged", nil, Notice{}},
		{"linked", map[string]bool{"1.2": true}, testNotice("a.pdf")},
		{"linked 8bit", map[string]bool{"1.2": true}, func() Notice { n := testNotice("a.pdf"); n.EightBit = true; return n }()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := rewriteString(t, hidden, tc.remove, tc.n)
			if m := bareCR.FindStringIndex(out); m != nil {
				t.Fatalf("bare CR at %d in output:\n%q", m[0], out)
			}
			if bareLF.MatchString(out) {
				t.Fatalf("bare LF in output:\n%q", out)
			}
			// Whatever a reader takes for a line end, it finds no part
			// boundary that Walk did not see.
			delims := 0
			for _, line := range crLines(out) {
				if strings.HasPrefix(line, "--b") {
					delims++
				}
			}
			want := 3 // --b, --b, --b--
			if tc.remove != nil {
				want = 2 // --b (text), --b--
			}
			if delims != want {
				t.Errorf("%d lines start with the boundary, want %d:\n%q", delims, want, out)
			}
			gm := parseWithGoMessage(t, out)
			if len(gm) != want-1 {
				t.Errorf("go-message reads %d leaves, want %d", len(gm), want-1)
			}
		})
	}
}

// Issue 9.3 for mail that passes through unchanged.
func TestCopyPassThroughLineEnds(t *testing.T) {
	tests := []struct{ in, want string }{
		{"a\r.\rb\r\n", "a . b\r\n"},
		{"a\n.\nb", "a\r\n.\r\nb"},
		{"a\r\n\r\n", "a\r\n\r\n"},
		{"end\r", "end "},
		{"\r\r\n\r", " \r\n "},
		{"x\r\r\r\n", "x  \r\n"},
	}
	for _, tc := range tests {
		var out bytes.Buffer
		n, err := CopyPassThrough(&out, strings.NewReader(tc.in))
		if err != nil || out.String() != tc.want || n != int64(len(tc.in)) {
			t.Errorf("CopyPassThrough(%q) = %q, %d, %v; want %q", tc.in, out.String(), n, err, tc.want)
		}
	}
	// Reads of one byte at a time, where a CR and the LF after it come
	// in different reads.
	in := strings.Repeat("line\r\nbare\rcr\n", 50)
	var out bytes.Buffer
	if _, err := CopyPassThrough(&out, &oneByteReader{r: strings.NewReader(in)}); err != nil {
		t.Fatal(err)
	}
	if want := strings.Repeat("line\r\nbare cr\r\n", 50); out.String() != want {
		t.Errorf("one byte at a time: %q", out.String())
	}
}

// Issue 9.14: "--b-->" ends the multipart; what follows is the epilogue,
// not the attachment's content.
func TestCloseDelimiterWithTrailingText(t *testing.T) {
	msg := crlfText("Content-Type: multipart/mixed; boundary=b\n\n" +
		"--b\nContent-Type: text/plain\n\nhello\n" +
		"--b\nContent-Type: application/pdf\nContent-Disposition: attachment; filename=a.pdf\n\n%PDF-1.4 data\n" +
		"--b-->\nThis is the epilogue.\n")
	parts, _ := walkAll(t, msg, Limits{})
	if len(parts) != 2 {
		t.Fatalf("%d parts", len(parts))
	}
	if got := string(parts[1].Body); got != "%PDF-1.4 data" {
		t.Errorf("attachment = %q, want %q", got, "%PDF-1.4 data")
	}
	for _, remove := range []map[string]bool{nil, {"1.2": true}} {
		n := Notice{}
		if remove != nil {
			n = testNotice("a.pdf")
		}
		out := rewriteString(t, msg, remove, n)
		if !strings.HasSuffix(out, "--b--\r\nThis is the epilogue.\r\n") {
			t.Errorf("epilogue not kept after a clean close delimiter:\n%q", out)
		}
		if strings.Contains(out, "--b-->") {
			t.Errorf("close delimiter not cleaned:\n%q", out)
		}
		gm := parseWithGoMessage(t, out)
		if remove == nil && (len(gm) != 2 || gm[1].Text != "%PDF-1.4 data") {
			t.Errorf("go-message reads %+v", gm)
		}
	}
	// An exact delimiter of an outer multipart wins over a lenient close
	// of the inner one.
	nested := crlfText("Content-Type: multipart/mixed; boundary=\"b--x\"\n\n" +
		"--b--x\nContent-Type: multipart/alternative; boundary=b\n\n--b\n\ninner\n" +
		"--b--x\nContent-Type: application/pdf\nContent-Disposition: attachment; filename=o.pdf\n\nouter\n--b--x--\n")
	parts, _ = walkAll(t, nested, Limits{})
	if len(parts) != 2 || string(parts[1].Body) != "outer" || parts[1].Path != "1.2" {
		t.Errorf("nested: %+v", parts)
	}
}
