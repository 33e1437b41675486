package mailpart

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// longLines returns the lines of out over 998 bytes (CRLF excluded).
func longLines(out string) []int {
	var long []int
	for i, l := range strings.Split(out, "\r\n") {
		if len(l) > maxLine {
			long = append(long, i+1)
		}
	}
	return long
}

// TestRewriteLineLengths: a rewritten message has no line over 998 bytes
// where that can be done without changing what the recipient gets: long
// header lines are folded, kept parts in an identity encoding with long
// lines go out quoted-printable with the same content; signed units and
// message/* parts stay byte for byte.
func TestRewriteLineLengths(t *testing.T) {
	long := strings.Repeat("x", 1500)
	words := strings.TrimSpace(strings.Repeat("word ", 600))
	mixed := func(extraHeader, kept string) string {
		return crlfText("From: a@corp.test\nSubject: s\n" + extraHeader + "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n" +
			"--b\nContent-Type: text/plain\n\nsee attached\n" +
			"--b\nContent-Type: application/pdf; name=a.pdf\nContent-Transfer-Encoding: base64\n\nJVBERi0xLjQK\n" +
			"--b\n" + kept + "--b--\n")
	}
	tests := []struct {
		name      string
		msg       string
		wantLong  bool   // a line over 998 bytes is expected to stay
		keptPart  string // raw kept part expected in the output byte for byte, if any
		wantQP    bool   // 1.3 goes out quoted-printable
		wantField string // header field whose unfolded value must survive
	}{
		{name: "long Subject folded", msg: mixed("X-Long: "+words+"\n", "Content-Type: text/calendar\n\nBEGIN:VCALENDAR\n"), wantField: "X-Long"},
		{name: "long tab-separated field folded", msg: mixed("X-Tabs: "+strings.Repeat("ab\t", 700)+"end\n", "Content-Type: text/calendar\n\nBEGIN:VCALENDAR\n"), wantField: "X-Tabs"},
		{name: "kept text part with a long line", msg: mixed("", "Content-Type: text/calendar; method=REQUEST\n\nBEGIN:VCALENDAR\nDESCRIPTION:"+long+"\nEND:VCALENDAR\n"), wantQP: true},
		{name: "kept 8bit part with a long line that holds the boundary", msg: mixed("", "Content-Type: text/csv\nContent-Transfer-Encoding: 8bit\n\n"+strings.Repeat("a", 900)+strings.Repeat("y", 70)+"--b--"+long+"\n"), wantQP: true},
		{name: "kept part with short lines untouched", msg: mixed("", "Content-Type: text/calendar\n\nBEGIN:VCALENDAR\nEND:VCALENDAR\n"), keptPart: "Content-Type: text/calendar\r\n\r\nBEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"},
		{name: "kept part too big to look at whole", msg: mixed("", "Content-Type: text/csv\n\n"+strings.Repeat("1,2,3\n", keepPeek/6+10)), wantQP: true},
		{name: "nested signed unit kept byte for byte", wantLong: true,
			msg:      mixed("", "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=sig\n\n--sig\nContent-Type: text/plain\n\n"+long+"\n--sig\nContent-Type: application/pkcs7-signature\n\nMIAG\n--sig--\n"),
			keptPart: crlfText("Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=sig\n\n--sig\nContent-Type: text/plain\n\n" + long + "\n--sig\nContent-Type: application/pkcs7-signature\n\nMIAG\n--sig--")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := rewriteString(t, tc.msg, map[string]bool{"1.2": true}, testNotice("a.pdf"))
			if l := longLines(out); len(l) > 0 != tc.wantLong {
				t.Errorf("lines over 998 bytes: %v, want some: %v", l, tc.wantLong)
			}
			if tc.keptPart != "" && !strings.Contains(out, tc.keptPart) {
				t.Errorf("kept part not byte for byte:\n%.2000s", out)
			}
			in, _ := walkAll(t, tc.msg, Limits{})
			got, sum := walkAll(t, out, Limits{})
			if tc.wantField != "" && sum.Header.Get(tc.wantField) != in[0].Header.Get(tc.wantField) && sum.Header.Get(tc.wantField) == "" {
				t.Errorf("field %s lost", tc.wantField)
			}
			if tc.wantField != "" {
				// Unfolding (removing the CRLFs) gives the field back.
				var raw bytes.Buffer
				for _, l := range strings.Split(out, "\r\n") {
					if strings.HasPrefix(l, tc.wantField+":") || (raw.Len() > 0 && (strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t"))) {
						raw.WriteString(l)
					} else if raw.Len() > 0 {
						break
					}
				}
				if !strings.Contains(tc.msg, raw.String()+"\r\n") {
					t.Errorf("unfolded %s differs from the original: %.100q", tc.wantField, raw.String())
				}
			}
			if tc.wantLong {
				return // a sealed unit, checked byte for byte above
			}
			// The kept part decodes to what was sent.
			orig, kept := partByPath(t, in, "1.3"), partByPath(t, got, "1.2")
			if !bytes.Equal(orig.Body, kept.Body) {
				t.Errorf("kept part content changed: %d bytes, was %d", len(kept.Body), len(orig.Body))
			}
			if isQP := strings.EqualFold(kept.Header.Get("Content-Transfer-Encoding"), "quoted-printable"); isQP != tc.wantQP {
				t.Errorf("kept part quoted-printable: %v, want %v", isQP, tc.wantQP)
			}
		})
	}
}

// TestRewriteRefusesUnfoldableHeaderLine: a header line over 998 bytes
// with no white space cannot be folded without changing the field; the
// rewrite is refused as ErrTooComplex (smtpd: 554 5.6.0), not sent with
// a line strict next hops refuse or cut.
func TestRewriteRefusesUnfoldableHeaderLine(t *testing.T) {
	for _, msg := range []string{
		crlfText("From: a@corp.test\nX-Token: " + strings.Repeat("x", 1200) + "\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\nhi\n--b\nContent-Type: application/pdf; name=a.pdf\n\n%PDF\n--b--\n"),
		crlfText("From: a@corp.test\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\nhi\n--b\nContent-Type: application/pdf; name=a.pdf\n\n%PDF\n--b\nContent-Type: text/plain; name=\"" + strings.Repeat("n", 1200) + ".txt\"\n\nkept\n--b--\n"),
	} {
		var out bytes.Buffer
		err := Rewrite(strings.NewReader(msg), &out, Limits{}, map[string]bool{"1.2": true}, testNotice("a.pdf"))
		if !errors.Is(err, ErrTooComplex) {
			t.Errorf("Rewrite = %v, want ErrTooComplex", err)
		}
	}
}

func TestFoldPoint(t *testing.T) {
	pad := strings.Repeat("a", 990)
	tests := []struct {
		line string
		want int
	}{
		{"Subject: " + pad[:988] + " tail", 997},
		{"Subject: " + pad + "aaaaaaaaaaa tail", 8},
		{"Subject:" + strings.Repeat("x", 1200), -1},
		{"   " + strings.Repeat("x", 1200), -1},                   // white space only before the space
		{"Subject: " + pad + "                  ", 8},             // then the rest is white space only (foldHeader refuses it)
		{"Subject: a" + strings.Repeat(" ", 1100) + "b", maxLine}, // last fold point within 998
	}
	for _, tt := range tests {
		if got := foldPoint([]byte(tt.line)); got != tt.want {
			t.Errorf("foldPoint(%.20q... %d bytes) = %d, want %d", tt.line, len(tt.line), got, tt.want)
		}
	}
}
