package mailpart

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

// fuzzLimits keep fuzz inputs from spending their time on deep nesting.
var fuzzLimits = Limits{MaxDepth: 8, MaxParts: 200, MaxHeaderBytes: 16 << 10}

func addSeeds(f *testing.F) {
	f.Add([]byte(altRelatedMessage))
	f.Add([]byte(crlfText("Subject: hi\n\nplain body\n")))
	f.Add([]byte("Content-Type: application/pdf; name=\"=?UTF-8?B?5aCx5ZGK5pu4LnBkZg==?=\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n"))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain; charset=iso-2022-jp\n\n\x1b$B$3$s$K$A$O\x1b(B\n--b\nContent-Disposition: attachment; filename*0*=shift_jis''%97%5C; filename*1=x.txt\n\nA\n--b"))
	f.Add([]byte("Content-Type: multipart/related; boundary=r\r\n\r\n--r\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<img src=3D\"cid:a\"></body>\r\n--r\r\nContent-Type: image/gif\r\nContent-ID: <a>\r\n\r\nGIF\r\n--r--\r\n"))
	f.Add([]byte("Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nx"))
	f.Add([]byte("From x Tue\r\nquite bad\r\nSubject: y\r\n\r\n"))
}

// leafDigest is what must survive a rewrite that changes nothing.
func leafDigests(t *testing.T, msg []byte) ([]string, Summary, error) {
	var digests []string
	sum, err := Walk(bytes.NewReader(msg), fuzzLimits, func(p *Part, body io.Reader) error {
		b, err := io.ReadAll(body)
		if err != nil {
			return err
		}
		if p.Attachment && p.Filename == "" {
			t.Errorf("attachment %s without file name", p.Path)
		}
		if !utf8.ValidString(p.Filename) || len(p.Filename) > maxFilenameBytes {
			t.Errorf("bad file name %q", p.Filename)
		}
		b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
		digests = append(digests, fmt.Sprintf("%s %s %v %x", p.Path, p.MediaType, p.Attachment, sha256.Sum256(b)))
		return nil
	})
	return digests, sum, err
}

func FuzzWalk(f *testing.F) {
	addSeeds(f)
	f.Fuzz(checkWalk)
}

func FuzzRewrite(f *testing.F) {
	addSeeds(f)
	f.Fuzz(checkRewrite)
}

// checkWalk: Walk never fails on input it can read, except on limits.
func checkWalk(t *testing.T, msg []byte) {
	_, _, err := leafDigests(t, msg)
	if err != nil && !errors.Is(err, ErrTooComplex) {
		t.Fatalf("Walk: %v", err)
	}
}

// checkRewrite: a rewrite that changes nothing keeps every part as Walk
// reads it; a rewrite that removes every attachment leaves none, and its
// output uses CRLF only.
func checkRewrite(t *testing.T, msg []byte) {
	before, _, err := leafDigests(t, msg)
	if err != nil {
		if !errors.Is(err, ErrTooComplex) {
			t.Fatalf("Walk: %v", err)
		}
		return
	}

	var same bytes.Buffer
	if err := Rewrite(bytes.NewReader(msg), &same, fuzzLimits, nil, Notice{}); err != nil {
		// A rewrite may refuse what it cannot write back within SMTP's
		// limits (a header line over 998 bytes with no white space to
		// fold at): the client gets 554 5.6.0. Anything else is a bug.
		if errors.Is(err, ErrTooComplex) {
			return
		}
		t.Fatalf("Rewrite without changes: %v", err)
	}
	after, _, err := leafDigests(t, same.Bytes())
	if err != nil {
		t.Fatalf("Walk of unchanged rewrite: %v", err)
	}
	if strings.Join(before, "\n") != strings.Join(after, "\n") {
		t.Fatalf("parts changed:\nbefore %q\nafter  %q\noutput %q", before, after, same.String())
	}

	remove := map[string]bool{}
	n := Notice{Language: "en"}
	for _, d := range before {
		var path, mt string
		var att bool
		fmt.Sscanf(d, "%s %s %v", &path, &mt, &att)
		if att {
			remove[path] = true
			n.Files = append(n.Files, NoticeFile{Name: "f", URL: "https://x.example/d/" + path})
		}
	}
	var out bytes.Buffer
	if err := Rewrite(bytes.NewReader(msg), &out, fuzzLimits, remove, n); err != nil {
		if errors.Is(err, ErrTooComplex) {
			return
		}
		t.Fatalf("Rewrite: %v", err)
	}
	if !noBareLF(out.String()) {
		t.Fatalf("bare LF in output %q", out.String())
	}
	_, sum, err := leafDigests(t, out.Bytes())
	if err != nil && !errors.Is(err, ErrTooComplex) {
		t.Fatalf("Walk of rewrite: %v", err)
	}
	if err == nil && sum.Attachments != 0 {
		t.Fatalf("%d attachments left in %q", sum.Attachments, out.String())
	}
	// When go-message, a stricter parser such as the next hop may use,
	// sees the same parts in the input, it can read the output too.
	if gm, err := goMessageLeaves(string(msg), false); err == nil && sameMediaTypes(gm, before) {
		if _, err := goMessageLeaves(out.String(), false); err != nil {
			t.Fatalf("go-message reads the input but not the output: %v\n%q", err, out.String())
		}
	}
	checkSameStructure(t, same.Bytes())
	checkSameStructure(t, out.Bytes())
}

// checkSameStructure: go-message reads a rewritten message with the parts
// Walk reads in it (number and media types), so the recipient's parser sees
// the structure the policies checked. Expected unless the output still
// carries what the input had and RFC 2046 forbids: a content line that
// starts with a boundary without being one (go-message stops there), or a
// multipart without a boundary (one leaf to Walk, an error to go-message).
func checkSameStructure(t *testing.T, out []byte) {
	if ambiguousBoundaryLine(out) {
		return
	}
	digests, _, err := leafDigests(t, out)
	if err != nil {
		return // limits
	}
	for _, d := range digests {
		if fields := strings.Fields(d); len(fields) > 1 && strings.HasPrefix(fields[1], "multipart/") {
			return // a multipart without boundary: a leaf to Walk, an error to go-message
		}
	}
	gm, err := goMessageLeaves(string(out), false)
	if err != nil && strings.Contains(err.Error(), "boundary is empty") {
		return // a multipart type without a boundary: one leaf to Walk
	}
	if err != nil {
		t.Fatalf("go-message cannot read the output: %v\n%q", err, out)
	}
	for _, p := range gm {
		if strings.HasPrefix(strings.ToLower(p.MediaType), "multipart/") {
			// go-message could not parse a multipart's Content-Type that
			// Walk could (a boundary with control characters, which
			// Rewrite cannot write in a form both read the same).
			return
		}
	}
	same := len(gm) == len(digests)
	for i := 0; same && i < len(gm); i++ {
		// An invalid type is text/plain to Walk (RFC 2045 5.2), raw to
		// go-message; the structure is what counts.
		fields := strings.Fields(digests[i])
		same = !validMediaType(gm[i].MediaType) || (len(fields) > 1 && fields[1] == gm[i].MediaType)
	}
	if !same {
		var types []string
		for _, p := range gm {
			types = append(types, p.MediaType)
		}
		t.Fatalf("go-message reads other parts:\nwalk %q\ngo-message %q\n%q", digests, types, out)
	}
}

// ambiguousBoundaryLine reports whether some line of msg starts with
// "--" + a boundary declared in msg but is neither that delimiter nor its
// close delimiter.
func ambiguousBoundaryLine(msg []byte) bool {
	var bounds []string
	for _, m := range boundaryParam.FindAllSubmatch(msg, -1) {
		b := string(m[1])
		if b == "" {
			b = string(m[2])
		}
		bounds = append(bounds, b)
	}
	for _, line := range strings.Split(string(msg), "\r\n") {
		if !strings.HasPrefix(line, "--") {
			continue
		}
		for _, b := range bounds {
			rest, ok := strings.CutPrefix(line, "--"+b)
			if ok && strings.TrimRight(rest, " \t") != "" && strings.TrimRight(rest, " \t") != "--" {
				return true
			}
		}
	}
	return false
}

var boundaryParam = regexp.MustCompile(`(?i)boundary\s*=\s*(?:"([^"]*)"|([^\s;"]+))`)

// sameMediaTypes reports whether go-message's leaves match Walk's digests
// (path, media type, ...) in number and media type.
func sameMediaTypes(gm []gmPart, digests []string) bool {
	if len(gm) != len(digests) {
		return false
	}
	for i, d := range digests {
		if fields := strings.Fields(d); len(fields) < 2 || fields[1] != gm[i].MediaType {
			return false
		}
	}
	return true
}
